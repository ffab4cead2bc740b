"""Which blocks to remove for a MAC budget: an exact search over every subset of the removable
blocks, ordered by the method's importance ranking.

Removing a block saves a fixed number of MACs whatever else is removed (every stand-in keeps its
block's input and output shapes), so the saving of a subset is the sum of its members' savings,
and with at most 27 removable blocks (ResNet56) every subset can be searched exactly by
meet-in-the-middle (2 x 2^14 partial sums, sorted, with a range-minimum table).

Objective. A method ranks its blocks from "first to go" to "last to go" (LaCD and LCP by probe
gain, SR-init by re-initialisation damage, random-layer by a seeded permutation). Among the
subsets whose saving lands in ``[target, target + tolerance]`` (the budget met from above, within
the same tolerance the channel methods' search uses), the chosen one is the one that spares the
most important blocks: it never removes a block if a subset of less important blocks lands in the
window. Formally it minimises sum(2^position) over the removed blocks, position = place in the
ranking (0 = first to go); that sum orders subsets lexicographically by their most important
member. When no subset lands in the window, the subset with the smallest |saving - target| is
taken (ties by the same importance order) and the caller reports the gap.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError

#: More blocks than this would make the exact search's tables too large (2 x 2^(n/2) entries).
MAX_EXACT_BLOCKS = 40


def _subset_sums(savings: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(saving, weight) of every subset of the items, indexed by the subset's bit mask."""
    sums = np.zeros(1, dtype=np.int64)
    costs = np.zeros(1, dtype=np.int64)
    for saving, weight in zip(savings, weights):
        sums = np.concatenate([sums, sums + saving])
        costs = np.concatenate([costs, costs + weight])
    return sums, costs


class _RangeMin:
    """Index of the minimum of ``values[lo:hi]`` in O(1) after O(n log n) set-up (sparse table)."""

    def __init__(self, values: np.ndarray):
        self.values = values
        table = [np.arange(len(values))]
        width = 1
        while 2 * width <= len(values):
            previous = table[-1]
            left, right = previous[:-width], previous[width:]
            table.append(np.where(values[left] <= values[right], left, right))
            width *= 2
        self.table = table

    def argmin(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Vectorised over ranges [lo, hi) with hi > lo."""
        length = hi - lo
        level = np.floor(np.log2(length)).astype(np.int64)
        out = np.empty(len(lo), dtype=np.int64)
        for k in np.unique(level):
            rows = level == k
            left = self.table[k][lo[rows]]
            right = self.table[k][hi[rows] - (1 << k)]
            out[rows] = np.where(self.values[left] <= self.values[right], left, right)
        return out


def select_subset(ranking: Sequence[str], savings: Mapping[str, int], target: float,
                  tolerance: float) -> tuple[list[str], bool]:
    """Blocks of ``ranking`` (first = first to go) to remove for a MAC saving of ``target``.

    Returns (chosen blocks in ranking order, True when the saving lands in
    ``[target, target + tolerance]``); see the module docstring for the objective.
    """
    names = list(ranking)
    if len(names) > MAX_EXACT_BLOCKS:
        raise ConfigError(f"exact block selection supports at most {MAX_EXACT_BLOCKS} blocks, got {len(names)}; "
                          f"use budget_rule=closest")
    if target <= 0 or not names:
        return [], target <= 0
    value = np.array([int(savings[name]) for name in names], dtype=np.int64)
    weight = np.array([1 << position for position in range(len(names))], dtype=np.int64)
    half = len(names) // 2
    left_sum, left_cost = _subset_sums(value[:half], weight[:half])
    right_sum, right_cost = _subset_sums(value[half:], weight[half:])
    order = np.argsort(right_sum, kind="stable")
    right_sum, right_cost = right_sum[order], right_cost[order]
    right_mask = order

    range_min = _RangeMin(right_cost)

    def cheapest_in(low: int, high: int) -> tuple[int, int, int] | None:
        """(cost, left mask, right index) of the cheapest subset saving in [low, high]."""
        lo = np.searchsorted(right_sum, low - left_sum, side="left")
        hi = np.searchsorted(right_sum, high - left_sum, side="right")
        rows = np.flatnonzero(hi > lo)
        if len(rows) == 0:
            return None
        best_right = range_min.argmin(lo[rows], hi[rows])
        total = left_cost[rows] + right_cost[best_right]
        pick = int(np.argmin(total))
        return int(total[pick]), int(rows[pick]), int(best_right[pick])

    low, high = int(math.ceil(target)), int(math.floor(target + tolerance))
    found = cheapest_in(low, high) if high >= low else None
    met = found is not None
    if found is None:
        # The smallest |saving - target| over all subsets, then the cheapest subset at that gap
        # (above the target preferred on a tie of cost).
        position = np.searchsorted(right_sum, target - left_sum)
        reachable = np.concatenate([left_sum + right_sum[np.clip(position + shift, 0, len(right_sum) - 1)]
                                    for shift in (-1, 0)])
        gap = np.abs(reachable - target).min()
        nearest = sorted({int(total) for total in reachable[np.abs(reachable - target) == gap]}, reverse=True)
        options = [cheapest_in(total, total) for total in nearest]  # above the target first
        found = min((option for option in options if option is not None), key=lambda option: option[0])
    _, left_mask, right_index = found
    mask = left_mask | (int(right_mask[right_index]) << half)
    return [name for bit, name in enumerate(names) if mask >> bit & 1], met
