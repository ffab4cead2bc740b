"""Atomic file output and safe checkpoint I/O.

Outputs are written to a temporary file in the destination directory and renamed into place,
so an interrupted run never leaves a half-written file under the final name. Checkpoints are
plain dicts of tensors and JSON-like values, loaded with ``weights_only=True`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import CheckpointError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    For writers that want a file name (h5py, torch.save, matplotlib).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: file not found (expected a JSON file)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from None


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Save a checkpoint dict (tensors, numbers, strings, lists, dicts only), sealed with its
    checksum (fcos.sealing), atomically."""
    import torch

    from .sealing import seal

    sealed = seal(payload, str(path))
    with atomic_path(path) as tmp:
        torch.save(sealed, tmp)


def _check_zip_records(p: Path) -> None:
    """A torch checkpoint is a zip archive: refuse one whose directory is unreadable or whose
    records fail their CRC-32 (torch.load itself does not check them)."""
    import zipfile

    errors = (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError)
    try:
        is_zip = zipfile.is_zipfile(p)
    except errors:  # a damaged end-of-directory record
        is_zip = True
    if not is_zip:
        raise CheckpointError(f"{p}: not a loadable fcos checkpoint (no zip directory: truncated, "
                              f"or not written by torch.save)")
    try:
        with zipfile.ZipFile(p) as archive:
            bad = archive.testzip()
    except errors as err:
        raise CheckpointError(f"{p}: checksum mismatch (file damaged or edited): "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if bad is not None:
        raise CheckpointError(f"{p}: checksum mismatch (file damaged or edited): record {bad} "
                              f"fails its CRC-32")


def load_checkpoint(path: str | os.PathLike, require_seal: bool = True) -> dict:
    """Load a checkpoint with ``weights_only=True`` onto the CPU.

    Raises CheckpointError (one line, naming the file) when the file is missing, is not a torch
    checkpoint, is damaged (zip CRC-32 or the payload's sha256 seal, fcos.sealing), holds anything
    other than tensors owning exactly their storage and plain values, or carries no seal
    (UnsealedCheckpointError, naming the upgrade command). ``require_seal=False`` (for ``fcos
    seal`` only) accepts an unsealed payload after checking its structure.
    """
    import warnings

    import torch

    from .sealing import check_structure, verify

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    _check_zip_records(p)
    try:
        with warnings.catch_warnings():  # a damaged file's warnings would add lines to the one error
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{p}: not a loadable fcos checkpoint ({first})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{p}: not an fcos checkpoint (expected a dict with a 'state_dict' key)")
    if require_seal or "checksum" in payload:
        verify(payload, str(p))
    else:
        check_structure(payload, str(p))
    return payload


def refuse_to_overwrite(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise ConfigError if the output path ``out`` names one of the ``inputs`` (inputs are
    never overwritten)."""
    from .errors import ConfigError

    target = Path(out).resolve()
    for path in inputs:
        if path is not None and Path(path).resolve() == target:
            raise ConfigError(f"{out}: the output would overwrite an input file; choose another --out")
