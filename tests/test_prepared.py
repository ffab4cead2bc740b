"""prepare_dataset / load_prepared / read_manifest: layout, determinism, atomicity, validation."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

import fakes
import fcos
import fcos.data.prepared as prepared
from fcos.data import load_prepared, load_source, prepare_dataset, read_manifest
from fcos.data.loaders import DatasetSubsetWarning
from fcos.errors import ConfigError, DataError

RML2016_FILE = "RML2016.10a_dict.pkl"
RML2018_FILE = "GOLD_XYZ_OSC.0001_1024.hdf5"
pytestmark = pytest.mark.filterwarnings("ignore::fcos.data.loaders.DatasetSubsetWarning")


@pytest.fixture
def rml2016_file(tmp_path):
    return fakes.write_rml2016_pickle(tmp_path / RML2016_FILE, fakes.rml2016_dict(frames=10))


def sha256_file(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_real_file_layout_and_manifest(tmp_path, rml2016_file):
    out = tmp_path / "out" / "rml2016.h5"
    manifest = prepare_dataset("rml2016", rml2016_file, out, seed=3, progress=False)
    assert out.is_file() and not (tmp_path / "out" / "rml2016.h5.json").exists()
    assert read_manifest(out) == manifest
    assert manifest["format"] == "fcos-prepared/1"
    assert manifest["dataset"] == "rml2016" and manifest["source"] == RML2016_FILE
    assert manifest["snrs"] == [-2, 0, 2] and manifest["length"] == 128
    assert manifest["counts"] == {"train": 63, "val": 9, "test": 18, "total": 90}
    assert manifest["group_counts"]["groups"] == 9
    assert manifest["group_counts"]["test"] == {"min": 2, "max": 2}
    assert manifest["split"] == {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 3}
    assert manifest["options"]["loader"] == "rml2016-pickle"
    assert len(manifest["warnings"]) == 1 and "instead of 1000" in manifest["warnings"][0]
    assert manifest["fcos_version"] == fcos.__version__
    assert set(manifest["sha256"]) == {"train", "val", "test", "overall"}
    assert str(tmp_path) not in json.dumps(manifest)  # no absolute paths in the manifest

    with h5py.File(out, "r") as handle:
        assert list(handle) == ["train", "val", "test"]
        assert handle["train/x"].dtype == np.float32 and handle["train/x"].shape == (63, 2, 128)
        assert handle["train/y"].dtype == np.int64 and handle["train/snr"].dtype == np.int16


def test_load_prepared_returns_the_source_rows(tmp_path, rml2016_file):
    out = tmp_path / "rml2016.h5"
    prepare_dataset("rml2016", rml2016_file, out, seed=0, progress=False)
    raw = load_source("rml2016", rml2016_file)
    data = load_prepared(out)
    assert data.spec.name == "rml2016" and data.num_classes == 11 and data.length == 128
    assert data.classes[0] == "8PSK" and data.snrs == (-2, 0, 2)
    seen = []
    for name in ("train", "val", "test"):
        x, y, snr = data.split(name)
        assert x.dtype == np.float32 and y.dtype == np.int64 and snr.dtype == np.int16
        assert x.shape == (data.counts[name], 2, 128)
        assert prepared.split_sha256(x, y, snr) == data.manifest["sha256"][name]
        for i in range(x.shape[0]):
            match = np.flatnonzero((raw.x == x[i]).all(axis=(1, 2)))
            assert match.size == 1 and raw.y[match[0]] == y[i] and raw.snr[match[0]] == snr[i]
            seen.append(int(match[0]))
    assert sorted(seen) == list(range(len(raw)))
    assert data.split("train")[0] is data.split("train")[0]  # cached
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        data.split("dev")


def test_prepare_twice_gives_identical_bytes(tmp_path, rml2016_file):
    a = prepare_dataset("rml2016", rml2016_file, tmp_path / "a.h5", seed=1, progress=False)
    b = prepare_dataset("rml2016", rml2016_file, tmp_path / "b.h5", seed=1, progress=False)
    c = prepare_dataset("rml2016", rml2016_file, tmp_path / "c.h5", seed=2, progress=False)
    assert a == b and a["sha256"]["overall"] != c["sha256"]["overall"]
    assert sha256_file(tmp_path / "a.h5") == sha256_file(tmp_path / "b.h5")


def test_prepare_synthetic(tmp_path):
    out = tmp_path / "syn.h5"
    manifest = prepare_dataset("rml2016", "synthetic", out, per_class_snr=5, seed=0, min_snr=10,
                               progress=False)
    assert manifest["source"] == "synthetic" and manifest["per_class_snr"] == 5
    assert manifest["snrs"] == [10, 12, 14, 16, 18]
    assert manifest["counts"]["total"] == 11 * 5 * 5
    assert manifest["group_counts"]["total"] == {"min": 5, "max": 5}
    again = prepare_dataset("rml2016", "synthetic", tmp_path / "syn2.h5", per_class_snr=5, seed=0,
                            min_snr=10, progress=False)
    assert again["sha256"] == manifest["sha256"]
    x, y, snr = load_prepared(out).split("test")
    assert x.shape == (11 * 5 * 1, 2, 128) and set(snr.tolist()) <= set(range(10, 19, 2))


def test_prepare_rml2018_with_selection_and_strict(tmp_path):
    path = fakes.write_rml2018_hdf5(tmp_path / RML2018_FILE, fakes.rml2018_arrays(snrs=(8, 10), frames=8))
    manifest = prepare_dataset("rml2018", tmp_path, tmp_path / "r18.h5", per_class_snr=5,
                               min_snr=10, val_fraction=0.0, test_fraction=0.2, progress=False)
    assert manifest["snrs"] == [10] and manifest["counts"] == {"train": 96, "val": 0, "test": 24, "total": 120}
    data = load_prepared(tmp_path / "r18.h5")
    assert data.split("val")[0].shape == (0, 2, 1024)
    with pytest.raises(DataError, match="strict"):
        prepare_dataset("rml2018", path, tmp_path / "strict.h5", strict=True, progress=False)
    assert not (tmp_path / "strict.h5").exists()


def test_options_are_checked_before_any_work(tmp_path, rml2016_file):
    with pytest.raises(ConfigError, match="^val_fraction"):
        prepare_dataset("rml2016", rml2016_file, tmp_path / "x.h5", val_fraction=1.5)
    with pytest.raises(ConfigError, match="^synthetic_options"):
        prepare_dataset("rml2016", rml2016_file, tmp_path / "x.h5", synthetic_options={"a": 1})
    with pytest.raises(ConfigError, match="^min_snr"):
        prepare_dataset("rml2016", "synthetic", tmp_path / "x.h5", min_snr=30)
    with pytest.raises(ConfigError, match="^seed"):
        prepare_dataset("rml2016", "synthetic", tmp_path / "x.h5", seed=-1)
    with pytest.raises(DataError, match="file not found"):
        prepare_dataset("rml2016", tmp_path / "nowhere", tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_failed_write_leaves_no_file(tmp_path, rml2016_file, monkeypatch):
    out = tmp_path / "out.h5"
    real_write = prepared._write_split

    def failing_write(handle, split, raw, rows, before_block=None):
        if split == "val":
            raise RuntimeError("disk full")
        return real_write(handle, split, raw, rows, before_block)

    monkeypatch.setattr(prepared, "_write_split", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset("rml2016", rml2016_file, out, progress=False)
    assert list(tmp_path.iterdir()) == [rml2016_file]  # neither out nor a temporary file

    # An existing complete file survives a failed rewrite untouched.
    monkeypatch.setattr(prepared, "_write_split", real_write)
    prepare_dataset("rml2016", rml2016_file, out, progress=False)
    before = sha256_file(out)
    monkeypatch.setattr(prepared, "_write_split", failing_write)
    with pytest.raises(RuntimeError):
        prepare_dataset("rml2016", rml2016_file, out, seed=7, progress=False)
    assert sha256_file(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RML2016_FILE, "out.h5"])


@pytest.fixture
def prepared_file(tmp_path, rml2016_file):
    out = tmp_path / "p.h5"
    prepare_dataset("rml2016", rml2016_file, out, progress=False)
    return out


def _edit(path, action):
    with h5py.File(path, "r+") as handle:
        action(handle)


def _set_manifest(handle, **changes):
    manifest = json.loads(handle.attrs["manifest"])
    manifest.update(changes)
    handle.attrs["manifest"] = json.dumps(manifest)


@pytest.mark.parametrize(
    "action, fragment",
    [
        (lambda h: h.__delitem__("val"), "missing group 'val'"),
        (lambda h: h["test"].__delitem__("snr"), "missing dataset test/snr"),
        (lambda h: _set_manifest(h, counts={"train": 1, "val": 9, "test": 18, "total": 28}),
         "train/x is float32 (63, 2, 128)"),
        (lambda h: _set_manifest(h, counts={"train": 63}), "manifest lacks counts[val], counts[test]"),
        (lambda h: h.attrs.__delitem__("manifest"), "no 'manifest' attribute"),
        (lambda h: h.attrs.__setitem__("manifest", "{not json"), "not valid JSON"),
        (lambda h: _set_manifest(h, format="other/9"), "format 'other/9' is not supported"),
        (lambda h: _set_manifest(h, dataset="rml1999"), "unknown dataset 'rml1999'"),
        (lambda h: _set_manifest(h, classes=["A"] * 11), "classes or length differ"),
    ],
    ids=["no-group", "no-dataset", "count-mismatch", "counts-incomplete", "no-manifest", "bad-json", "format",
         "unknown-dataset", "classes"],
)
def test_load_prepared_rejects_inconsistent_files(prepared_file, action, fragment):
    _edit(prepared_file, action)
    with pytest.raises(DataError) as excinfo:
        load_prepared(prepared_file)
    message = str(excinfo.value)
    assert "\n" not in message and "p.h5" in message and fragment in message


def test_load_prepared_detects_changed_data(prepared_file):
    def flip(handle):
        handle["test/y"][0] = (handle["test/y"][0] + 1) % 11

    _edit(prepared_file, flip)
    data = load_prepared(prepared_file)  # structure is fine ...
    data.split("train")
    with pytest.raises(DataError, match="'test' does not match its sha256"):  # ... content is not
        data.split("test")


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_prepared(tmp_path / "none.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        read_manifest(tmp_path / "text.h5")


def test_subset_warning_is_emitted_through_prepare(tmp_path, rml2016_file):
    with pytest.warns(DatasetSubsetWarning):
        prepare_dataset("rml2016", rml2016_file, tmp_path / "w.h5", progress=False)
