"""Writers of the public dataset file formats, and the small sample files made with them.

The loaders in ``fcos.data.loaders`` read the real releases; these functions write the same
formats, byte for byte the way the releases store them, so that the loaders can be exercised
(by tests, and by users without the real files) on data we can generate:

- RML2016.10a: ``RML2016.10a_dict.pkl``, a pickle of ``{(mod, snr): float32 (frames, 2, 128)}``
  as Python 2's cPickle wrote it (keys and array bytes as Python 2 byte strings, arrays
  referencing ``numpy.core.multiarray._reconstruct`` as numpy 1.x did).
- RML2018.01A: ``GOLD_XYZ_OSC.0001_1024.hdf5`` with ``X`` (N, 1024, 2) float32, ``Y`` one-hot
  (N, 24) int64 and ``Z`` (N, 1) int64.
- Sig2019-12: the layout documented in ``fcos.data.loaders`` (an npy directory, or an .npz).

``write_format_samples`` fills these formats with the seeded synthetic stand-ins: a few frames
per (class, SNR), a subset of each official dataset that the loaders accept with a warning.
The sample files are byte-deterministic (same arguments, same bytes: pickle and npy have no
timestamps, HDF5 datasets are written with ``track_times=False``; .npz is not used because zip
entries carry timestamps), so the hash that DVC records for ``data/`` can be regenerated.

Every writer writes to a temporary name and renames it (``fcos.io``): an interrupted write
never leaves a partial file under the final name.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ..io import atomic_path, atomic_write
from .rawdataset import RawDataset
from .specs import get_spec
from .synthetic import GENERATOR_VERSION, synthesize

#: Frames per (class, SNR) in the sample files: 3 gives every split of ``prepare_dataset`` one
#: frame per group, and keeps all three samples near 2 MB.
SAMPLE_FRAMES = 3
#: SNRs of each sample (None: the full grid). RML2016.10a is small enough for its whole grid;
#: for the long-frame datasets two SNRs keep the files small, one below and one at the authors'
#: RML2018 filter (``--min-snr 10``) so that the filter has something to remove.
SAMPLE_SNRS: dict[str, tuple[int, ...] | None] = {
    "rml2016": None,
    "rml2018": (0, 10),
    "sig2019": (0, 10),
}
#: Directory name of the Sig2019-12 sample (the paper configs use ``data/raw/sig2019-12``).
SIG2019_DIR = "sig2019-12"
SAMPLES_README = "README.txt"


# --------------------------------------------------------------------------------------------
# RML2016.10a: Python-2 style pickle


class _Python2Pickler(pickle._Pickler):
    """Pickler that writes ``bytes`` as Python 2 ``str`` (STRING / SHORT_BINSTRING / BINSTRING).

    Python 3 wraps bytes in ``_codecs.encode`` for protocols 0-2; Python 2's cPickle, which
    wrote the real file, emits plain byte strings, which ``encoding="latin1"`` turns into str.
    The pure-Python ``pickle._Pickler`` is subclassed because the C pickler's dispatch table
    cannot be overridden per type.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        if self.proto == 0:  # text protocol: quoted, backslash-escaped
            self.write(pickle.STRING + b"'" + codecs.escape_encode(obj)[0] + b"'\n")
        elif len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def write_rml2016_pickle(path: str | os.PathLike, data: Mapping, protocol: int = 2) -> Path:
    """Write ``data`` (``{(mod, snr): float32 array (frames, 2, 128)}``) as Python 2 pickled it.

    str parts of tuple keys become Python 2 byte strings; numpy arrays reference
    ``numpy.core.multiarray._reconstruct`` whatever numpy version runs. ``protocol`` 2 is
    cPickle's binary format; 0 is the text format (the default of Python 2's ``pickle.dump``).
    Entries are written in ``data``'s order. Returns the path written.
    """
    py2 = {}
    for key, value in data.items():
        if isinstance(key, tuple):
            key = tuple(k.encode("latin1") if isinstance(k, str) else k for k in key)
        py2[key] = value
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=protocol).dump(py2)
    # GLOBAL opcodes are newline-terminated text, so renaming the module is a plain replacement.
    raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    with atomic_write(path, "wb") as handle:
        handle.write(raw)
    return Path(path)


# --------------------------------------------------------------------------------------------
# RML2018.01A: HDF5


