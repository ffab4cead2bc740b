"""Checkpoint seals: what a saved payload may hold, and the sha256 every load verifies.

A payload may hold dicts (str or int keys), lists, tuples, str, int, float, bool, None and dense
CPU tensors that own exactly their storage (contiguous, offset 0, storage bytes = elements x
element size): an expanded (stride-0) tensor or a view of a larger storage is refused, so that
no load can allocate more than the file holds.

The seal is ``payload["checksum"] = {"scheme": SCHEME, "sha256": hex}``, where hex is the sha256
of the canonical JSON (``sort_keys``, separators ``(",", ":")``, ASCII) of the payload without
its ``checksum`` entry, each value encoded as: a dict as a JSON object whose keys are
``"s:" + key`` (str keys) or ``"i:" + str(key)`` (int keys); a list or tuple as an array; a
tensor as ``{"tensor": {"dtype": str(dtype), "shape": [...], "sha256": sha256 of its elements'
bytes in C order}}``; other values as themselves (floats by ``repr``, NaN as ``NaN``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

SCHEME = "fcos-seal/1"
#: Deepest nesting accepted in a payload (real ones are < 10 deep).
MAX_DEPTH = 32
_PLAIN = (str, int, float, bool, type(None))


class UnsealedCheckpointError(CheckpointError):
    """A checkpoint written before checkpoints carried a checksum."""


def _path(parts: tuple) -> str:
    return ".".join(str(p) for p in parts) or "payload"


def owns_exact_storage(tensor: torch.Tensor) -> bool:
    """True if ``tensor`` is contiguous, at offset 0, and its storage holds exactly its elements."""
    return (tensor.layout == torch.strided and tensor.is_contiguous() and tensor.storage_offset() == 0
            and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size())


def check_structure(payload: Any, where: str) -> None:
    """Raise CheckpointError (one line, naming ``where`` and the key) unless ``payload`` holds
    only the values listed in the module docstring."""
    stack = [(payload, ())]
    while stack:
        value, parts = stack.pop()
        if len(parts) > MAX_DEPTH:
            raise CheckpointError(f"{where}: {_path(parts)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
                raise CheckpointError(f"{where}: {_path(parts)}: {value.layout} tensor "
                                      f"(expected a dense CPU tensor)")
            if not owns_exact_storage(value):
                raise CheckpointError(
                    f"{where}: {_path(parts)}: tensor of shape {tuple(value.shape)} with strides "
                    f"{value.stride()} and offset {value.storage_offset()} on a storage of "
                    f"{value.untyped_storage().nbytes()} bytes (expected a contiguous tensor that "
                    f"owns exactly its {value.numel() * value.element_size()} bytes)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise CheckpointError(f"{where}: {_path(parts)}: key {key!r} of type "
                                          f"{type(key).__name__} (expected str or int keys)")
                stack.append((item, parts + (key,)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, parts + (i,)) for i, item in enumerate(value))
        elif type(value) not in _PLAIN:
            raise CheckpointError(f"{where}: {_path(parts)}: value of type {type(value).__name__} "
                                  f"(expected tensors, dicts, lists, str, int, float, bool or None)")


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.contiguous().view(torch.uint8).numpy().tobytes()


def _canonical(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"tensor": {"dtype": str(value.dtype), "shape": list(value.shape),
                           "sha256": hashlib.sha256(_tensor_bytes(value)).hexdigest()}}
    if isinstance(value, dict):
        return {("i:" if isinstance(key, int) else "s:") + str(key): _canonical(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def payload_sha256(payload: dict) -> str:
    """The sha256 of ``payload`` (without its ``checksum`` entry) as defined in the module docstring."""
    body = {key: value for key, value in payload.items() if key != "checksum"}
    text = json.dumps(_canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _normalised(value: Any, parts: tuple = ()) -> Any:
    """``value`` with tensors made CPU tensors owning exactly their storage, numpy scalars made
    Python scalars, containers copied; refuses anything a safe load could not read back."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return tensor if owns_exact_storage(tensor) else tensor.clone(memory_format=torch.contiguous_format)
    if isinstance(value, dict):
        out = type(value)() if type(value) is not dict else {}
        for key, item in value.items():
            out[key] = _normalised(item, parts + (key,))
        return out
    if isinstance(value, (list, tuple)):
        items = [_normalised(item, parts + (i,)) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.generic):
        return value.item()
    return value


def seal(payload: dict, where: str = "checkpoint") -> dict:
    """A copy of ``payload`` ready to save: normalised (see ``_normalised``), checked, and carrying
    ``checksum`` (any old one is replaced)."""
    body = _normalised({key: value for key, value in payload.items() if key != "checksum"})
    check_structure(body, where)
    body["checksum"] = {"scheme": SCHEME, "sha256": payload_sha256(body)}
    return body


def verify(payload: dict, where: str) -> None:
    """Check a loaded payload's structure and seal; raise a one-line CheckpointError otherwise.

    A payload without ``checksum`` was written before checkpoints were sealed: the error names
    the command that upgrades it.
    """
    if "checksum" not in payload:
        raise UnsealedCheckpointError(
            f"{where}: checkpoint has no checksum (written before checkpoints were sealed); "
            f"upgrade it with: fcos seal {where} --out NEW.pt")
    check_structure(payload, where)
    seal_record = payload["checksum"]
    if not isinstance(seal_record, dict) or seal_record.get("scheme") != SCHEME \
            or not isinstance(seal_record.get("sha256"), str):
        raise CheckpointError(f"{where}: checksum entry is {seal_record!r} "
                              f"(expected {{'scheme': {SCHEME!r}, 'sha256': hex}})")
    if payload_sha256(payload) != seal_record["sha256"]:
        raise CheckpointError(f"{where}: checksum mismatch (file damaged or edited): the payload's "
                              f"sha256 differs from the one recorded at save")
