"""Prepared datasets: one split, checksummed HDF5 file per dataset, written once, read many times.

``prepare_dataset`` turns a source (the seeded synthetic generator or a real file) into a file
whose layout is::

    /                 attribute "manifest": JSON string (see ``prepare_dataset``)
    /train/x          float32 (N_train, 2, L)   I/Q vectors, chunked, gzip + shuffle; a split
                                                larger than UNCOMPRESSED_ABOVE_BYTES is stored
                                                contiguous and uncompressed instead, so that
                                                batches can be read from it by row
    /train/y          int64   (N_train,)        label index into manifest["classes"]
    /train/snr        int16   (N_train,)        SNR in dB
    /val/...          same three datasets
    /test/...         same three datasets

The manifest lives only inside the file, so a file and its description cannot drift apart. The
file is deterministic (no timestamps anywhere): the same inputs give byte-identical output, and
the per-split sha256 identifies the data in checkpoints and result tables. It is written to a
temporary name and renamed, so an interrupted run never leaves a partial file at ``out``.

Memory: a real RML2018 file's selected signals are streamed from the source into the prepared
file a block at a time (the loader's ``lazy_signals``), with the checksum updated in the same
pass, so ``prepare`` holds only labels, SNRs and one block. Reading: a split whose signals fit
``max_in_memory_mb`` is read whole into memory (and checked against its sha256); a larger one
is checked block by block and handed out as a ``SplitRows`` view that reads the rows asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import ConfigError, DataError
from ..io import atomic_path, check_free_space, check_output_path
from .loaders import load_source
from .split_rows import SplitRows
from .rawdataset import RawDataset
from .specs import DatasetSpec, get_spec
from .split import SPLITS, check_fractions, check_seed, smallest_group_for_splits, stratified_split
from .synthetic import synthesize

FORMAT = "fcos-prepared/1"
# Frames per (class, SNR) when a synthetic stand-in is prepared without an explicit count:
# enough for every split of every group to be non-trivial, small enough to generate in seconds.
DEFAULT_SYNTHETIC_PER_CLASS_SNR = 200
# Target size of one compressed HDF5 chunk of x (and of one write).
_CHUNK_BYTES = 1 << 20
# Room for HDF5's metadata and the chunk it holds in memory before writing: see prepare_dataset.
_H5_MARGIN = 256 * 1024 + _CHUNK_BYTES
_GZIP_LEVEL = 1  # I/Q noise barely compresses; level 1 gets most of the gain at little cost
_WRITTEN_BY = "a prepared dataset file written by prepare_dataset"
_MANIFEST_KEYS = ("format", "dataset", "classes", "length", "snrs", "counts", "sha256")
# A split whose signals exceed this is written contiguous and uncompressed (I/Q noise gains ~10%
# from gzip) so that training can read random batches from it without decompressing chunks.
UNCOMPRESSED_ABOVE_BYTES = 256 << 20
# Splits whose signals take more than this are read by row instead of into memory, unless the
# caller or the environment variable below says otherwise. Every dataset of the test, default
# and CPU-study configs (and the full RML2016.10a) stays far below it.
DEFAULT_MAX_IN_MEMORY_MB = 1024
MAX_IN_MEMORY_ENV = "FCOS_MAX_IN_MEMORY_MB"
# Rows hashed per read when a split is checked block by block (32 MiB at L = 1024).
_HASH_BLOCK_BYTES = 32 << 20


def prepare_dataset(
    name: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    per_class_snr: int | None = None,
    seed: int = 0,
    strict: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_snr: int | None = None,
    synthetic_options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Build a prepared dataset file at ``out`` and return its manifest.

    Args:
        name: dataset key (``rml2016``, ``rml2018``, ``sig2019``).
        source: ``"synthetic"`` for the seeded stand-in generator, else the path of the real
            file (or its directory; see ``fcos.data.loaders``).
        out: output HDF5 path (its directory is created if needed; an existing file is replaced
            only when the new one is complete).
        per_class_snr: frames per (class, SNR): generated for synthetic data (default
            ``DEFAULT_SYNTHETIC_PER_CLASS_SNR``), a cap for real data (None keeps all).
        seed: non-negative int seeding generation, subsampling and the split.
        strict: refuse a real file that is only part of the official dataset.
        val_fraction, test_fraction: per-(class, SNR) held-out fractions (see ``stratified_split``).
        min_snr: keep only SNR >= min_snr dB (None keeps every SNR of the grid).
        synthetic_options: extra keyword options for ``synthesize`` (synthetic source only).
        progress: show progress bars while reading large real files.

    Returns:
        The manifest (also stored in the file) with keys: ``format``, ``dataset``, ``title``,
        ``source`` (``"synthetic"`` or the file name), ``seed``, ``classes``, ``num_classes``,
        ``length``, ``snrs`` (present, ascending), ``counts`` (per split and ``total``),
        ``group_counts`` (number of (class, SNR) groups and min/max vectors per group for each
        split and ``total``), ``per_class_snr``, ``min_snr``, ``strict``, ``split``
        (fractions and seed), ``options`` (generator/loader options, ``RawDataset.info``),
        ``warnings``, ``sha256`` (per split and ``overall``, see ``split_sha256``),
        ``fcos_version``.

    Raises:
        ConfigError: unknown dataset or an option out of range (naming the key).
        DataError: the source is missing or malformed.
    """
    spec = get_spec(name)
    out = check_output_path(out, None if str(source) == "synthetic" else source)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    if synthetic_options is not None and not isinstance(synthetic_options, dict):
        raise ConfigError(
            f"synthetic_options: expected a mapping, got {type(synthetic_options).__name__}")

    if str(source) == "synthetic":
        per_class_snr = DEFAULT_SYNTHETIC_PER_CLASS_SNR if per_class_snr is None else per_class_snr
        raw = _synthesize(spec, per_class_snr, seed, min_snr, synthetic_options or {}, progress)
        source_name = "synthetic"
    else:
        if synthetic_options:
            raise ConfigError("synthetic_options: only valid with source 'synthetic'")
        # lazy_signals: the selected RML2018 frames are read block by block while writing.
        raw = load_source(name, source, strict=strict, min_snr=min_snr,
                          per_class_snr=per_class_snr, seed=seed, progress=progress,
                          lazy_signals=True)
        source_name = Path(raw.source).name

    splits = stratified_split(raw.y, raw.snr, val_fraction, test_fraction, seed)
    _check_no_empty_split(raw, splits, val_fraction, test_fraction, source_name)
    manifest = {
        "format": FORMAT,
        "dataset": spec.name,
        "title": spec.title,
        "source": source_name,
        "seed": seed,
        "classes": list(spec.classes),
        "num_classes": spec.num_classes,
        "length": spec.length,
        "snrs": [int(s) for s in np.unique(raw.snr)],
        "counts": {**{s: int(splits[s].size) for s in SPLITS}, "total": len(raw)},
        "group_counts": _group_counts(raw, splits),
        "per_class_snr": per_class_snr,
        "min_snr": min_snr,
        "strict": bool(strict),
        "split": {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed},
        "options": raw.info,
        "warnings": list(raw.warnings),
        "sha256": {},
        "fcos_version": __version__,
    }

    # HDF5 does not fail cleanly once the disk is full (it can crash while closing the file), so
    # the space is checked first, and again before every block (something else may be writing).
    total = sum(_split_bytes(splits[split].size, raw.x.shape[2]) for split in SPLITS)
    check_free_space(out, total + _H5_MARGIN)
    written = [0]

    def before_block(nbytes: int) -> None:  # what is already in the temporary file is not needed again
        check_free_space(out, total - written[0] + _H5_MARGIN)
        written[0] += nbytes

    with atomic_path(out) as tmp:
        # track_times=False on every dataset keeps timestamps out, so identical inputs give
        # identical bytes; track_order fixes the order groups and datasets are listed in.
        with h5py.File(tmp, "w", track_order=True) as handle:
            for split in SPLITS:
                manifest["sha256"][split] = _write_split(handle, split, raw, splits[split], before_block)
            manifest["sha256"]["overall"] = overall_sha256(manifest["sha256"])
            handle.attrs["manifest"] = json.dumps(manifest, sort_keys=True, allow_nan=False)
    return manifest


