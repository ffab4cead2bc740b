"""Readers for the real dataset files, each returning a validated ``RawDataset``.

Accepted sources (``path`` may name the file itself or the directory holding it):

- ``rml2016``: ``RML2016.10a_dict.pkl``, a Python-2 pickle of a dict
  ``{(modulation: str, snr: int): float32 array (frames, 2, 128)}``. It is read with a restricted
  unpickler that can only rebuild numpy arrays inside dicts/tuples of str and int; any other
  global (``os.system``, ``builtins.eval``, ...) is refused before it can run.
- ``rml2018``: ``GOLD_XYZ_OSC.0001_1024.hdf5`` with datasets ``X`` (N, 1024, 2) float,
  ``Y`` one-hot (N, 24) numeric, ``Z`` SNR (N, 1) or (N,) numeric. ``Y`` and ``Z`` are read
  first; the signals ``X`` (21 GB in the release) are only read for the selected rows, in
  chunks, and transposed to (N, 2, 1024). With ``lazy_signals=True`` they are not read at
  all here: ``RawDataset.x`` is then an ``RML2018Rows`` view that reads (and checks) the rows
  asked for, so ``prepare`` can stream them into the prepared file without holding them.
- ``sig2019``: the authors' layout is not public, so this documented layout is accepted:
  a directory holding ``signals.npy`` (N, 2, 512) float, ``labels.npy`` (N,) int label index into
  ``DATASETS["sig2019"].classes`` and ``snrs.npy`` (N,) int SNR in dB -- or, with no
  ``snrs.npy``, ``labels.npy`` of shape (N, 2) holding (label, snr) columns -- or a single
  ``.npz`` file with keys ``x`` (N, 2, 512), ``y`` (N,) and ``snr`` (N,). Arrays are read with
  ``allow_pickle=False``; ``.npy`` files are memory-mapped so only selected rows are read.

Every loader checks shapes, dtypes, label range, SNR grid and finiteness, and raises a one-line
``DataError`` naming the file and what was expected. Holding a subset of an official dataset
(fewer frames per (class, SNR), fewer SNRs or classes) is accepted with a warning recorded in
``RawDataset.warnings``; ``strict=True`` turns that warning into a ``DataError``.
"""

from __future__ import annotations

import codecs
import os
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .rawdataset import RawDataset
from .specs import DatasetSpec, get_spec
from .split import check_seed, stratified_subsample

# Rows of X read per HDF5 request: 4096 x 1024 x 2 float32 = 32 MiB per chunk.
RML2018_CHUNK_ROWS = 4096
# Rows of the one-hot Y matrix checked per request (65536 x 24 int64 = 12 MiB).
RML2018_LABEL_CHUNK_ROWS = 65536

SIG2019_NPZ_KEYS = ("x", "y", "snr")
_SIG2019_EXPECTED = (
    "a directory with signals.npy (N, 2, 512), labels.npy (N,) and snrs.npy (N,), "
    "or a .npz with keys x, y, snr"
)


class DatasetSubsetWarning(UserWarning):
    """A dataset file holds less (or other) data than the official release."""


