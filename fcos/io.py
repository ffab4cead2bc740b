"""Atomic file output, output-path checks and safe checkpoint I/O.

Outputs are written to a temporary file in the destination directory and renamed into place,
so an interrupted or failed run (disk full included) never leaves a half-written file under the
final name, nor a temporary file beside it. ``check_output_path`` refuses, before any work is
done, an output that would overwrite an input or that cannot be written. Checkpoints are plain
dicts of tensors and JSON-like values, loaded with ``weights_only=True`` only.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import CheckpointError, OutputError

# Free space (bytes) under which a failed write is reported as a full file system: writers that
# do their own I/O (torch.onnx, h5py) do not always say why a write failed.
_FULL_BELOW_BYTES = 64 * 1024
# errno values that mean "this output cannot be written" (rather than a missing input, say).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES,
                 errno.EPERM}


def check_output_path(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Return ``out`` as a Path after checking that a file can be written there.

    Refused with an OutputError (one line naming ``out``): ``out`` names one of the ``inputs``
    (the same file by any path: relative, absolute, through a symlink or a hard link), is a
    directory, lies under something that is not a directory, or its nearest existing directory
    is not writable. ``None`` inputs are skipped. Call it before doing the work.
    """
    final = Path(out)
    target = final.resolve()
    for path in inputs:
        if path is None:
            continue
        source = Path(path)
        same = source.resolve() == target
        if not same and source.exists() and final.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(source, final)
        if same:
            raise OutputError(f"{out}: is the input {path}; choose another output path so the input "
                              f"is not overwritten")
    if final.is_dir():
        raise OutputError(f"{out}: is a directory (expected the path of a file to write)")
    parent = final.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{out}: {parent} is not a directory, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: directory {parent} is not writable")
    return final


def check_free_space(out: str | os.PathLike, nbytes: int) -> None:
    """Raise OutputError (``cannot write OUT: No space left on device ...``) unless the file
    system that will hold ``out`` has ``nbytes`` free.

    For writers (HDF5) that cannot be trusted to fail cleanly once the disk is full.
    """
    final = Path(out)
    directory = final.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # nothing to measure; the write reports its own failure
    if free < nbytes:
        raise OutputError(f"cannot write {final}: {os.strerror(errno.ENOSPC)} (needs about "
                          f"{_mib(nbytes)}, {_mib(free)} free)")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def _cannot_write(final: Path, err: BaseException) -> OutputError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else os.strerror(errno.ENOSPC)
    return OutputError(f"cannot write {final}: {reason}")


def _disk_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < _FULL_BELOW_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    For writers that want a file name (h5py, torch.save, matplotlib). The temporary file is
    removed whatever happens. A failed write (an OSError such as ENOSPC or EROFS, or any error
    while the file system is full) is raised as one OutputError line: ``cannot write PATH: why``.
    """
    from .errors import FcosError

    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as err:
        raise _cannot_write(final, err) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, final)
    except FcosError:
        raise
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS and not _disk_full(final.parent):
            raise
        raise _cannot_write(final, err) from None
    except Exception as err:
        if not _disk_full(final.parent):
            raise
        raise _cannot_write(final, err) from None
    finally:
        tmp.unlink(missing_ok=True)


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
    # Serialised in memory first: a failed write then surfaces as an OSError naming the cause
    # (torch's own writer reports only "file write failed").
    buffer = io.BytesIO()
    torch.save(sealed, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())


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