def _synthesize(spec: DatasetSpec, per_class_snr, seed: int, min_snr, options: dict,
                progress: bool) -> RawDataset:
    """Run the generator on the spec's SNR grid above ``min_snr`` (it checks its own arguments)."""
    if min_snr is not None and (isinstance(min_snr, bool)
                                or not isinstance(min_snr, (int, np.integer))):
        raise ConfigError(f"min_snr: expected an integer SNR in dB or null, got {min_snr!r}")
    snrs = [s for s in spec.snrs if min_snr is None or s >= min_snr]
    if not snrs:
        raise ConfigError(f"min_snr: {min_snr} dB removes every SNR of {spec.name} "
                          f"(grid {spec.snrs[0]}..{spec.snrs[-1]} dB)")
    return synthesize(spec.name, per_class_snr, seed, snrs=snrs, progress=progress, **options)


def _group_counts(raw: RawDataset, splits: dict[str, np.ndarray]) -> dict:
    """Number of (class, SNR) groups and min/max vectors per group, per split and in total."""
    keys = np.stack([raw.y, raw.snr.astype(np.int64)])
    _, group_of_row = np.unique(keys, axis=1, return_inverse=True)
    group_of_row = group_of_row.reshape(-1)
    n_groups = int(group_of_row.max()) + 1
    summary: dict = {"groups": n_groups}
    for split, rows in {**splits, "total": None}.items():
        members = group_of_row if rows is None else group_of_row[rows]
        counts = np.bincount(members, minlength=n_groups)
        summary[split] = {"min": int(counts.min()), "max": int(counts.max())}
    return summary