def load_source(
    name: str,
    path: str | os.PathLike,
    strict: bool = False,
    *,
    min_snr: int | None = None,
    per_class_snr: int | None = None,
    seed: int = 0,
    progress: bool = True,
    lazy_signals: bool = False,
) -> RawDataset:
    """Read a real dataset file into a validated ``RawDataset``.

    Args:
        name: dataset key (``rml2016``, ``rml2018`` or ``sig2019``).
        path: the dataset file, or the directory that holds it (see the module docstring).
        strict: refuse (DataError) a file that is only a subset of the official dataset
            instead of warning.
        min_snr: keep only SNR >= min_snr dB (the authors use 10 for RML2018); None keeps all.
        per_class_snr: keep at most this many frames per (class, SNR), chosen at random with
            ``seed`` per group; None keeps all. Applied before the signals are read.
        seed: non-negative int for ``per_class_snr`` subsampling.
        progress: show a tqdm bar while reading large files.
        lazy_signals: for ``rml2018``, leave the signals in the file: ``x`` is an
            ``RML2018Rows`` view (rows read on indexing, non-finite values refused then).
            Ignored by the other loaders, whose files are small.

    Returns:
        RawDataset with x float32 (N, 2, L), y int64 (N,), snr int16 (N,), rows ordered by the
        file's order (RML2016: by class index, then SNR), ``source`` = the file read,
        ``info`` = loader options and file facts, ``warnings`` = deviations from the official
        dataset.

    Raises:
        ConfigError: unknown dataset name or out-of-range option.
        DataError: missing, unreadable or malformed file (one line naming it).
    """
    spec = get_spec(name)
    if min_snr is not None:
        if isinstance(min_snr, bool) or not isinstance(min_snr, (int, np.integer)):
            raise ConfigError(f"min_snr: expected an integer SNR in dB or null, got {min_snr!r}")
        if not any(s >= min_snr for s in spec.snrs):
            raise ConfigError(
                f"min_snr: {min_snr} dB removes every SNR of {spec.name} "
                f"(grid {spec.snrs[0]}..{spec.snrs[-1]} dB)"
            )
        min_snr = int(min_snr)
    if per_class_snr is not None:
        if (isinstance(per_class_snr, bool) or not isinstance(per_class_snr, (int, np.integer))
                or per_class_snr < 1):
            raise ConfigError(
                f"per_class_snr: expected a positive integer or null, got {per_class_snr!r}")
        per_class_snr = int(per_class_snr)
    seed = check_seed(seed)
    options = {"min_snr": min_snr, "per_class_snr": per_class_snr, "seed": seed}
    readers = {"rml2016": _load_rml2016, "rml2018": _load_rml2018, "sig2019": _load_sig2019}
    if spec.name == "rml2018":
        raw = _load_rml2018(spec, Path(path), options, progress, lazy_signals)
    else:
        raw = readers[spec.name](spec, Path(path), options, progress)
    _check_against_official(raw, options, strict)
    return raw.validate()


# --------------------------------------------------------------------------------------------
# Shared checks


def _resolve_file(path: Path, spec: DatasetSpec) -> Path:
    """``path`` itself if it is a file, else ``path / spec.official_file``."""
    file = path / spec.official_file if path.is_dir() else path
    if not file.is_file():
        raise DataError(
            f"{file}: file not found (expected {spec.official_file}, the {spec.title} release)")
    return file


def _select_rows(y: np.ndarray, snr: np.ndarray, options: dict) -> np.ndarray:
    """Sorted row indices passing the ``min_snr`` filter and the ``per_class_snr`` cap."""
    rows = np.arange(y.size, dtype=np.int64)
    if options["min_snr"] is not None:
        rows = rows[snr >= options["min_snr"]]
    if options["per_class_snr"] is not None:
        rows = rows[stratified_subsample(y[rows], snr[rows], options["per_class_snr"], options["seed"])]
    return rows


def _integer_values(arr: np.ndarray, file: Path, what: str) -> np.ndarray:
    """``arr`` as int64 if it is numeric and integer-valued, else a one-line DataError."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{file}: {what} has dtype {arr.dtype} (expected integers)")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(
                f"{file}: {what} has {int(bad.sum())} non-integer values (expected integers)")
    return arr.astype(np.int64)


def _check_labels_and_snrs(spec: DatasetSpec, y: np.ndarray, snr: np.ndarray, file: Path) -> None:
    """Labels must index ``spec.classes``; SNRs must lie on the spec's grid."""
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        bad = int(((y < 0) | (y >= spec.num_classes)).sum())
        raise DataError(
            f"{file}: {bad} labels outside 0..{spec.num_classes - 1} "
            f"(expected label indices of the {spec.num_classes} {spec.name} classes)"
        )
    off_grid = np.setdiff1d(np.unique(snr), np.asarray(spec.snrs))
    if off_grid.size:
        shown = ", ".join(str(int(s)) for s in off_grid[:5]) + (", ..." if off_grid.size > 5 else "")
        raise DataError(
            f"{file}: SNR values {shown} dB are not on the {spec.name} grid "
            f"(expected {spec.snrs[0]}..{spec.snrs[-1]} dB in steps of {spec.snrs[1] - spec.snrs[0]})"
        )


