"""Prepared datasets: one split, checksummed HDF5 file per dataset, written once, read many times.

``prepare_dataset`` turns a source (the seeded synthetic generator or a real file) into a file
whose layout is::

    /                 attribute "manifest": JSON string (see ``prepare_dataset``)
    /train/x          float32 (N_train, 2, L)   I/Q vectors, chunked, gzip + shuffle
    /train/y          int64   (N_train,)        label index into manifest["classes"]
    /train/snr        int16   (N_train,)        SNR in dB
    /val/...          same three datasets
    /test/...         same three datasets

The manifest lives only inside the file, so a file and its description cannot drift apart. The
file is deterministic (no timestamps anywhere): the same inputs give byte-identical output, and
the per-split sha256 identifies the data in checkpoints and result tables. It is written to a
temporary name and renamed, so an interrupted run never leaves a partial file at ``out``.
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
from ..io import atomic_path
from .loaders import load_source
from .rawdataset import RawDataset
from .specs import DatasetSpec, get_spec
from .split import SPLITS, check_fractions, check_seed, stratified_split
from .synthetic import synthesize

FORMAT = "fcos-prepared/1"
# Frames per (class, SNR) when a synthetic stand-in is prepared without an explicit count:
# enough for every split of every group to be non-trivial, small enough to generate in seconds.
DEFAULT_SYNTHETIC_PER_CLASS_SNR = 200
# Target size of one compressed HDF5 chunk of x (and of one write).
_CHUNK_BYTES = 1 << 20
_GZIP_LEVEL = 1  # I/Q noise barely compresses; level 1 gets most of the gain at little cost
_WRITTEN_BY = "a prepared dataset file written by prepare_dataset"
_MANIFEST_KEYS = ("format", "dataset", "classes", "length", "snrs", "counts", "sha256")


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
        raw = load_source(name, source, strict=strict, min_snr=min_snr,
                          per_class_snr=per_class_snr, seed=seed, progress=progress)
        source_name = Path(raw.source).name

    splits = stratified_split(raw.y, raw.snr, val_fraction, test_fraction, seed)
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

    with atomic_path(out) as tmp:
        # track_times=False on every dataset keeps timestamps out, so identical inputs give
        # identical bytes; track_order fixes the order groups and datasets are listed in.
        with h5py.File(tmp, "w", track_order=True) as handle:
            for split in SPLITS:
                manifest["sha256"][split] = _write_split(handle, split, raw, splits[split])
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


def _write_split(handle, split: str, raw: RawDataset, rows: np.ndarray) -> str:
    """Write ``raw[rows]`` as group ``split``; return its sha256 (see ``split_sha256``)."""
    length = raw.x.shape[2]
    group = handle.create_group(split, track_order=True)
    n = rows.size
    rows_per_chunk = max(1, _CHUNK_BYTES // (2 * length * 4))
    if n:
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

    def __init__(self, path: Path, manifest: dict, spec: DatasetSpec):
        self.path = path
        self.manifest = manifest
        self.spec = spec
        self.classes = tuple(manifest["classes"])
        self.snrs = tuple(int(s) for s in manifest["snrs"])
        self.length = int(manifest["length"])
        self.num_classes = len(self.classes)
        self.sha256 = manifest["sha256"]["overall"]
        self.counts = {s: int(manifest["counts"][s]) for s in SPLITS}
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __repr__(self) -> str:
        return (f"PreparedDataset({str(self.path)!r}, dataset={self.spec.name!r}, "
                f"counts={self.counts}, sha256={self.sha256[:12]}...)")

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x float32 (N, 2, L), y int64 (N,), snr int16 (N,))`` of split ``name``.

        Read on first call and checked against the manifest's sha256, then cached: the same
        arrays are returned on later calls, so do not modify them in place.

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
                    arrays = (group["x"][...], group["y"][...], group["snr"][...])
            except OSError:  # a damaged compressed chunk fails to decompress
                raise damaged from None
            if split_sha256(*arrays) != self.manifest["sha256"].get(name):
                raise damaged
            # Native byte order, in case the file was written on a big-endian machine.
            self._cache[name] = tuple(a.astype(a.dtype.newbyteorder("="), copy=False) for a in arrays)
        return self._cache[name]


def verify_prepared(path: str | os.PathLike) -> dict:
    """Check a prepared file's structure and every split's sha256; return its manifest.

    Raises:
        DataError: one line naming the file and the first inconsistency or damaged split.
    """
    data = load_prepared(path)
    for split in SPLITS:
        data.split(split)
    return data.manifest


def load_prepared(path: str | os.PathLike) -> PreparedDataset:
    """Open a prepared dataset file and check its structure against its manifest.

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
    return PreparedDataset(path, manifest, spec)
