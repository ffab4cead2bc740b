"""A prepared split's signals read from the file by row, for splits too large to hold in memory.

``SplitRows`` looks like the (N, 2, L) float32 array ``PreparedDataset.split`` returns for small
splits: ``len``, ``shape``, ``dtype`` and indexing by an int, a slice or an integer array (any
order, repeats allowed) give the same values as indexing the in-memory array would. Only the
rows asked for are read, so a training batch or an evaluation batch costs its own size in
memory, whatever the size of the split.

Two ways of reading, chosen from the dataset's layout:

- contiguous and uncompressed (what ``prepare`` writes for large splits): the rows are read
  with ``os.preadv`` straight from the file at the dataset's byte offset, one call per run of
  consecutive rows. No memory map: mapped pages would count in the process's resident memory
  until the kernel reclaims them; ``pread`` leaves them in the page cache only. ``pread`` is safe
  from several threads and after ``fork``.
- chunked (and compressed, what ``prepare`` writes for small splits): an h5py selection of the
  sorted rows. Correct but slow for random batches (each row may decompress a whole chunk), so a
  warning recommends preparing the file again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

_FLOAT32_LE = np.dtype("<f4")


class SplitRows:
    """Rows of ``/<split>/x`` of a prepared file, read on indexing.

    Args:
        path: the prepared file.
        split: the split group (train, val or test).
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, path: str | os.PathLike, split: str):
        self.path = Path(path)
        self.split = split
        with h5py.File(self.path, "r") as handle:
            ds = handle[split]["x"]
            self.shape = tuple(int(s) for s in ds.shape)
            offset = ds.id.get_offset()
            contiguous = ds.chunks is None and ds.compression is None and ds.dtype == _FLOAT32_LE
        self._offset = int(offset) if contiguous and offset is not None else None
        self._row_bytes = 4 * self.shape[1] * self.shape[2]
        self._pid = None
        self._fd = None
        self._handle = None
        if self._offset is None and self.shape[0]:
            log.warning("%s: split %r is stored in compressed chunks; reading it by row is slow. "
                        "Prepare the file again with this fcos to store large splits uncompressed.",
                        self.path, split)

    @property
    def reads_directly(self) -> bool:
        """True when rows are read with ``pread`` (contiguous, uncompressed layout)."""
        return self._offset is not None

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SplitRows({str(self.path)!r}, {self.split!r}, shape={self.shape})"

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._read_range(start, max(start, stop))
            return self._take(np.arange(start, stop, step))
        if isinstance(index, (int, np.integer)):
            position = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= position < len(self):
                raise IndexError(f"row {index} is out of range for {len(self)} rows")
            return self._read_range(position, position + 1)[0]
        return self._take(np.asarray(index))

    def blocks(self, rows_per_block: int):
        """Yield the split's rows in order, ``rows_per_block`` at a time (for checksums)."""
        for start in range(0, len(self), rows_per_block):
            yield self._read_range(start, min(len(self), start + rows_per_block))

    # -- reading ---------------------------------------------------------------------------

    def _take(self, positions: np.ndarray) -> np.ndarray:
        if positions.dtype == np.bool_ or positions.ndim != 1 or positions.dtype.kind not in "iu":
            raise IndexError("SplitRows: expected an int, a slice or a 1-D integer array")
        n = len(self)
        positions = np.where(positions < 0, positions + n, positions).astype(np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        unique, inverse = np.unique(positions, return_inverse=True)
        out = self._read_sorted(unique)
        if unique.size == positions.size and np.array_equal(unique, positions):
            return out
        return out[inverse.reshape(-1)]

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        if self._offset is None:
            return self._native(self._dataset()[start:stop])
        out = np.empty((stop - start,) + self.shape[1:], _FLOAT32_LE)
        self._pread_into(memoryview(out).cast("B"), self._offset + start * self._row_bytes)
        return self._native(out)

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        """Rows at ascending, distinct positions ``rows``."""
        if rows.size == 0:
            return np.empty((0,) + self.shape[1:], np.float32)
        if self._offset is None:
            return self._native(self._dataset()[rows])
        out = np.empty((rows.size,) + self.shape[1:], _FLOAT32_LE)
        buffer = memoryview(out).cast("B")
        # Runs of consecutive rows are read with one call each.
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.r_[0, breaks]
        ends = np.r_[breaks, rows.size]
        size = self._row_bytes
        for first, last in zip(starts.tolist(), ends.tolist()):
            self._pread_into(buffer[first * size:last * size], self._offset + int(rows[first]) * size)
        return self._native(out)

    def _pread_into(self, buffer: memoryview, offset: int) -> None:
        fd = self._file_descriptor()
        done = 0
        while done < len(buffer):
            got = os.preadv(fd, [buffer[done:]], offset + done)
            if got <= 0:
                raise DataError(f"{self.path}: file ends inside split {self.split!r} "
                                f"(truncated? expected {self.nbytes} bytes of x; prepare it again)")
            done += got

    def _file_descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _dataset(self) -> h5py.Dataset:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle[self.split]["x"]

    @staticmethod
    def _native(block: np.ndarray) -> np.ndarray:
        return block.astype(np.float32, copy=False)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._fd = self._handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass
