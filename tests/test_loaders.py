"""Real-format loaders (on tiny fake files) and the stratified split."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

import fakes
from fcos.data.loaders import DatasetSubsetWarning, load_source
from fcos.data.specs import DATASETS
from fcos.data.split import stratified_split, stratified_subsample
from fcos.errors import ConfigError, DataError

RML2016_FILE = "RML2016.10a_dict.pkl"
RML2018_FILE = "GOLD_XYZ_OSC.0001_1024.hdf5"


def load_quietly(*args, **kwargs):
    with pytest.warns(DatasetSubsetWarning):
        return load_source(*args, **kwargs)


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------- RML2016


def test_rml2016_fake_is_a_python2_style_pickle(tmp_path):
    raw = fakes.write_rml2016_pickle(tmp_path / RML2016_FILE).read_bytes()
    assert raw.startswith(b"\x80\x02")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    assert b"_codecs" not in raw  # py2 writes byte strings, not codecs.encode calls


def test_rml2016_round_trip(tmp_path):
    data = fakes.rml2016_dict(frames=10)
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE, data)
    raw = load_quietly("rml2016", tmp_path)  # a directory holding the official file name works
    spec = DATASETS["rml2016"]
    assert raw.x.dtype == np.float32 and raw.x.shape == (90, 2, 128)
    assert raw.y.dtype == np.int64 and raw.snr.dtype == np.int16
    for (mod, snr), frames in data.items():
        rows = (raw.y == spec.classes.index(mod)) & (raw.snr == snr)
        np.testing.assert_array_equal(raw.x[rows], frames)
    assert raw.source.endswith(RML2016_FILE)
    assert raw.info["file_vectors"] == 90
    assert raw.info["frames_per_class_snr"] == {"min": 10, "max": 10}
    assert len(raw.warnings) == 1 and "10 frames per (class, SNR) instead of 1000" in raw.warnings[0]
    assert "3 of 11 classes" in raw.warnings[0]


def test_rml2016_python2_text_protocol_loads(tmp_path):
    data = fakes.rml2016_dict(frames=3)
    path = fakes.write_rml2016_pickle(tmp_path / RML2016_FILE, data, protocol=0)
    assert path.read_bytes().startswith(b"(dp0")  # protocol 0: no PROTO opcode
    raw = load_quietly("rml2016", path)
    np.testing.assert_array_equal(raw.x[:3], data[("8PSK", -2)])  # 8PSK is class 0


def test_rml2016_python3_protocol2_pickle_also_loads(tmp_path):
    # A file re-saved by Python 3 with protocol 2 stores array bytes through _codecs.encode.
    data = fakes.rml2016_dict(frames=4)
    (tmp_path / RML2016_FILE).write_bytes(pickle.dumps(data, protocol=2))
    raw = load_quietly("rml2016", tmp_path / RML2016_FILE)
    assert raw.x.shape == (36, 2, 128)


def test_rml2016_min_snr_and_cap(tmp_path):
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE)
    raw = load_quietly("rml2016", tmp_path, min_snr=0, per_class_snr=4, seed=3)
    assert sorted(set(raw.snr.tolist())) == [0, 2]
    assert raw.x.shape[0] == 3 * 2 * 4
    again = load_quietly("rml2016", tmp_path, min_snr=0, per_class_snr=4, seed=3)
    np.testing.assert_array_equal(raw.x, again.x)


def test_rml2016_strict_refuses_subset(tmp_path):
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE)
    with pytest.raises(DataError) as excinfo:
        load_source("rml2016", tmp_path, strict=True)
    assert_one_line_error(excinfo, RML2016_FILE, "strict")


def test_rml2016_full_grid_gives_no_warning(tmp_path, recwarn):
    spec = DATASETS["rml2016"]
    # The official 1000 frames per group would be 225 MB; a cap equal to what the file holds
    # makes 2 frames the expected count, so a file with every class and SNR is complete.
    data = fakes.rml2016_dict(mods=spec.classes, snrs=spec.snrs, frames=2)
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE, data)
    raw = load_source("rml2016", tmp_path, per_class_snr=2, strict=True)
    assert raw.warnings == [] and len(recwarn) == 0
    assert raw.x.shape == (11 * 20 * 2, 2, 128)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: d.update({("FOO", 0): d[("BPSK", 0)]}), "unknown modulation 'FOO'"),
        (lambda d: d.update({("BPSK", 0): np.zeros((10, 2, 64), np.float32)}), "(frames, 2, 128)"),
        (lambda d: d.update({("BPSK", 0): np.zeros((10, 2, 128), np.int32)}), "int32"),
        (lambda d: d.update({("BPSK", 3): d[("BPSK", 0)]}), "not on the rml2016 grid"),
        (lambda d: d[("QPSK", 2)].__setitem__((1, 0, 5), np.nan), "1 non-finite values"),
        (lambda d: d.update({"BPSK": d[("BPSK", 0)]}), "not a (modulation, snr) pair"),
    ],
    ids=["unknown-mod", "wrong-length", "int-dtype", "off-grid-snr", "nan", "bad-key"],
)
def test_rml2016_malformed(tmp_path, damage, fragment):
    data = fakes.rml2016_dict()
    damage(data)
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE, data)
    with pytest.raises(DataError) as excinfo:
        load_source("rml2016", tmp_path / RML2016_FILE)
    assert_one_line_error(excinfo, RML2016_FILE, fragment)


def test_rml2016_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = fakes.write_malicious_pickle(tmp_path / RML2016_FILE, marker)
    with pytest.raises(DataError) as excinfo:
        load_source("rml2016", path)
    assert_one_line_error(excinfo, RML2016_FILE, "refuses to unpickle", "system")
    assert not marker.exists()


def test_rml2016_garbage_and_missing_file(tmp_path):
    (tmp_path / RML2016_FILE).write_bytes(b"not a pickle at all")
    with pytest.raises(DataError) as excinfo:
        load_source("rml2016", tmp_path)
    assert_one_line_error(excinfo, RML2016_FILE, "not a readable")
    with pytest.raises(DataError) as excinfo:
        load_source("rml2016", tmp_path / "elsewhere")
    assert_one_line_error(excinfo, "file not found", f"expected {RML2016_FILE}")


def test_unknown_dataset_and_bad_options(tmp_path):
    fakes.write_rml2016_pickle(tmp_path / RML2016_FILE)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_source("rml2099", tmp_path)
    with pytest.raises(ConfigError, match="per_class_snr"):
        load_source("rml2016", tmp_path, per_class_snr=0)
    with pytest.raises(ConfigError, match="min_snr"):
        load_source("rml2016", tmp_path, min_snr=40)


# ------------------------------------------------------------------------------- RML2018


def test_rml2018_round_trip(tmp_path):
    arrays = fakes.rml2018_arrays(snrs=(10, 12), frames=8)
    path = fakes.write_rml2018_hdf5(tmp_path / RML2018_FILE, arrays)
    raw = load_quietly("rml2018", path, progress=False)
    assert raw.x.shape == (24 * 2 * 8, 2, 1024) and raw.x.dtype == np.float32
    np.testing.assert_array_equal(raw.x, arrays["X"].transpose(0, 2, 1))
    np.testing.assert_array_equal(raw.y, arrays["Y"].argmax(axis=1))
    np.testing.assert_array_equal(raw.snr, arrays["Z"][:, 0])
    assert "2 of 26 SNRs" in raw.warnings[0]


def test_rml2018_selection_reads_chosen_rows(tmp_path, monkeypatch):
    import fcos.data.loaders as loaders

    arrays = fakes.rml2018_arrays(snrs=(8, 10, 12), frames=8)
    path = fakes.write_rml2018_hdf5(tmp_path / RML2018_FILE, arrays)
    # Small chunks so both read paths (contiguous slice, point selection) are exercised.
    monkeypatch.setattr(loaders, "RML2018_CHUNK_ROWS", 5)
    # Record every read of X: none may cover more rows than one chunk (X is 21 GB for real).
    rows_per_read_of_x = []
    real_getitem = h5py.Dataset.__getitem__

    def recording_getitem(self, index, *args, **kwargs):
        block = real_getitem(self, index, *args, **kwargs)
        if self.name == "/X":
            rows_per_read_of_x.append(block.shape[0])
        return block

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording_getitem)
    raw = load_quietly("rml2018", path, min_snr=10, per_class_snr=3, seed=1, progress=False)
    assert rows_per_read_of_x and max(rows_per_read_of_x) <= 5
    assert sum(rows_per_read_of_x) == raw.x.shape[0]
    assert raw.x.shape == (24 * 2 * 3, 2, 1024)
    assert set(raw.snr.tolist()) == {10, 12}
    # Each selected vector is the transposed file row with the same label and SNR.
    X = arrays["X"]
    for i in range(0, raw.x.shape[0], 7):
        matches = np.flatnonzero((X.transpose(0, 2, 1) == raw.x[i]).all(axis=(1, 2)))
        assert matches.size == 1
        assert arrays["Y"][matches[0]].argmax() == raw.y[i] and arrays["Z"][matches[0], 0] == raw.snr[i]
    dense = load_quietly("rml2018", path, min_snr=10, progress=False)
    np.testing.assert_array_equal(dense.x, X[arrays["Z"][:, 0] >= 10].transpose(0, 2, 1))


def test_rml2018_accepts_float_one_hot_and_flat_z(tmp_path):
    arrays = fakes.rml2018_arrays(frames=2)
    arrays["Y"] = arrays["Y"].astype(np.float32)
    arrays["Z"] = arrays["Z"][:, 0].astype(np.int32)
    raw = load_quietly("rml2018", fakes.write_rml2018_hdf5(tmp_path / RML2018_FILE, arrays), progress=False)
    assert raw.x.shape[0] == 24 * 2 * 2


def _drop_x(a):
    del a["X"]


def _nan_x(a):
    a["X"][3, 100, 1] = np.nan
    a["X"][5, 0, 0] = np.inf


def _not_one_hot(a):
    a["Y"][4] = 0


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_drop_x, "missing dataset 'X'"),
        (lambda a: a.update(Y=a["Y"][:, :23]), "expected one-hot (N, 24)"),
        (_not_one_hot, "1 rows that are not one-hot"),
        (lambda a: a.update(X=a["X"][:, :512]), "expected (N, 1024, 2)"),
        (lambda a: a.update(Z=a["Z"][:-1]), "expected the same non-zero number"),
        (lambda a: a.update(Z=a["Z"] + 1), "not on the rml2018 grid"),
        (_nan_x, "2 non-finite values"),
    ],
    ids=["missing-X", "one-hot-width", "not-one-hot", "wrong-length", "row-mismatch", "odd-snr", "nan"],
)
def test_rml2018_malformed(tmp_path, damage, fragment):
    arrays = fakes.rml2018_arrays(frames=2)
    damage(arrays)
    path = fakes.write_rml2018_hdf5(tmp_path / RML2018_FILE, arrays)
    with pytest.raises(DataError) as excinfo:
        load_source("rml2018", path, progress=False)
    assert_one_line_error(excinfo, RML2018_FILE, fragment)


def test_rml2018_not_hdf5(tmp_path):
    (tmp_path / RML2018_FILE).write_text("hello")
    with pytest.raises(DataError) as excinfo:
        load_source("rml2018", tmp_path)
    assert_one_line_error(excinfo, RML2018_FILE, "not a readable HDF5 file")


# ------------------------------------------------------------------------------- Sig2019


def test_sig2019_npy_dir_and_npz_agree(tmp_path):
    arrays = fakes.sig2019_arrays()
    from_dir = load_quietly("sig2019", fakes.write_sig2019_npy_dir(tmp_path / "sig", arrays))
    from_npz = load_quietly("sig2019", fakes.write_sig2019_npz(tmp_path / "sig.npz", arrays))
    for raw in (from_dir, from_npz):
        np.testing.assert_array_equal(raw.x, arrays["x"])
        np.testing.assert_array_equal(raw.y, arrays["y"])
        np.testing.assert_array_equal(raw.snr, arrays["snr"])
    assert from_dir.info["loader"] == "sig2019-npy" and from_npz.info["loader"] == "sig2019-npz"


def test_sig2019_labels_with_snr_column(tmp_path):
    arrays = fakes.sig2019_arrays()
    directory = fakes.write_sig2019_npy_dir(tmp_path / "sig", arrays)
    (directory / "snrs.npy").unlink()
    np.save(directory / "labels.npy", np.stack([arrays["y"], arrays["snr"]], axis=1))
    raw = load_quietly("sig2019", directory)
    np.testing.assert_array_equal(raw.snr, arrays["snr"])


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda a: a.update(y=a["y"] + 1), "labels outside 0..11"),
        (lambda a: a.update(x=a["x"][:, :1]), "expected float32 (N, 2, 512)"),
        (lambda a: a.update(snr=a["snr"][:-1]), "(N,) with N > 0"),
        (lambda a: a.update(x=np.where(a["y"][:, None, None] == 2, np.nan, a["x"])), "non-finite"),
    ],
    ids=["label-range", "shape", "length-mismatch", "nan"],
)
def test_sig2019_malformed(tmp_path, damage, fragment):
    arrays = fakes.sig2019_arrays()
    damage(arrays)
    path = fakes.write_sig2019_npz(tmp_path / "sig.npz", arrays)
    with pytest.raises(DataError) as excinfo:
        load_source("sig2019", path)
    assert_one_line_error(excinfo, "sig.npz", fragment)


def test_sig2019_refuses_pickled_npz_and_missing_key(tmp_path):
    arrays = fakes.sig2019_arrays()
    arrays["y"] = arrays["y"].astype(object)
    with pytest.raises(DataError) as excinfo:
        load_source("sig2019", fakes.write_sig2019_npz(tmp_path / "obj.npz", arrays))
    assert_one_line_error(excinfo, "obj.npz")
    arrays = fakes.sig2019_arrays()
    del arrays["snr"]
    with pytest.raises(DataError) as excinfo:
        load_source("sig2019", fakes.write_sig2019_npz(tmp_path / "nokey.npz", arrays))
    assert_one_line_error(excinfo, "nokey.npz", "missing key(s) snr")
    with pytest.raises(DataError) as excinfo:
        load_source("sig2019", tmp_path / "absent")
    assert_one_line_error(excinfo, "absent: file not found", "signals.npy")


# ------------------------------------------------------------------------------- split


def _grid(classes=4, snrs=(-4, 0, 4), frames=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), len(snrs) * frames)
    snr = np.tile(np.repeat(np.asarray(snrs), frames), classes)
    order = rng.permutation(y.size)  # rows arrive shuffled, as a real file might be
    return y[order], snr[order]


def test_split_is_disjoint_covering_sorted_and_stratified():
    y, snr = _grid(frames=20)
    parts = stratified_split(y, snr, 0.1, 0.2, seed=5)
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert np.array_equal(np.sort(joined), np.arange(y.size))
    for idx in parts.values():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    for cls in range(4):
        for s in (-4, 0, 4):
            group = (y == cls) & (snr == s)
            assert group[parts["train"]].sum() == 14
            assert group[parts["val"]].sum() == 2
            assert group[parts["test"]].sum() == 4


def test_split_is_deterministic_and_seed_dependent():
    y, snr = _grid()
    a, b = stratified_split(y, snr, 0.1, 0.2, 1), stratified_split(y, snr, 0.1, 0.2, 1)
    c = stratified_split(y, snr, 0.1, 0.2, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_split_of_a_group_ignores_other_groups_and_their_order():
    y, snr = _grid(frames=10)
    full = stratified_split(y, snr, 0.2, 0.2, seed=9)
    # Reorder the rows group-wise while keeping the order inside each group (stable sort),
    # and drop one class: the remaining groups must be split the same way.
    order = np.argsort(-snr * 100 - y, kind="stable")
    order = order[y[order] != 3]
    sub = stratified_split(y[order], snr[order], 0.2, 0.2, seed=9)
    for name in ("train", "val", "test"):
        assert np.array_equal(np.sort(order[sub[name]]), full[name][y[full[name]] != 3])


def test_small_groups_get_one_per_split():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    snr = np.zeros_like(y)
    parts = stratified_split(y, snr, 0.1, 0.1, seed=0)
    for cls in (0, 1):
        for name in ("train", "val", "test"):
            assert (y[parts[name]] == cls).sum() >= 1
    assert 7 in parts["train"]  # a group of one stays in train
    no_val = stratified_split(y, snr, 0.0, 0.3, seed=0)
    assert no_val["val"].size == 0


@pytest.mark.parametrize(
    "val, test, key",
    [(-0.1, 0.2, "val_fraction"), (0.1, 1.0, "test_fraction"), (0.5, 0.5, "val_fraction + test_fraction"),
     ("a", 0.1, "val_fraction"), (float("nan"), 0.1, "val_fraction")],
)
def test_split_rejects_bad_fractions(val, test, key):
    with pytest.raises(ConfigError) as excinfo:
        stratified_split(np.zeros(4, int), np.zeros(4, int), val, test, seed=0)
    assert str(excinfo.value).startswith(key)


def test_subsample_caps_each_group():
    y, snr = _grid(frames=10)
    keep = stratified_subsample(y, snr, 3, seed=0)
    assert np.all(np.diff(keep) > 0)
    _, counts = np.unique(np.stack([y[keep], snr[keep]]), axis=1, return_counts=True)
    assert counts.tolist() == [3] * 12
    assert np.array_equal(keep, stratified_subsample(y, snr, 3, seed=0))
    assert stratified_subsample(y, snr, 50, seed=0).size == y.size