def _check_finite(x: np.ndarray, file: Path) -> None:
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        _raise_non_finite(bad, file)


def _raise_non_finite(bad: int, file: Path) -> None:
    raise DataError(
        f"{file}: {bad} non-finite values (NaN or inf) in the signals (expected finite I/Q samples)")


def _short_title(spec: DatasetSpec) -> str:
    return spec.title.split(" (")[0]


def _format_list(values, limit: int = 6) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _check_against_official(raw: RawDataset, options: dict, strict: bool) -> None:
    """Warn (or, when strict, refuse) if ``raw`` holds less or other data than the official
    dataset, after the requested ``min_snr`` / ``per_class_snr`` selection.

    Records real counts in ``raw.info["frames_per_class_snr"]``.
    """
    spec = raw.spec
    min_snr, cap = options["min_snr"], options["per_class_snr"]
    expected_snrs = [s for s in spec.snrs if min_snr is None or s >= min_snr]
    expected_frames = spec.per_class_snr if cap is None else min(cap, spec.per_class_snr)

    classes_present = np.unique(raw.y)
    snrs_present = np.unique(raw.snr)
    _, counts = np.unique(raw.y.astype(np.int64) * 1000 + (raw.snr.astype(np.int64) + 500),
                          return_counts=True)
    lo, hi = int(counts.min()), int(counts.max())
    raw.info["frames_per_class_snr"] = {"min": lo, "max": hi}

    notes = []
    if classes_present.size < spec.num_classes:
        held = set(classes_present.tolist())
        missing = [c for i, c in enumerate(spec.classes) if i not in held]
        notes.append(f"{classes_present.size} of {spec.num_classes} classes "
                     f"(missing {_format_list(missing)})")
    missing_snrs = sorted(set(expected_snrs) - set(snrs_present.tolist()))
    if missing_snrs:
        notes.append(f"{len(expected_snrs) - len(missing_snrs)} of {len(expected_snrs)} SNRs "
                     f"(missing {_format_list(missing_snrs)} dB)")
    if counts.size < classes_present.size * snrs_present.size:
        notes.append(f"{counts.size} of {classes_present.size * snrs_present.size} (class, SNR) pairs")
    if lo != expected_frames or hi != expected_frames:
        held = str(lo) if lo == hi else f"{lo} to {hi}"
        notes.append(f"{held} frames per (class, SNR) instead of {expected_frames}")
    if not notes:
        return
    expected_total = spec.num_classes * len(expected_snrs) * expected_frames
    message = (f"{Path(raw.source).name}: differs from the official {_short_title(spec)}: "
               f"{'; '.join(notes)} ({len(raw)} vectors instead of {expected_total})")
    if strict:
        raise DataError(f"{message}; strict mode refuses a partial dataset")
    raw.warnings.append(message)
    warnings.warn(message, DatasetSubsetWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# RML2016.10a: restricted unpickling


def _numpy_reconstruct():
    # The array-rebuilding function numpy names in its pickles; fetched from a live reduce so
    # it works whether numpy calls its core package ``numpy.core`` (1.x) or ``numpy._core`` (2.x).
    return np.zeros(0).__reduce__()[0]


# Everything a pickled numpy array needs, and nothing else. Python 2 pickles of numpy arrays
# (protocol 0-2) reference only these globals (copy_reg is not needed: ndarray and dtype define
# __reduce__); a Python 3 pickle with protocol <= 2 also wraps the raw bytes in
# ``_codecs.encode(text, "latin1")``, a pure string-to-bytes conversion.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _ArrayDictUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays (plus the dict/tuple/str/int around them)."""

    def __init__(self, handle, file: Path):
        # latin1 maps Python 2 byte strings one-to-one onto str, which numpy accepts as array data.
        super().__init__(handle, encoding="latin1")
        self._file = file

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise DataError(
                f"{self._file}: refuses to unpickle {module}.{name} "
                f"(only numpy arrays in a dict keyed by (str, int) are allowed)"
            )
        return allowed()


def _safe_unpickle(file: Path) -> object:
    try:
        with open(file, "rb") as handle:
            return _ArrayDictUnpickler(handle, file).load()
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{file}: not a readable RML2016.10a pickle (it declares an object larger than "
                        f"the memory available: damaged file, or not the release)") from None
    except Exception as err:  # pickle raises many types on corrupt input
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"{file}: not a readable RML2016.10a pickle ({type(err).__name__}: {first})") from None


