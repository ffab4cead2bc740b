"""Damaged and edited inputs end with exit 2 and one line naming the file, never a traceback,
and the inputs are left as they were (issue 11, items 3, 4, 6, 7, 8).

Each damaged file is built here: byte flips located with zipfile / h5py's chunk index, payloads
edited with plain torch.save, and the checkpoint seal recomputed by this file's own
implementation of the documented scheme (fcos.sealing's docstring), not the library's.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import zipfile

import h5py
import numpy as np
import pytest
import torch

from fcos.api import train_base_model
from fcos.cli import main
from fcos.data import prepare_dataset
from fcos.errors import CheckpointError
from fcos.io import load_checkpoint, save_checkpoint

MISMATCH = "checksum mismatch (file damaged or edited)"


# --- an independent implementation of the seal (fcos.sealing docstring) -----------------------

def _canonical(value):
    if isinstance(value, torch.Tensor):
        data = value.numpy().tobytes() if value.dtype != torch.bool else value.to(torch.uint8).numpy().tobytes()
        return {"tensor": {"dtype": str(value.dtype), "shape": list(value.shape),
                           "sha256": hashlib.sha256(data).hexdigest()}}
    if isinstance(value, dict):
        return {("i:" if isinstance(k, int) else "s:") + str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def independent_sha256(payload: dict) -> str:
    body = {k: v for k, v in payload.items() if k != "checksum"}
    text = json.dumps(_canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def write_sealed_by_hand(path, payload: dict, sha256: str | None = None):
    """torch.save ``payload`` with a seal computed here (or the given one)."""
    payload = dict(payload)
    payload["checksum"] = {"scheme": "fcos-seal/1", "sha256": sha256 or independent_sha256(payload)}
    torch.save(payload, path)
    return path


# --- fixtures and the one-line-error check ---------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_rml2016, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "base.pt"
    train_base_model(tiny_rml2016, "cnn1d", out, {"epochs": 1, "max_batches_per_epoch": 1, "device": "cpu"},
                     progress=False)
    return out


def one_line_error(capsys, argv, needle, *, inputs=(), names=None):
    """Run the CLI in-process; assert exit 2, exactly one stderr line containing the file name
    (``names``, default the first input) and ``needle``; assert ``inputs`` are byte-unchanged."""
    before = {p: p.read_bytes() for p in inputs}
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    for name in names or [inputs[0]]:
        assert str(name) in lines[0], lines[0]
    assert needle in lines[0], lines[0]
    for p, content in before.items():
        assert p.read_bytes() == content, f"{p} was modified"
    return lines[0]


def _record_data_span(path, name_suffix: str) -> tuple[int, int]:
    """(offset, size) of the stored bytes of the zip record ending in ``name_suffix``, read from
    the local header (30 fixed bytes, then name and extra field)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(name_suffix))
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def _flip(path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


# --- item 3: checksums ----------------------------------------------------------------------

def test_saved_checkpoints_carry_the_documented_sha256(trained):
    payload = torch.load(trained, weights_only=True)
    assert payload["checksum"]["scheme"] == "fcos-seal/1"
    assert payload["checksum"]["sha256"] == independent_sha256(payload)


def test_a_byte_flipped_in_a_weight_tensor_is_refused(trained, tiny_rml2016, tmp_path, capsys):
    ckpt = tmp_path / "flipped.pt"
    shutil.copy(trained, ckpt)
    with zipfile.ZipFile(ckpt) as archive:  # the largest record: the dense layer's weights
        largest = max(archive.infolist(), key=lambda i: i.file_size).filename
    offset, size = _record_data_span(ckpt, largest)
    _flip(ckpt, offset + size // 2)
    assert torch.load(ckpt, weights_only=True)  # torch alone would load it
    one_line_error(capsys, ["evaluate", "--data", tiny_rml2016, "--checkpoint", ckpt, "--out",
                            tmp_path / "m.json", "--device", "cpu"], MISMATCH, inputs=[ckpt, tiny_rml2016],
                   names=[ckpt])
    assert not (tmp_path / "m.json").exists()


def test_an_edited_weight_with_the_old_seal_is_refused(trained, tiny_rml2016, tmp_path, capsys):
    payload = torch.load(trained, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1e-3
    ckpt = tmp_path / "edited.pt"
    torch.save(payload, ckpt)  # keeps the old checksum entry
    one_line_error(capsys, ["evaluate", "--data", tiny_rml2016, "--checkpoint", ckpt, "--out",
                            tmp_path / "m.json", "--device", "cpu"], MISMATCH, inputs=[ckpt], names=[ckpt])


def test_every_single_byte_flip_is_refused_or_changes_nothing(tmp_path):
    """Flip each byte of a small sealed checkpoint: the load refuses it with one line, or what
    loads is bit-identical to the original (zip header fields and alignment padding nothing reads)."""
    torch.manual_seed(0)
    original = {"state_dict": {"w": torch.randn(3), "n": torch.tensor(7)}, "train": {"loss": [0.5]}}
    path = tmp_path / "small.pt"
    save_checkpoint(path, original)
    raw = path.read_bytes()
    reference = torch.load(path, weights_only=True)
    refused = unchanged = 0
    for pos in range(len(raw)):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as err:
            assert "\n" not in str(err) and str(path) in str(err)
            refused += 1
            continue
        assert _canonical(loaded) == _canonical(reference), f"byte {pos} changed the content silently"
        unchanged += 1
    assert refused > len(raw) // 2


def test_an_unsealed_checkpoint_names_the_upgrade_and_seal_upgrades_it(trained, tiny_rml2016, tmp_path, capsys):
    payload = torch.load(trained, weights_only=True)
    del payload["checksum"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    line = one_line_error(capsys, ["evaluate", "--data", tiny_rml2016, "--checkpoint", old, "--out",
                                   tmp_path / "m.json", "--device", "cpu"], "fcos seal", inputs=[old], names=[old])
    assert "no checksum" in line
    new = tmp_path / "new.pt"
    assert main(["seal", str(old), "--out", str(new)]) == 0
    sealed = torch.load(new, weights_only=True)
    assert sealed["checksum"]["sha256"] == independent_sha256(sealed)
    assert all(torch.equal(sealed["state_dict"][k], v) for k, v in payload["state_dict"].items())
    assert main(["evaluate", "--data", str(tiny_rml2016), "--checkpoint", str(new), "--out",
                 str(tmp_path / "m.json"), "--device", "cpu"]) == 0
    # seal never overwrites its input, and never re-seals a damaged sealed file
    one_line_error(capsys, ["seal", old, "--out", old], "is the input", inputs=[old])
    edited = torch.load(new, weights_only=True)
    edited["train"]["best_val_accuracy"] = 0.99
    torch.save(edited, tmp_path / "edited.pt")
    one_line_error(capsys, ["seal", tmp_path / "edited.pt", "--out", tmp_path / "x.pt"], MISMATCH,
                   inputs=[tmp_path / "edited.pt"])
    assert not (tmp_path / "x.pt").exists()


# --- item 4: payload validation -------------------------------------------------------------

def _edits():
    def arch_list(p): p["architecture"] = [1, 2]
    def sd_list(p): p["state_dict"] = list(p["state_dict"].values())
    def classes_x(p): p["model"]["num_classes"] = "x"
    def dataset_str(p): p["dataset"] = "rml2016"
    def dataset_len(p): p["dataset"]["length"] = 256
    def dataset_classes(p): p["dataset"]["classes"] = p["dataset"]["classes"][:5]
    def absurd_length(p): p["model"]["length"] = 10 ** 12; p["dataset"]["length"] = 10 ** 12
    def recovery_str(p): p["extra"]["recovery"] = "lots"
    return {"architecture": (arch_list, "architecture"), "state_dict": (sd_list, "state_dict"),
            "num_classes": (classes_x, "model.num_classes"), "dataset-type": (dataset_str, "dataset"),
            "dataset-length": (dataset_len, "dataset.length"), "dataset-classes": (dataset_classes, "dataset.classes"),
            "absurd-length": (absurd_length, "model.length"), "recovery": (recovery_str, "extra.recovery")}


@pytest.mark.parametrize("edit", sorted(_edits()))
def test_edited_payload_entries_give_one_line(edit, trained, tiny_rml2016, tmp_path, capsys):
    change, key = _edits()[edit]
    payload = torch.load(trained, weights_only=True)
    change(payload)
    ckpt = write_sealed_by_hand(tmp_path / f"{edit}.pt", payload)  # a valid seal: the entry itself is checked
    one_line_error(capsys, ["evaluate", "--data", tiny_rml2016, "--checkpoint", ckpt, "--out",
                            tmp_path / "m.json", "--device", "cpu"], key, inputs=[ckpt], names=[ckpt])


@pytest.mark.parametrize("tensor, needle", [
    (torch.zeros(1).expand(10 ** 6, 10 ** 6), "strides (0, 0)"),       # 4 TB if made contiguous
    (torch.zeros(1000)[:10], "storage of 4000 bytes"),                   # hidden storage
    (torch.zeros(4, 6).t(), "strides (1, 6)"),                           # not contiguous
])
def test_tensors_that_do_not_own_exactly_their_storage_are_refused(tensor, needle, trained, tmp_path, capsys):
    payload = torch.load(trained, weights_only=True)
    payload["state_dict"]["dense.weight"] = tensor
    ckpt = write_sealed_by_hand(tmp_path / "view.pt", payload, sha256="0" * 64)  # refused before hashing
    line = one_line_error(capsys, ["seal", ckpt, "--out", tmp_path / "out.pt"], needle, inputs=[ckpt])
    assert "state_dict.dense.weight" in line
    assert not (tmp_path / "out.pt").exists()


def test_a_file_that_is_not_a_checkpoint_gives_one_line(tiny_rml2016, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip" * 100)
    one_line_error(capsys, ["evaluate", "--data", tiny_rml2016, "--checkpoint", junk, "--out",
                            tmp_path / "m.json"], "not a loadable fcos checkpoint", inputs=[junk])


# --- item 6: damaged prepared data ----------------------------------------------------------

def _flip_in_chunk(path, dataset: str) -> None:
    with h5py.File(path, "r") as handle:
        info = handle[dataset].id.get_chunk_info(0)
    _flip(path, info.byte_offset + info.size // 2)


def test_a_damaged_compressed_chunk_gives_the_sha256_line(trained, tiny_rml2016, tmp_path, capsys):
    data = tmp_path / "d.h5"
    shutil.copy(tiny_rml2016, data)
    _flip_in_chunk(data, "test/x")
    needle = "does not match its sha256"
    one_line_error(capsys, ["inspect", data], needle, inputs=[data])
    one_line_error(capsys, ["evaluate", "--data", data, "--checkpoint", trained, "--out", tmp_path / "m.json",
                            "--device", "cpu"], needle, inputs=[data, trained])


def test_inspect_verifies_every_split(tiny_rml2016, tmp_path, capsys):
    data = tmp_path / "d.h5"
    shutil.copy(tiny_rml2016, data)
    with h5py.File(data, "r+") as handle:  # valid HDF5, one label changed
        y = handle["val/y"][...]
        y[0] = (y[0] + 1) % 11
        handle["val/y"][...] = y
    one_line_error(capsys, ["inspect", data], "split 'val' does not match its sha256", inputs=[data])


# --- item 7: evaluation on another split ----------------------------------------------------

def test_evaluate_refuses_another_split_unless_allowed(trained, tmp_path, capsys):
    other = tmp_path / "other.h5"  # same synthetic source, another split seed
    prepare_dataset("rml2016", "synthetic", other, per_class_snr=10, seed=1, progress=False)
    out = tmp_path / "m.json"
    one_line_error(capsys, ["evaluate", "--data", other, "--checkpoint", trained, "--out", out, "--device", "cpu"],
                   "--allow-other-split", inputs=[trained, other], names=[trained, other])
    assert not out.exists()
    rc = main(["evaluate", "--data", str(other), "--checkpoint", str(trained), "--out", str(out),
               "--device", "cpu", "--allow-other-split"])
    assert rc == 0 and json.loads(out.read_text())["n_test"] > 0


# --- item 8: loader faults ------------------------------------------------------------------

def test_a_pickle_declaring_a_huge_object_gives_one_line(tmp_path, capsys):
    pkl = tmp_path / "RML2016.10a_dict.pkl"
    # protocol 4: BINBYTES8 with a length of 2**62 bytes, then nothing
    pkl.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 62) + b"\x00" * 16 + b".")
    one_line_error(capsys, ["prepare", "rml2016", "--source", pkl, "--out", tmp_path / "d.h5", "--no-progress"],
                   "RML2016.10a pickle", inputs=[pkl])
    assert not (tmp_path / "d.h5").exists()


def test_an_rml2018_file_with_a_scalar_z_gives_one_line(tmp_path, capsys):
    path = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    with h5py.File(path, "w") as handle:
        handle["X"] = np.zeros((24, 1024, 2), np.float32)
        handle["Y"] = np.eye(24, dtype=np.int64)
        handle["Z"] = np.int64(10)
    one_line_error(capsys, ["prepare", "rml2018", "--source", path, "--out", tmp_path / "d.h5", "--no-progress"],
                   "Z is int64 of shape ()", inputs=[path])


def _npz(path):
    rng = np.random.default_rng(0)
    n = 24
    np.savez(path, x=rng.standard_normal((n, 2, 512)).astype(np.float32),
             y=np.arange(n) % 12, snr=np.full(n, 10))
    return path


@pytest.mark.parametrize("damage", ["truncated", "crc"])
def test_a_damaged_npz_gives_one_line(damage, tmp_path, capsys):
    path = _npz(tmp_path / "sig.npz")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        offset, size = _record_data_span(path, "x.npy")
        _flip(path, offset + size // 2)
    one_line_error(capsys, ["prepare", "sig2019", "--source", path, "--out", tmp_path / "d.h5", "--no-progress"],
                   "not a readable .npz archive", inputs=[path])
