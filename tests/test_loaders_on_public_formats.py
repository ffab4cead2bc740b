"""The real-file loaders read files written here, without the project's format writers.

Each file is built the way its public release was made, with nothing from ``fcos.data.formats``:

- RML2016.10a: the opcodes Python 2's cPickle (protocol 2) emitted for a dict keyed by
  ``(mod, snr)`` tuples of a byte string and an int, holding float32 arrays (frames, 2, 128) as
  numpy 1.x reduced them (``numpy.core.multiarray._reconstruct`` + a state tuple with the raw
  bytes as a Python 2 ``str``), assembled byte by byte with memo references as cPickle wrote them.
- RML2018.01a: an HDF5 file written with h5py: ``X`` (N, 1024, 2) float32, ``Y`` one-hot (N, 24)
  int64, ``Z`` (N, 1) int64 SNR, rows by class then SNR as in GOLD_XYZ_OSC.0001_1024.hdf5.
- Sig2019-12: the documented layout (``fcos.data.loaders``): signals.npy / labels.npy /
  snrs.npy saved with ``np.save``, and the same arrays as an ``np.savez`` archive.

The loaded arrays, labels and SNRs must equal what the test wrote, row for row.
"""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from fcos.data.loaders import DatasetSubsetWarning, load_source
from fcos.data.specs import DATASETS

# ------------------------------------------------------------------ a cPickle protocol-2 writer


class Py2Pickle:
    """Protocol-2 opcodes, appended one by one, with cPickle's memo (BINPUT after each object
    that Python 2 memoised, BINGET when the same object is written again)."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo: dict[object, int] = {}

    def put(self, key) -> None:
        index = len(self.memo)
        self.memo[key] = index
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

    def get_or(self, key, write) -> None:
        if key in self.memo:
            index = self.memo[key]
            self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)
        else:
            write()
            self.put(key)

    def string(self, data: bytes) -> None:  # a Python 2 str
        if len(data) < 256:
            self.out += b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
        else:
            self.out += b"T" + struct.pack("<i", len(data)) + data  # BINSTRING

    def int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])  # BININT1
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)  # BININT2
        else:
            self.out += b"J" + struct.pack("<i", value)  # BININT

    def glob(self, module: str, name: str) -> None:
        self.get_or(("global", module, name),
                    lambda: self.out.extend(b"c" + f"{module}\n{name}\n".encode()))

    def dtype_float32(self) -> None:
        # numpy 1.x: dtype.__reduce__ = (dtype, ('f4', 0, 1), (3, '<', None, None, None, -1, -1, 0))
        self.glob("numpy", "dtype")
        self.string(b"f4"); self.int(0); self.int(1)
        self.out += b"\x87R"  # TUPLE3, REDUCE
        self.out += b"("  # MARK
        self.int(3); self.string(b"<")
        self.out += b"NNN"
        self.int(-1); self.int(-1); self.int(0)
        self.out += b"tb"  # TUPLE, BUILD

    def array(self, arr: np.ndarray) -> None:
        # numpy 1.x: ndarray.__reduce__ = (_reconstruct, (ndarray, (0,), 'b'),
        #                                  (1, shape, dtype, is_fortran, raw bytes))
        self.glob("numpy.core.multiarray", "_reconstruct")
        self.glob("numpy", "ndarray")
        self.int(0)
        self.out += b"\x85"  # TUPLE1: (0,)
        self.put(object())
        self.string(b"b")
        self.put(object())
        self.out += b"\x87"  # TUPLE3
        self.put(object())
        self.out += b"R"  # REDUCE
        self.put(object())
        self.out += b"("
        self.int(1)
        for dim in arr.shape:
            self.int(dim)
        self.out += b"\x87"  # TUPLE3 (the shape is 3-D)
        self.put(object())
        # one dtype object for every array: written once, then a memo reference
        self.get_or(("dtype", "f4"), self.dtype_float32)
        self.out += b"\x89"  # NEWFALSE: C order
        self.string(np.ascontiguousarray(arr, dtype="<f4").tobytes())
        self.out += b"t"
        self.put(object())
        self.out += b"b"  # BUILD

    def rml2016_dict(self, entries: dict[tuple[str, int], np.ndarray]) -> bytes:
        self.out += b"}"  # EMPTY_DICT
        self.put(object())
        self.out += b"("  # MARK: one SETITEMS batch (cPickle batches 1000 items)
        for (mod, snr), arr in entries.items():
            # the generator reused one str object per modulation name: memoised, then BINGET
            self.get_or(("str", mod), lambda mod=mod: self.string(mod.encode("ascii")))
            self.int(snr)
            self.out += b"\x86"  # TUPLE2
            self.put(object())
            self.array(arr)
        self.out += b"u."  # SETITEMS, STOP
        return bytes(self.out)


def frames(rng, n: int, length: int, layout: str = "iq-first") -> np.ndarray:
    """Distinct float32 frames: (n, 2, length), or (n, length, 2) for RML2018's layout."""
    shape = (n, 2, length) if layout == "iq-first" else (n, length, 2)
    return rng.standard_normal(shape).astype(np.float32)


def rows_by_content(x: np.ndarray) -> dict[bytes, int]:
    return {row.tobytes(): i for i, row in enumerate(x)}


# ---------------------------------------------------------------------------------- RML2016


def test_rml2016_cpickle_protocol2_dict_loads_as_written(tmp_path):
    spec = DATASETS["rml2016"]
    rng = np.random.default_rng(1)
    # every class, three SNRs (negative ones need BININT), 3 frames each (raw bytes > 255: BINSTRING)
    entries = {(mod, snr): frames(rng, 3, 128) for snr in (-20, 0, 18) for mod in spec.classes}
    path = tmp_path / "RML2016.10a_dict.pkl"
    path.write_bytes(Py2Pickle().rml2016_dict(entries))

    with pytest.warns(DatasetSubsetWarning):
        raw = load_source("rml2016", path, progress=False)

    assert raw.x.dtype == np.float32 and raw.x.shape == (len(entries) * 3, 2, 128)
    for (mod, snr), arr in entries.items():
        rows = (raw.y == spec.classes.index(mod)) & (raw.snr == snr)
        np.testing.assert_array_equal(raw.x[rows], arr)
    assert sorted(set(raw.snr.tolist())) == [-20, 0, 18]
    assert np.bincount(raw.y).tolist() == [9] * spec.num_classes


def test_rml2016_cpickle_stream_is_what_python_reads_too(tmp_path):
    # The hand-assembled stream is a valid pickle: Python's own unpickler (trusted here: the
    # test built the bytes) reads the same dict, so the loader test above tests the loader.
    import pickle

    entries = {("BPSK", -2): frames(np.random.default_rng(0), 2, 128),
               ("QPSK", -2): frames(np.random.default_rng(1), 2, 128)}
    data = pickle.loads(Py2Pickle().rml2016_dict(entries), encoding="latin1")
    assert set(data) == set(entries)
    for key, arr in entries.items():
        np.testing.assert_array_equal(data[key], arr)


# ---------------------------------------------------------------------------------- RML2018


def test_rml2018_h5py_file_loads_as_written(tmp_path):
    spec = DATASETS["rml2018"]
    rng = np.random.default_rng(2)
    snrs, per_group = (-20, 10, 30), 2
    labels = np.repeat(np.arange(spec.num_classes), len(snrs) * per_group)
    snr = np.tile(np.repeat(snrs, per_group), spec.num_classes)
    x = frames(rng, labels.size, 1024, layout="time-first")
    path = tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5"
    with h5py.File(path, "w") as handle:
        handle["X"] = x
        handle["Y"] = np.eye(spec.num_classes, dtype=np.int64)[labels]
        handle["Z"] = snr.astype(np.int64).reshape(-1, 1)

    with pytest.warns(DatasetSubsetWarning):
        raw = load_source("rml2018", path, progress=False)

    assert raw.x.dtype == np.float32 and raw.x.shape == (labels.size, 2, 1024)
    written = rows_by_content(np.ascontiguousarray(x.transpose(0, 2, 1)))
    found = [written[row.tobytes()] for row in raw.x]  # KeyError: a row the test did not write
    assert sorted(found) == list(range(labels.size))
    np.testing.assert_array_equal(raw.y, labels[found])
    np.testing.assert_array_equal(raw.snr, snr[found])


# ---------------------------------------------------------------------------------- Sig2019


def _sig2019_arrays():
    spec = DATASETS["sig2019"]
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(spec.num_classes), 2 * 2)
    snr = np.tile(np.repeat([0, 12], 2), spec.num_classes)
    return frames(rng, labels.size, 512), labels.astype(np.int64), snr.astype(np.int64)


def _check_sig2019(raw, x, labels, snr):
    assert raw.x.dtype == np.float32 and raw.x.shape == x.shape
    written = rows_by_content(x)
    found = [written[row.tobytes()] for row in raw.x]
    assert sorted(found) == list(range(labels.size))
    np.testing.assert_array_equal(raw.y, labels[found])
    np.testing.assert_array_equal(raw.snr, snr[found])


def test_sig2019_npy_directory_loads_as_written(tmp_path):
    x, labels, snr = _sig2019_arrays()
    directory = tmp_path / "sig2019-12"
    directory.mkdir()
    np.save(directory / "signals.npy", x)
    np.save(directory / "labels.npy", labels)
    np.save(directory / "snrs.npy", snr)
    with pytest.warns(DatasetSubsetWarning):
        raw = load_source("sig2019", directory, progress=False)
    _check_sig2019(raw, x, labels, snr)


def test_sig2019_labels_with_snr_column_and_npz_load_as_written(tmp_path):
    x, labels, snr = _sig2019_arrays()
    directory = tmp_path / "two-columns"
    directory.mkdir()
    np.save(directory / "signals.npy", x)
    np.save(directory / "labels.npy", np.stack([labels, snr], axis=1))
    np.savez(tmp_path / "sig2019.npz", x=x, y=labels, snr=snr)
    for source in (directory, tmp_path / "sig2019.npz"):
        with pytest.warns(DatasetSubsetWarning):
            raw = load_source("sig2019", source, progress=False)
        _check_sig2019(raw, x, labels, snr)
