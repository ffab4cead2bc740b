"""Bounded memory: RML2018 prepared by streaming, large splits read by row, and the device logic.

Expected values come from arrays the tests write and read themselves with h5py and hashlib, not
from the code under test: the streamed file must hold exactly the selected source rows, split as
``stratified_split`` says, and a run that reads batches from the file must equal the in-memory
run bit for bit.
"""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch

import fcos.data.loaders as loaders
import fcos.data.prepared as prepared
from fcos.batches import batches
from fcos.data import SplitRows, load_prepared, prepare_dataset, stratified_split
from fcos.device import autocast, effective_precision, grad_scaler, loader_settings, resolve_device
from fcos.errors import ConfigError, DataError
from fcos.models import build_model
from fcos.train import TrainConfig, evaluate_checkpoint, seed_everything, train_model

L18 = 1024
QUICK = {"epochs": 2, "batch_size": 32, "max_batches_per_epoch": 3, "device": "cpu", "seed": 4}


def _write_source(path, snrs=(8, 10, 12), frames=6, seed=0):
    """An RML2018-format file written here with h5py: X (N, 1024, 2), Y one-hot, Z (N, 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(24), len(snrs) * frames)
    snr = np.tile(np.repeat(np.asarray(snrs), frames), 24)
    X = rng.standard_normal((labels.size, L18, 2)).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle["X"] = X
        handle["Y"] = np.eye(24, dtype=np.int64)[labels]
        handle["Z"] = snr.reshape(-1, 1)
    return X, labels, snr


def _expected_splits(X, labels, snr, min_snr, seed):
    keep = np.flatnonzero(snr >= min_snr)
    rows = stratified_split(labels[keep], snr[keep], 0.1, 0.2, seed)
    return {name: (X[keep[r]].transpose(0, 2, 1), labels[keep[r]], snr[keep[r]]) for name, r in rows.items()}


def _sha(x, y, snr):
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, "<f4").tobytes())
    digest.update(np.ascontiguousarray(y, "<i8").tobytes())
    digest.update(np.ascontiguousarray(snr, "<i2").tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("uncompressed", [False, True], ids=["gzip-chunks", "contiguous"])
def test_streamed_prepare_holds_exactly_the_selected_rows(tmp_path, monkeypatch, uncompressed):
    src = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    X, labels, snr = _write_source(src)
    if uncompressed:
        monkeypatch.setattr(prepared, "UNCOMPRESSED_ABOVE_BYTES", 0)
    # Small read blocks, and every read of X recorded: each selected row is read once, no read
    # covers more than one block, so the selection is never held whole.
    monkeypatch.setattr(loaders, "RML2018_CHUNK_ROWS", 16)
    reads = []
    real_getitem = h5py.Dataset.__getitem__

    def recording(self, index, *args, **kwargs):
        block = real_getitem(self, index, *args, **kwargs)
        if self.name == "/X":
            reads.append(block.shape[0])
        return block

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    with pytest.warns(UserWarning):
        manifest = prepare_dataset("rml2018", src, tmp_path / "p.h5", min_snr=10, seed=3, progress=False)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", real_getitem)
    expected = _expected_splits(X, labels, snr, 10, 3)
    assert max(reads) <= 16 and sum(reads) == sum(len(e[1]) for e in expected.values())
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        for name, (x, y, s) in expected.items():
            np.testing.assert_array_equal(handle[name]["x"][...], x)
            np.testing.assert_array_equal(handle[name]["y"][...], y)
            np.testing.assert_array_equal(handle[name]["snr"][...], s)
            assert manifest["sha256"][name] == _sha(x, y, s)
            assert (handle[name]["x"].compression is None) == uncompressed


def test_non_finite_source_row_found_while_streaming_leaves_no_output(tmp_path):
    src = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    _write_source(src, snrs=(10,), frames=4)
    with h5py.File(src, "r+") as handle:
        handle["X"][50, 7, 1] = np.nan
    with pytest.raises(DataError) as err, pytest.warns(UserWarning):
        prepare_dataset("rml2018", src, tmp_path / "p.h5", progress=False)
    assert "\n" not in str(err.value) and "non-finite" in str(err.value) and src.name in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


@pytest.fixture(scope="module")
def contiguous_rml2016(tmp_path_factory):
    """A synthetic RML2016-like file whose splits are all stored contiguous and uncompressed."""
    path = tmp_path_factory.mktemp("stream") / "r16.h5"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepared, "UNCOMPRESSED_ABOVE_BYTES", 0)
        prepare_dataset("rml2016", "synthetic", path, per_class_snr=8, seed=1, progress=False)
    return path


@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
def test_split_rows_index_like_the_array(contiguous_rml2016, tiny_rml2016, layout):
    path = contiguous_rml2016 if layout == "contiguous" else tiny_rml2016
    with h5py.File(path, "r") as handle:
        truth = handle["train"]["x"][...]
    data = load_prepared(path, max_in_memory_mb=0)
    x, y, _ = data.split("train")
    assert isinstance(x, SplitRows) and x.reads_directly == (layout == "contiguous")
    assert len(x) == len(truth) and x.shape == truth.shape
    rng = np.random.default_rng(0)
    picks = np.r_[rng.permutation(len(truth))[:50], [3, 3, -1]]
    np.testing.assert_array_equal(x[picks], truth[picks])
    np.testing.assert_array_equal(x[5:77], truth[5:77])
    np.testing.assert_array_equal(x[-1], truth[-1])
    np.testing.assert_array_equal(x[torch.tensor([9, 2, 4])], truth[[9, 2, 4]])
    assert isinstance(load_prepared(path).split("train")[0], np.ndarray), "small data stays in memory"


def test_damaged_file_is_refused_when_read_by_row(contiguous_rml2016, tmp_path):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(contiguous_rml2016.read_bytes())
    with h5py.File(damaged, "r") as handle:
        offset = handle["val"]["x"].id.get_offset()
    with open(damaged, "r+b") as handle:
        handle.seek(offset + 100)
        byte = handle.read(1)
        handle.seek(offset + 100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataError, match="'val' does not match its sha256"):
        load_prepared(damaged, max_in_memory_mb=0).split("val")


def test_training_and_evaluation_from_the_file_equal_the_in_memory_run(contiguous_rml2016, tmp_path,
                                                                       monkeypatch):
    info = {"name": "cnn1d", "num_classes": 11, "length": 128}
    records, weights = {}, {}
    for mode, limit in (("memory", None), ("file", 0)):
        data = load_prepared(contiguous_rml2016, max_in_memory_mb=limit)
        assert isinstance(data.split("train")[0], SplitRows) == (mode == "file")
        seed_everything(4)
        records[mode] = train_model(build_model("cnn1d", 11, 128), data, TrainConfig(**QUICK),
                                    tmp_path / f"{mode}.pt", model_info=info, progress=False)
        weights[mode] = torch.load(tmp_path / f"{mode}.pt", weights_only=True)["state_dict"]
        records[mode]["eval"] = evaluate_checkpoint(tmp_path / f"{mode}.pt", data, device="cpu")
    assert all(torch.equal(weights["memory"][k], weights["file"][k]) for k in weights["memory"])
    for key in ("loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert [h[key] for h in records["memory"]["history"]] == [h[key] for h in records["file"]["history"]]
    assert records["memory"]["eval"]["confusion"] == records["file"]["eval"]["confusion"]
    # The environment variable is the workflow's and the CLI's way to set the limit.
    monkeypatch.setenv("FCOS_MAX_IN_MEMORY_MB", "0")
    assert isinstance(load_prepared(contiguous_rml2016).split("test")[0], SplitRows)
    monkeypatch.setenv("FCOS_MAX_IN_MEMORY_MB", "lots")
    with pytest.raises(ConfigError, match="FCOS_MAX_IN_MEMORY_MB"):
        load_prepared(contiguous_rml2016)


def test_loading_threads_do_not_change_the_batches(contiguous_rml2016):
    x, y, _ = load_prepared(contiguous_rml2016, max_in_memory_mb=0).split("train")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    plain = list(batches(x, y, 17, torch.device("cpu"), order=order, steps=6))
    threaded = list(batches(x, y, 17, torch.device("cpu"), order=order, steps=6, workers=3))
    assert len(plain) == len(threaded) == 6
    for (xa, ya), (xb, yb) in zip(plain, threaded):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    rows = order[17:34].numpy()
    with h5py.File(contiguous_rml2016, "r") as handle:
        np.testing.assert_array_equal(plain[1][0].numpy(), handle["train"]["x"][...][rows])


# ------------------------------------------------------------------------------ device choice


def test_device_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:3")
    for bad in ("tpu", "meta", "gpu"):
        with pytest.raises(ConfigError) as err:
            resolve_device(bad)
        assert "\n" not in str(err.value) and bad in str(err.value)


def test_mixed_precision_and_loader_settings_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert effective_precision(cpu, "bf16") == "off" and effective_precision(cuda, "bf16") == "bf16"
    assert not grad_scaler(cpu, "fp16").is_enabled()
    with autocast(cpu, "fp16"):  # no autocast on a CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_settings(cuda, None) == (4, True)
    assert loader_settings(cpu, None) == (0, False)
    assert loader_settings(cpu, 2) == (2, False)
    with pytest.raises(ConfigError, match="loader_workers"):
        loader_settings(cpu, -1)
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8").validate()


def test_gpu_options_on_a_cpu_train_float32_like_the_plain_run(tiny_rml2016, tmp_path):
    data = load_prepared(tiny_rml2016)
    info = {"name": "cnn1d", "num_classes": 11, "length": 128}
    weights, records = [], []
    for extra in ({}, {"mixed_precision": "fp16", "loader_workers": 2}):
        seed_everything(4)
        out = tmp_path / f"m{len(weights)}.pt"
        records.append(train_model(build_model("cnn1d", 11, 128), data, TrainConfig(**QUICK, **extra), out,
                                   model_info=info, progress=False))
        weights.append(torch.load(out, weights_only=True)["state_dict"])
    assert records[1]["mixed_precision"] == "off" and records[1]["device"] == "cpu"
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