def _load_rml2016(spec: DatasetSpec, path: Path, options: dict, progress: bool) -> RawDataset:
    file = _resolve_file(path, spec)
    data = _safe_unpickle(file)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{file}: holds {type(data).__name__}, expected a non-empty dict "
                        f"{{(modulation, snr): float32 array (frames, 2, {spec.length})}}")
    class_index = {c: i for i, c in enumerate(spec.classes)}
    groups = []  # (label, snr, array)
    for key, value in data.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise DataError(f"{file}: dict key {key!r} is not a (modulation, snr) pair")
        mod, snr = key
        if isinstance(mod, bytes):
            mod = mod.decode("latin1")
        if not isinstance(mod, str) or isinstance(snr, bool) or not isinstance(snr, (int, np.integer)):
            raise DataError(f"{file}: dict key {key!r} is not a (str modulation, int snr) pair")
        if mod not in class_index:
            raise DataError(
                f"{file}: unknown modulation {mod!r} (expected one of {', '.join(spec.classes)})")
        if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[1:] != (2, spec.length) \
                or value.dtype.kind != "f" or value.shape[0] == 0:
            got = (f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise DataError(f"{file}: entry ({mod}, {snr}) is a {got} "
                            f"(expected float32 array (frames, 2, {spec.length}))")
        groups.append((class_index[mod], int(snr), value))

    # Dict order is whatever the writer used; sort so the same file always gives the same rows.
    groups.sort(key=lambda g: (g[0], g[1]))
    y = np.concatenate([np.full(g[2].shape[0], g[0], np.int64) for g in groups])
    snr = np.concatenate([np.full(g[2].shape[0], g[1], np.int64) for g in groups])
    _check_labels_and_snrs(spec, y, snr, file)
    rows = _select_rows(y, snr, options)
    if rows.size == 0:
        raise DataError(f"{file}: no vectors left after min_snr={options['min_snr']}")
    x = np.concatenate([g[2] for g in groups])[rows].astype(np.float32, copy=False)
    _check_finite(x, file)
    info = {"loader": "rml2016-pickle", "file": file.name, "file_bytes": file.stat().st_size,
            "file_vectors": int(y.size), **options}
    return RawDataset(x=np.ascontiguousarray(x), y=y[rows], snr=snr[rows].astype(np.int16),
                      spec=spec, source=str(file), info=info)


# --------------------------------------------------------------------------------------------
# RML2018.01A: HDF5, read by selected rows


def _load_rml2018(spec: DatasetSpec, path: Path, options: dict, progress: bool,
                  lazy_signals: bool = False) -> RawDataset:
    file = _resolve_file(path, spec)
    layout = (f"X (N, {spec.length}, 2) float32, Y one-hot (N, {spec.num_classes}), Z SNR (N, 1)")
    try:
        handle = h5py.File(file, "r")
    except OSError as err:
        raise DataError(f"{file}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    try:
        with handle:
            for key in ("X", "Y", "Z"):
                if not isinstance(handle.get(key), h5py.Dataset):
                    raise DataError(f"{file}: missing dataset {key!r} (expected {layout})")
            X, Y, Z = handle["X"], handle["Y"], handle["Z"]
            n = X.shape[0] if X.ndim else 0
            if X.ndim != 3 or X.shape[1:] != (spec.length, 2) or X.dtype.kind != "f":
                raise DataError(f"{file}: X is {X.dtype} of shape {X.shape} "
                                f"(expected (N, {spec.length}, 2) float32)")
            if Y.ndim != 2 or Y.shape[1] != spec.num_classes or Y.dtype.kind not in "biuf":
                raise DataError(f"{file}: Y is {Y.dtype} of shape {Y.shape} (expected one-hot "
                                f"(N, {spec.num_classes}) for the {spec.num_classes} classes)")
            if Z.ndim not in (1, 2) or Z.shape[1:] not in ((1,), ()) or Z.dtype.kind not in "biuf":
                raise DataError(f"{file}: Z is {Z.dtype} of shape {Z.shape} "
                                f"(expected SNR in dB, (N, 1) integers)")
            if n == 0 or Y.shape[0] != n or Z.shape[0] != n:
                raise DataError(f"{file}: X, Y, Z have {n}, {Y.shape[0]}, {Z.shape[0]} rows "
                                f"(expected the same non-zero number)")
            y = _read_one_hot(Y, file)
            snr = _integer_values(Z[...].reshape(-1), file, "Z (SNR)")
            _check_labels_and_snrs(spec, y, snr, file)
            rows = _select_rows(y, snr, options)
            if rows.size == 0:
                raise DataError(f"{file}: no vectors left after min_snr={options['min_snr']}")
            x = (RML2018Rows(file, rows, spec.length) if lazy_signals
                 else _read_rows_transposed(X, rows, file, progress))
    except OSError as err:  # h5py reports read failures of a damaged file as OSError
        raise DataError(f"{file}: HDF5 read failed ({str(err).splitlines()[0]})") from None
    info = {"loader": "rml2018-hdf5", "file": file.name, "file_bytes": file.stat().st_size,
            "file_vectors": int(n), **options}
    return RawDataset(x=x, y=y[rows], snr=snr[rows].astype(np.int16), spec=spec,
                      source=str(file), info=info)


def _read_one_hot(Y, file: Path) -> np.ndarray:
    """Label indices from a one-hot (N, C) dataset, read in chunks; rows must be exactly one-hot."""
    n = Y.shape[0]
    labels = np.empty(n, np.int64)
    bad_rows = 0
    for start in range(0, n, RML2018_LABEL_CHUNK_ROWS):
        block = np.asarray(Y[start:start + RML2018_LABEL_CHUNK_ROWS])
        ones = block == 1
        one_hot = ones.sum(axis=1) == 1
        one_hot &= ((block == 0) | ones).all(axis=1)
        bad_rows += int((~one_hot).sum())
        labels[start:start + block.shape[0]] = ones.argmax(axis=1)
    if bad_rows:
        raise DataError(f"{file}: Y has {bad_rows} rows that are not one-hot "
                        f"(expected a single 1 and zeros elsewhere in each of the {Y.shape[1]} columns)")
    return labels


def _read_rows_transposed(X, rows: np.ndarray, file: Path, progress: bool) -> np.ndarray:
    """Read ``X[rows]`` (rows sorted ascending) chunk by chunk into a (len(rows), 2, L) array.

    A chunk of ``RML2018_CHUNK_ROWS`` selected rows is read as one slice when the rows are
    consecutive (the authors' SNR filter selects long runs of the release's class/SNR-ordered
    rows), otherwise as an h5py selection of sorted rows (which measured as fast as reading the
    runs one by one, and faster than over-reading a covering slice).
    """
    length = X.shape[1]
    out = np.empty((rows.size, 2, length), np.float32)
    bad = 0
    with tqdm(total=int(rows.size), disable=not progress, unit="vec", desc=f"reading {file.name}",
              leave=False) as bar:
        for start in range(0, rows.size, RML2018_CHUNK_ROWS):
            chunk = rows[start:start + RML2018_CHUNK_ROWS]
            lo, hi = int(chunk[0]), int(chunk[-1]) + 1
            block = np.asarray(X[lo:hi] if hi - lo == chunk.size else X[chunk])
            bad += int(np.count_nonzero(~np.isfinite(block)))
            out[start:start + chunk.size] = block.transpose(0, 2, 1)
            bar.update(chunk.size)
    if bad:
        _raise_non_finite(bad, file)
    return out


class RML2018Rows:
    """Selected rows of an RML2018 file's ``X``, read only when indexed, as (k, 2, L) float32.

    Indexing takes a slice or an ascending integer array of positions into the selection
    (what ``prepare`` asks for); each read opens the file, reads chunk by chunk (see
    ``_read_rows_transposed``) and raises the one-line DataError on non-finite values.
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, file: Path, rows: np.ndarray, length: int):
        self.file = Path(file)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (int(self.rows.size), 2, int(length))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        positions = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if positions.ndim != 1 or (positions.size > 1 and np.any(np.diff(positions) <= 0)):
            raise IndexError("RML2018Rows: expected a slice or ascending 1-D positions")
        if positions.size == 0:
            return np.empty((0,) + self.shape[1:], np.float32)
        try:
            with h5py.File(self.file, "r") as handle:
                return _read_rows_transposed(handle["X"], self.rows[positions], self.file, False)
        except OSError as err:
            raise DataError(f"{self.file}: HDF5 read failed ({str(err).splitlines()[0]})") from None


# --------------------------------------------------------------------------------------------
# Sig2019-12: documented .npy / .npz layout


def _npy(file: Path) -> np.ndarray:
    if not file.is_file():
        raise DataError(f"{file}: file not found (expected {_SIG2019_EXPECTED})")
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{file}: not a readable .npy array ({str(err).splitlines()[0]})") from None


def _load_sig2019(spec: DatasetSpec, path: Path, options: dict, progress: bool) -> RawDataset:
    if path.is_dir():
        file = path
        signals = _npy(path / "signals.npy")
        labels = _npy(path / "labels.npy")
        if (path / "snrs.npy").is_file():
            snrs = _npy(path / "snrs.npy")
        elif labels.ndim == 2 and labels.shape[1] == 2:
            labels, snrs = labels[:, 0], labels[:, 1]
        else:
            raise DataError(f"{path / 'snrs.npy'}: file not found (expected {_SIG2019_EXPECTED}, "
                            f"or labels.npy of shape (N, 2) holding (label, snr))")
        names = {"x": "signals.npy", "y": "labels.npy", "snr": "snrs.npy"}
    elif path.is_file() and path.suffix == ".npz":
        file = path
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in SIG2019_NPZ_KEYS if k not in archive.files]
                if missing:
                    raise DataError(f"{path}: missing key(s) {', '.join(missing)} "
                                    f"(expected {_SIG2019_EXPECTED})")
                signals, labels, snrs = (archive[k] for k in SIG2019_NPZ_KEYS)
        except DataError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise DataError(f"{path}: not a readable .npz archive (truncated or damaged: {first})") from None
        except MemoryError:
            raise DataError(f"{path}: not a readable .npz archive (an array declares more memory than "
                            f"is available: damaged file)") from None
        names = {"x": "key x", "y": "key y", "snr": "key snr"}
    elif path.exists():
        raise DataError(f"{path}: not a Sig2019-12 source (expected {_SIG2019_EXPECTED})")
    else:
        raise DataError(f"{path}: file not found (expected {_SIG2019_EXPECTED})")

    if signals.ndim != 3 or signals.shape[1:] != (2, spec.length) or signals.dtype.kind != "f":
        raise DataError(f"{file}: {names['x']} is {signals.dtype} of shape {signals.shape} "
                        f"(expected float32 (N, 2, {spec.length}))")
    n = signals.shape[0]
    if n == 0 or labels.shape != (n,) or snrs.shape != (n,):
        raise DataError(
            f"{file}: {names['x']}, {names['y']}, {names['snr']} have shapes {signals.shape}, "
            f"{labels.shape}, {snrs.shape} (expected (N, 2, {spec.length}), (N,), (N,) with N > 0)")
    y = _integer_values(labels, file, names["y"])
    snr = _integer_values(snrs, file, names["snr"])
    _check_labels_and_snrs(spec, y, snr, file)
    rows = _select_rows(y, snr, options)
    if rows.size == 0:
        raise DataError(f"{file}: no vectors left after min_snr={options['min_snr']}")
    # Fancy indexing a memory map reads only the selected rows.
    x = np.ascontiguousarray(signals[rows], dtype=np.float32)
    _check_finite(x, file)
    info = {"loader": "sig2019-npz" if path.is_file() else "sig2019-npy", "file": file.name,
            "file_vectors": int(n), **options}
    return RawDataset(x=x, y=y[rows], snr=snr[rows].astype(np.int16), spec=spec,
                      source=str(file), info=info)