def write_rml2018_hdf5(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (normally ``X``, ``Y``, ``Z``) as HDF5 datasets named by their keys.

    ``track_times=False`` keeps modification times out of the file, so the same arrays give
    the same bytes. Returns the path written.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            for key, value in arrays.items():
                handle.create_dataset(key, data=value, track_times=False)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Sig2019-12: npy directory or npz


def write_sig2019_npy_dir(directory: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays["x"]``, ``["y"]``, ``["snr"]`` as signals.npy / labels.npy / snrs.npy.

    ``directory`` is created if needed. Each file is replaced atomically on its own. Returns
    the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key, file_name in (("x", "signals.npy"), ("y", "labels.npy"), ("snr", "snrs.npy")):
        # np.save on an open handle: given a name it would append ".npy" to the temporary name.
        with atomic_write(directory / file_name, "wb") as handle:
            np.save(handle, arrays[key], allow_pickle=False)
    return directory


def write_sig2019_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a .npz with the keys of ``arrays`` (the loader expects x, y, snr).

    Not byte-deterministic (zip entries carry timestamps), hence not used for the samples.
    """
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Content of each format from a RawDataset


def rml2016_dict_from(raw: RawDataset) -> dict:
    """``{(mod, snr): x rows}`` ordered by class, then SNR (rows of each group in order)."""
    data = {}
    for label, name in enumerate(raw.spec.classes):
        for snr in np.unique(raw.snr[raw.y == label]):
            rows = (raw.y == label) & (raw.snr == snr)
            data[(name, int(snr))] = np.ascontiguousarray(raw.x[rows])
    return data


def rml2018_arrays_from(raw: RawDataset) -> dict:
    """``{"X" (N, L, 2) float32, "Y" one-hot (N, C) int64, "Z" (N, 1) int64}`` as released."""
    return {
        "X": np.ascontiguousarray(raw.x.transpose(0, 2, 1)),
        "Y": np.eye(raw.spec.num_classes, dtype=np.int64)[raw.y],
        "Z": raw.snr.astype(np.int64).reshape(-1, 1),
    }


def sig2019_arrays_from(raw: RawDataset) -> dict:
    """``{"x" (N, 2, L) float32, "y" (N,) int64, "snr" (N,) int64}``."""
    return {"x": raw.x, "y": raw.y.astype(np.int64), "snr": raw.snr.astype(np.int64)}


# --------------------------------------------------------------------------------------------
# Sample files


def write_format_samples(out_dir: str | os.PathLike, frames: int = SAMPLE_FRAMES,
                         seed: int = 0) -> list[Path]:
    """Write small sample files of all three datasets, in their public formats, to ``out_dir``.

    Each holds ``frames`` synthetic frames (``fcos.data.synthesize`` with ``seed``) per
    (class, SNR) for every class and the SNRs of ``SAMPLE_SNRS``:

    - ``RML2016.10a_dict.pkl``
    - ``GOLD_XYZ_OSC.0001_1024.hdf5``
    - ``sig2019-12/`` with ``signals.npy``, ``labels.npy``, ``snrs.npy``
    - ``README.txt`` saying what the files are and how they were made

    The same arguments give byte-identical files. ``load_source`` reads them with a warning
    that they are a subset of the official dataset (and ``strict=True`` refuses them).

    Returns:
        The files written, in the order above.

    Raises:
        ConfigError: ``frames`` or ``seed`` out of range (from ``synthesize``).
    """
    out = Path(out_dir)
    written = []

    raw = synthesize("rml2016", frames, seed, snrs=SAMPLE_SNRS["rml2016"])
    written.append(write_rml2016_pickle(out / raw.spec.official_file, rml2016_dict_from(raw)))

    raw = synthesize("rml2018", frames, seed, snrs=SAMPLE_SNRS["rml2018"])
    written.append(write_rml2018_hdf5(out / raw.spec.official_file, rml2018_arrays_from(raw)))

    raw = synthesize("sig2019", frames, seed, snrs=SAMPLE_SNRS["sig2019"])
    directory = write_sig2019_npy_dir(out / SIG2019_DIR, sig2019_arrays_from(raw))
    written.extend(directory / name for name in ("signals.npy", "labels.npy", "snrs.npy"))

    with atomic_write(out / SAMPLES_README, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(_readme(frames, seed))
    written.append(out / SAMPLES_README)
    return written


def _readme(frames: int, seed: int) -> str:
    # Only the generator version and the arguments go in: the text is part of the hash DVC
    # records, so it must change exactly when the files' content does.
    lines = [
        "Sample files in the public formats of RML2016.10a, RadioML 2018.01A and Sig2019-12.",
        "",
        "They are NOT the real datasets: every frame is a seeded synthetic stand-in",
        f"(fcos.data.synthetic, generator version {GENERATOR_VERSION}), {frames} frames per",
        "(class, SNR) for every class and these SNRs (dB):",
    ]
    for name, snrs in SAMPLE_SNRS.items():
        spec = get_spec(name)
        grid = f"{spec.snrs[0]}..{spec.snrs[-1]} step {spec.snrs[1] - spec.snrs[0]}" \
            if snrs is None else ", ".join(str(s) for s in snrs)
        lines.append(f"  {name}: {grid}")
    lines += [
        "",
        "Regenerate them (byte-identical):",
        f"  fcos samples --out <dir> --frames {frames} --seed {seed}",
        "Try the real-file loaders on them (a subset of the official dataset: accepted with a",
        "warning, refused with --strict):",
        "  fcos prepare rml2016 --source <dir>/RML2016.10a_dict.pkl --out rml2016.h5",
    ]
    return "\n".join(lines) + "\n"
