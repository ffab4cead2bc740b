"""The in-memory dataset record shared by the synthetic generator and the file loaders.

A ``RawDataset`` is what comes out of ``synthesize`` or ``load_source`` before any split:
every I/Q vector with its label and SNR, the spec it claims to follow, where it came from and
the options that produced it. ``validate()`` checks the arrays against the spec so that a
malformed source fails early with one line naming it, instead of deep inside training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .specs import DatasetSpec


@dataclass
class RawDataset:
    """All vectors of one dataset source.

    Attributes:
        x: float32 array (N, 2, L): row 0 is I, row 1 is Q; L == spec.length. Or a row view
            of a file too large to hold (``fcos.data.loaders.RML2018Rows``: ``shape``,
            ``dtype``, indexing by slices and ascending positions), which checks finiteness
            itself as rows are read.
        y: int64 array (N,): label index into ``spec.classes``.
        snr: int16 array (N,): SNR label in dB.
        spec: the dataset specification the arrays follow.
        source: "synthetic" or the path of the file that was read.
        info: JSON-able dict of generator/loader options (recorded in the manifest).
        warnings: human-readable notes about the source (e.g. deviations from the spec).
    """

    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    spec: DatasetSpec
    source: str
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def validate(self) -> "RawDataset":
        """Check shapes, dtypes, finite values and the label range; return ``self``.

        Raises:
            DataError: one line naming ``source`` and the first problem found.
        """
        where = f"{self.source} ({self.spec.name})"

        def fail(message: str) -> None:
            raise DataError(f"{where}: {message}")

        in_memory = isinstance(self.x, np.ndarray)
        if not in_memory and not all(hasattr(self.x, a) for a in ("shape", "dtype", "__getitem__")):
            fail(f"x must be a numpy array or a row view, got {type(self.x).__name__}")
        for name, arr in (("y", self.y), ("snr", self.snr)):
            if not isinstance(arr, np.ndarray):
                fail(f"{name} must be a numpy array, got {type(arr).__name__}")
        if self.x.dtype != np.float32:
            fail(f"x must be float32, got {self.x.dtype}")
        if self.y.dtype != np.int64:
            fail(f"y must be int64, got {self.y.dtype}")
        if self.snr.dtype != np.int16:
            fail(f"snr must be int16, got {self.snr.dtype}")
        if self.x.ndim != 3 or self.x.shape[1] != 2 or self.x.shape[2] != self.spec.length:
            fail(f"x must have shape (N, 2, {self.spec.length}), got {tuple(self.x.shape)}")
        n = self.x.shape[0]
        if n == 0:
            fail("no vectors")
        if self.y.shape != (n,):
            fail(f"y must have shape ({n},), got {tuple(self.y.shape)}")
        if self.snr.shape != (n,):
            fail(f"snr must have shape ({n},), got {tuple(self.snr.shape)}")
        if in_memory and not np.isfinite(self.x).all():
            bad = int((~np.isfinite(self.x)).any(axis=(1, 2)).sum())
            fail(f"x has non-finite values in {bad} vectors")
        lo, hi = int(self.y.min()), int(self.y.max())
        if lo < 0 or hi >= self.spec.num_classes:
            fail(f"labels must lie in [0, {self.spec.num_classes - 1}], got [{lo}, {hi}]")
        if not isinstance(self.source, str) or not self.source:
            fail("source must be a non-empty string")
        if not isinstance(self.warnings, list) \
                or not all(isinstance(w, str) for w in self.warnings):
            fail("warnings must be a list of strings")
        try:
            json.dumps(self.info, allow_nan=False)
        except (TypeError, ValueError) as err:
            fail(f"info is not JSON-serialisable ({err})")
        return self
