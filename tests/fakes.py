"""Tiny dataset files in the exact public formats, for tests.

Each ``*_arrays``/``*_dict`` function builds the in-memory content (so a test can damage it) and
each ``write_*`` function writes given content (default: the tiny content below) through the
library's format writers (``fcos.data.formats``), the way the real release stores it:

- RML2016.10a: Python-2 style protocol-2 pickle of ``{(mod, snr): float32 (frames, 2, 128)}``.
- RML2018.01A: HDF5 with ``X`` (N, 1024, 2) float32, ``Y`` one-hot (N, 24) int64,
  ``Z`` (N, 1) int64, rows ordered by class, then SNR, as in the release.
- Sig2019-12: the layout documented in ``fcos.data.loaders`` (npy directory or .npz).

Signals are seeded Gaussian noise scaled per row: the loaders check formats, not physics.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from fcos.data import formats
from fcos.data.specs import DATASETS

RML2016_MODS = ("BPSK", "QPSK", "8PSK")
RML2016_SNRS = (-2, 0, 2)


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.01).astype(np.float32)


# ---------------------------------------------------------------------------------- RML2016


def rml2016_dict(mods=RML2016_MODS, snrs=RML2016_SNRS, frames: int = 10, seed: int = 0) -> dict:
    """``{(mod, snr): float32 (frames, 2, 128)}`` like RML2016.10a_dict.pkl, tiny."""
    rng = np.random.default_rng(seed)
    return {(mod, snr): _noise(rng, (frames, 2, 128)) for mod in mods for snr in snrs}


def write_rml2016_pickle(path: str | os.PathLike, data: dict | None = None, protocol: int = 2) -> Path:
    """Write ``data`` (default: ``rml2016_dict()``) as Python 2 would have pickled it."""
    return formats.write_rml2016_pickle(path, rml2016_dict() if data is None else data, protocol)


class _Exploit:
    """Unpickling this calls ``os.system(command)``; a safe loader must refuse it."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def write_malicious_pickle(path: str | os.PathLike, marker: str | os.PathLike) -> Path:
    """A pickle that, if executed, creates ``marker`` through ``os.system("touch ...")``."""
    payload = {("BPSK", 0): _Exploit(f"touch '{marker}'")}
    path = Path(path)
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


# ---------------------------------------------------------------------------------- RML2018


def rml2018_arrays(snrs=(10, 12), frames: int = 8, seed: int = 0, classes=None) -> dict:
    """``{"X", "Y", "Z"}`` like GOLD_XYZ_OSC.0001_1024.hdf5: all 24 classes unless ``classes``
    (label indices) is given; rows ordered by class, then SNR."""
    spec = DATASETS["rml2018"]
    classes = range(spec.num_classes) if classes is None else classes
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(list(classes), np.int64), len(snrs) * frames)
    snr = np.tile(np.repeat(np.asarray(snrs, np.int64), frames), len(list(classes)))
    n = labels.size
    return {
        "X": _noise(rng, (n, spec.length, 2)),
        "Y": np.eye(spec.num_classes, dtype=np.int64)[labels],
        "Z": snr.reshape(n, 1),
    }


def write_rml2018_hdf5(path: str | os.PathLike, arrays: dict | None = None) -> Path:
    """Write ``arrays`` (default: ``rml2018_arrays()``) as HDF5 datasets named by their keys."""
    return formats.write_rml2018_hdf5(path, rml2018_arrays() if arrays is None else arrays)


# ---------------------------------------------------------------------------------- Sig2019


def sig2019_arrays(snrs=(0, 10), frames: int = 6, seed: int = 0, num_classes: int = 12) -> dict:
    """``{"x" (N, 2, 512) float32, "y" (N,) int64, "snr" (N,) int64}``, grouped by class, SNR."""
    spec = DATASETS["sig2019"]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes, dtype=np.int64), len(snrs) * frames)
    snr = np.tile(np.repeat(np.asarray(snrs, np.int64), frames), num_classes)
    return {"x": _noise(rng, (y.size, 2, spec.length)), "y": y, "snr": snr}


def write_sig2019_npy_dir(directory: str | os.PathLike, arrays: dict | None = None) -> Path:
    """Write signals.npy / labels.npy / snrs.npy into ``directory`` (created if needed)."""
    return formats.write_sig2019_npy_dir(directory, sig2019_arrays() if arrays is None else arrays)


def write_sig2019_npz(path: str | os.PathLike, arrays: dict | None = None) -> Path:
    """Write a .npz with keys x, y, snr (any keys given in ``arrays``)."""
    return formats.write_sig2019_npz(path, sig2019_arrays() if arrays is None else arrays)
