"""Stratified, seeded index selection per (class, SNR) group.

Two operations share one idea: every (class, SNR) group gets its own random generator, derived
from the user's seed and the group key only. A group's result therefore does not depend on which
other groups exist or in what order the rows arrive, so that a subset of a dataset is split the
same way as the corresponding part of the full dataset.

- ``stratified_split``: train / val / test indices with the same fractions in every group.
- ``stratified_subsample``: at most ``k`` rows per group (used by the loaders to cap a large file
  before its signals are read).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "val", "test")

# Distinct streams for the two operations, so subsampling with seed s and then splitting with
# seed s do not reuse the same permutation.
_PURPOSE_SPLIT = 1
_PURPOSE_SUBSAMPLE = 2
# SeedSequence wants non-negative entropy; SNRs are negative down to -20 dB.
_SNR_OFFSET = 1 << 15
#: Seeds are integers in [0, SEED_LIMIT), the rule of every command: NumPy's legacy seeding
#: (np.random.seed) takes 32 bits, and one rule for all steps lets any seed be reused anywhere.
SEED_LIMIT = 2**32


def check_seed(seed: object, key: str = "seed") -> int:
    """Return ``seed`` as an int in [0, 2**32) or raise a ConfigError naming ``key``."""
    if (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < SEED_LIMIT):
        raise ConfigError(f"{key}: expected an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def check_fractions(val_fraction: object, test_fraction: object) -> tuple[float, float]:
    """Validate split fractions: each in [0, 1) and val + test < 1 (train must be non-empty).

    Raises:
        ConfigError: naming the offending key.
    """
    values = {}
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ConfigError(f"{key}: expected a number in [0, 1), got {value!r}")
        value = float(value)
        if not math.isfinite(value) or not 0.0 <= value < 1.0:
            raise ConfigError(f"{key}: expected a number in [0, 1), got {value!r}")
        values[key] = value
    if values["val_fraction"] + values["test_fraction"] >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction: expected a sum below 1 so that train is non-empty, "
            f"got {values['val_fraction']} + {values['test_fraction']}"
        )
    return values["val_fraction"], values["test_fraction"]


def _group_rng(seed: int, purpose: int, label: int, snr: int) -> np.random.Generator:
    """A generator that depends only on (seed, purpose, label, snr)."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, purpose, int(label), int(snr) + _SNR_OFFSET])
    )


def _groups(y: np.ndarray, snr: np.ndarray):
    """Yield (label, snr, row indices ascending) for every (class, SNR) group present."""
    y = np.asarray(y)
    snr = np.asarray(snr)
    if y.ndim != 1 or snr.shape != y.shape:
        raise ValueError(f"y and snr must be 1-D of equal length, got {y.shape} and {snr.shape}")
    if y.size == 0:
        return
    # A stable sort on the combined key keeps rows of a group in ascending index order.
    order = np.lexsort((snr, y))
    ys, ss = y[order], snr[order]
    starts = np.flatnonzero(np.r_[True, (ys[1:] != ys[:-1]) | (ss[1:] != ss[:-1])])
    ends = np.r_[starts[1:], ys.size]
    for start, end in zip(starts, ends):
        yield int(ys[start]), int(ss[start]), order[start:end]


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) for a group of ``n`` rows.

    Rounded half up; a group of 3 or more rows gets at least one row in every split whose
    fraction is non-zero, and train always keeps at least one row.
    """
    n_val = math.floor(n * val_fraction + 0.5)
    n_test = math.floor(n * test_fraction + 0.5)
    if n >= 3:
        if val_fraction > 0:
            n_val = max(n_val, 1)
        if test_fraction > 0:
            n_test = max(n_test, 1)
    # Give rows back to train, taking from the larger held-out split first.
    while n - n_val - n_test < 1 and n_val + n_test > 0:
        if n_val >= n_test and (n_val > 1 or n_test == 0):
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def smallest_group_for_splits(val_fraction: float, test_fraction: float) -> int:
    """The fewest rows a (class, SNR) group needs for every split with a non-zero fraction to
    get at least one of them (see ``_split_sizes``)."""
    n = 1
    while True:
        n_val, n_test = _split_sizes(n, val_fraction, test_fraction)
        if (n_val or not val_fraction) and (n_test or not test_fraction):
            return n
        n += 1


def stratified_split(
    y: np.ndarray, snr: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Split rows into train / val / test with the same fractions in every (class, SNR) group.

    Args:
        y: int labels, shape (N,).
        snr: int SNR labels in dB, shape (N,).
        val_fraction, test_fraction: fractions of every group held out, each in [0, 1) with a
            sum below 1 (per group: rounded half up; see ``_split_sizes``).
        seed: non-negative int; with the group key it seeds that group's permutation.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``: sorted int64 index arrays into the N rows,
        pairwise disjoint and together covering ``range(N)``.

    Raises:
        ConfigError: a fraction or the seed is out of range (naming the key).
    """
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label, group_snr, rows in _groups(y, snr):
        n_val, n_test = _split_sizes(rows.size, val_fraction, test_fraction)
        shuffled = rows[_group_rng(seed, _PURPOSE_SPLIT, label, group_snr).permutation(rows.size)]
        parts["test"].append(shuffled[:n_test])
        parts["val"].append(shuffled[n_test:n_test + n_val])
        parts["train"].append(shuffled[n_test + n_val:])
    return {
        name: np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.zeros(0, np.int64)
        for name, chunks in parts.items()
    }


def stratified_subsample(y: np.ndarray, snr: np.ndarray, per_group: int, seed: int) -> np.ndarray:
    """Keep at most ``per_group`` rows of every (class, SNR) group, chosen at random.

    Groups with ``per_group`` rows or fewer are kept whole. Returns sorted int64 row indices.
    """
    seed = check_seed(seed)
    keep = []
    for label, group_snr, rows in _groups(y, snr):
        if rows.size > per_group:
            rng = _group_rng(seed, _PURPOSE_SUBSAMPLE, label, group_snr)
            rows = rows[rng.choice(rows.size, size=per_group, replace=False)]
        keep.append(rows)
    return np.sort(np.concatenate(keep)).astype(np.int64) if keep else np.zeros(0, np.int64)