def _split_bytes(n: int, length: int) -> int:
    """Uncompressed bytes of a split of ``n`` vectors: an upper bound of its size on disk, as
    noisy I/Q samples barely compress."""
    return n * (2 * length * 4 + 8 + 2)


def _check_no_empty_split(raw: RawDataset, splits: dict, val_fraction: float, test_fraction: float,
                          source_name: str) -> None:
    """Refuse a split left empty although its fraction is not zero (later steps need it)."""
    fractions = {"train": 1.0, "val": val_fraction, "test": test_fraction}
    empty = [split for split in SPLITS if fractions[split] > 0 and splits[split].size == 0]
    if not empty:
        return
    _, sizes = np.unique(np.stack([raw.y, raw.snr.astype(np.int64)]), axis=1, return_counts=True)
    largest = int(sizes.max()) if sizes.size else 0
    needed = smallest_group_for_splits(val_fraction, test_fraction)
    which = " and ".join(empty)
    raise ConfigError(
        f"per_class_snr: {largest} frame(s) per (class, SNR) of {source_name} leave the {which} "
        f"split{'s' if len(empty) > 1 else ''} empty (val_fraction {val_fraction}, test_fraction "
        f"{test_fraction}); the smallest per_class_snr that fills every split is {needed}")


def _write_split(handle, split: str, raw: RawDataset, rows: np.ndarray, before_block=None) -> str:
    """Write ``raw[rows]`` as group ``split``; return its sha256 (see ``split_sha256``).

    ``before_block(nbytes)``, when given, is called before each block of x is written."""
    length = raw.x.shape[2]
    group = handle.create_group(split, track_order=True)
    n = rows.size
    rows_per_chunk = max(1, _CHUNK_BYTES // (2 * length * 4))
    if n * 2 * length * 4 > UNCOMPRESSED_ABOVE_BYTES:
        # fill_time "never": every byte is written below, so HDF5 need not zero 4 GB first.
        x_ds = group.create_dataset("x", shape=(n, 2, length), dtype="<f4", fill_time="never",
                                    track_times=False)
    elif n:
        x_ds = group.create_dataset(
            "x", shape=(n, 2, length), dtype="<f4", chunks=(min(n, rows_per_chunk), 2, length),
            compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True, track_times=False)
    else:  # HDF5 cannot chunk an empty dataset
        x_ds = group.create_dataset("x", shape=(0, 2, length), dtype="<f4", track_times=False)
    digest = hashlib.sha256()
    # Write whole HDF5 chunks at a time, gathering rows from the source without copying it all.
    step = rows_per_chunk * 16
    for start in range(0, n, step):
        block = np.ascontiguousarray(raw.x[rows[start:start + step]], dtype="<f4")
        if before_block is not None:
            before_block(block.nbytes)
        x_ds[start:start + block.shape[0]] = block
        digest.update(block.tobytes())
    y = np.ascontiguousarray(raw.y[rows], dtype="<i8")
    snr = np.ascontiguousarray(raw.snr[rows], dtype="<i2")
    group.create_dataset("y", data=y, track_times=False)
    group.create_dataset("snr", data=snr, track_times=False)
    digest.update(y.tobytes())
    digest.update(snr.tobytes())
    return digest.hexdigest()


def split_sha256(x: np.ndarray, y: np.ndarray, snr: np.ndarray) -> str:
    """sha256 of one split: the bytes of x (float32), then y (int64), then snr (int16), each
    C-ordered little-endian."""
    digest = hashlib.sha256()
    for arr, dtype in ((x, "<f4"), (y, "<i8"), (snr, "<i2")):
        digest.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return digest.hexdigest()


def overall_sha256(split_hashes: dict) -> str:
    """sha256 identifying the whole prepared dataset: of the text ``"train:<hex>\\nval:<hex>\\n
    test:<hex>\\n"`` built from the per-split hashes."""
    text = "".join(f"{split}:{split_hashes[split]}\n" for split in SPLITS)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------------------------
# Reading


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {_WRITTEN_BY})")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest stored in a prepared dataset file (a dict; see ``prepare_dataset``).

    Raises:
        DataError: the file is missing, not HDF5, or carries no valid fcos manifest.
    """
    path = Path(path)
    with _open(path) as handle:
        text = handle.attrs.get("manifest")
    if text is None:
        raise DataError(f"{path}: no 'manifest' attribute (expected {_WRITTEN_BY})")
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        manifest = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise DataError(f"{path}: the 'manifest' attribute is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: manifest format {found!r} is not supported (expected {FORMAT!r})")
    missing = [key for key in _MANIFEST_KEYS if key not in manifest]
    missing += [f"{key}[{split}]" for key in ("counts", "sha256") if key in manifest
                for split in SPLITS
                if not isinstance(manifest[key], dict) or split not in manifest[key]]
    if missing:
        raise DataError(
            f"{path}: manifest lacks {', '.join(missing)} (expected a complete {FORMAT} manifest)")
    return manifest


class PreparedDataset:
    """A prepared dataset file, checked on open; split arrays are read on first request.

    Attributes:
        path: the file.
        manifest: its manifest dict.
        spec: the ``DatasetSpec`` named by the manifest.
        classes: class names in label order (tuple).
        snrs: SNRs present, ascending (tuple of int, dB).
        length: samples per I/Q vector.
        num_classes: number of classes.
        sha256: the overall data hash (``manifest["sha256"]["overall"]``).
        counts: vectors per split (dict).
    """

    splits = SPLITS

    def __init__(self, path: Path, manifest: dict, spec: DatasetSpec,
                 max_in_memory_mb: float = DEFAULT_MAX_IN_MEMORY_MB):
        self.path = path
        self.max_in_memory_mb = max_in_memory_mb
        self.manifest = manifest
        self.spec = spec
        self.classes = tuple(manifest["classes"])
        self.snrs = tuple(int(s) for s in manifest["snrs"])
        self.length = int(manifest["length"])
        self.num_classes = len(self.classes)
        self.sha256 = manifest["sha256"]["overall"]
        self.counts = {s: int(manifest["counts"][s]) for s in SPLITS}
        self._cache: dict[str, tuple] = {}

    def __repr__(self) -> str:
        return (f"PreparedDataset({str(self.path)!r}, dataset={self.spec.name!r}, "
                f"counts={self.counts}, sha256={self.sha256[:12]}...)")

    def in_memory(self, name: str) -> bool:
        """Whether split ``name``'s signals fit ``max_in_memory_mb`` (and are read whole)."""
        return self.counts[name] * 2 * self.length * 4 <= self.max_in_memory_mb * (1 << 20)

    def split(self, name: str) -> tuple:
        """``(x float32 (N, 2, L), y int64 (N,), snr int16 (N,))`` of split ``name``.

        Checked against the manifest's sha256 on first call, then cached: the same objects are
        returned on later calls, so do not modify them in place. ``x`` is an array when the
        split fits ``max_in_memory_mb`` (see ``in_memory``), else a ``SplitRows`` view of the
        file that reads the rows it is indexed with (same values; ``y`` and ``snr`` are arrays).

        Raises:
            ConfigError: ``name`` is not train, val or test.
            DataError: the stored data no longer matches its hash.
        """
        if name not in SPLITS:
            raise ConfigError(f"split: unknown split {name!r} (expected one of {', '.join(SPLITS)})")
        if name not in self._cache:
            damaged = DataError(f"{self.path}: split {name!r} does not match its sha256 in the manifest "
                                f"(file modified or damaged; prepare it again)")
            try:
                with _open(self.path) as handle:
                    group = handle[name]
                    labels = (group["y"][...], group["snr"][...])
                    x = group["x"][...] if self.in_memory(name) else None
                if x is None:
                    x = SplitRows(self.path, name)
                    digest = hashlib.sha256()
                    rows_per_block = max(1, _HASH_BLOCK_BYTES // (2 * self.length * 4))
                    for block in x.blocks(rows_per_block):
                        digest.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
                    for arr, dtype in zip(labels, ("<i8", "<i2")):
                        digest.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
                    actual = digest.hexdigest()
                else:
                    actual = split_sha256(x, *labels)
            except OSError:  # a damaged compressed chunk fails to decompress
                raise damaged from None
            if actual != self.manifest["sha256"].get(name):
                raise damaged
            # Native byte order, in case the file was written on a big-endian machine.
            self._cache[name] = tuple(
                a if isinstance(a, SplitRows) else a.astype(a.dtype.newbyteorder("="), copy=False)
                for a in (x,) + labels)
        return self._cache[name]


def resolve_max_in_memory_mb(value: float | None = None) -> float:
    """``value``, else the ``FCOS_MAX_IN_MEMORY_MB`` environment variable, else the default.

    Raises:
        ConfigError: not a number >= 0 (naming where it came from).
    """
    key = "max_in_memory_mb"
    if value is None:
        text = os.environ.get(MAX_IN_MEMORY_ENV)
        if text is None or not text.strip():
            return float(DEFAULT_MAX_IN_MEMORY_MB)
        key = MAX_IN_MEMORY_ENV
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{MAX_IN_MEMORY_ENV}={text!r}: expected a number of MB >= 0") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ConfigError(f"{key}={value!r}: expected a number of MB >= 0")
    return float(value)


def verify_prepared(path: str | os.PathLike) -> dict:
    """Check a prepared file's structure and every split's sha256; return its manifest.

    Raises:
        DataError: one line naming the file and the first inconsistency or damaged split.
    """
    data = load_prepared(path)
    for split in SPLITS:
        data.split(split)
    return data.manifest


def load_prepared(path: str | os.PathLike, max_in_memory_mb: float | None = None) -> PreparedDataset:
    """Open a prepared dataset file and check its structure against its manifest.

    ``max_in_memory_mb``: splits whose signals are larger are read by row from the file (see
    ``PreparedDataset.split``); None takes ``FCOS_MAX_IN_MEMORY_MB`` from the environment, else
    ``DEFAULT_MAX_IN_MEMORY_MB``. Results are the same either way; only memory and speed differ.

    Checks: the manifest is present and of this format, names a known dataset with the same
    classes and length, and every split group holds x (n, 2, L) float32, y (n,) int64 and
    snr (n,) int16 with n as recorded. Arrays are not read here (see ``PreparedDataset.split``).

    Raises:
        DataError: one line naming the file and the first inconsistency.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        spec = get_spec(manifest["dataset"])
    except ConfigError as err:
        raise DataError(f"{path}: {err}") from None
    if list(manifest["classes"]) != list(spec.classes) or manifest["length"] != spec.length:
        raise DataError(f"{path}: classes or length differ from the current {spec.name} spec "
                        f"(prepared by fcos {manifest.get('fcos_version')}; prepare it again)")
    length = spec.length
    with _open(path) as handle:
        for split in SPLITS:
            n = manifest["counts"].get(split)
            if split not in handle:
                raise DataError(f"{path}: missing group {split!r} (expected groups {', '.join(SPLITS)})")
            group = handle[split]
            expected = {"x": ((n, 2, length), np.float32), "y": ((n,), np.int64),
                        "snr": ((n,), np.int16)}
            for key, (shape, dtype) in expected.items():
                if key not in group:
                    raise DataError(f"{path}: missing dataset {split}/{key} "
                                    f"(expected {np.dtype(dtype).name} {shape})")
                ds = group[key]
                if ds.shape != shape or ds.dtype != dtype:
                    raise DataError(f"{path}: {split}/{key} is {ds.dtype} {ds.shape} "
                                    f"(expected {np.dtype(dtype).name} {shape} per the manifest)")
    return PreparedDataset(path, manifest, spec, resolve_max_in_memory_mb(max_in_memory_mb))
