"""Which blocks to remove for a MAC budget: an exact search over every subset of the removable
blocks, ordered by the pruner's importance ranking.

Removing a block saves a fixed number of MACs whatever else is removed (every stand-in keeps its
block's input and output shapes), so the saving of a subset is the sum of its members' savings,
and with at most 27 removable blocks (ResNet56) every subset can be searched exactly by
meet-in-the-middle (2 x 2^14 partial sums, sorted, with a range-minimum table).

Objective. A pruner ranks its blocks from "first to go" to "last to go" (LaCD and LCP by probe
gain, SR-init by re-initialisation damage, random-layer by a seeded permutation). Among the
subsets whose saving lands in ``[target, target + tolerance]`` (the budget met from above, within
the same tolerance the channel pruners' search uses), the chosen one is the one that spares the
most important blocks: it never removes a block if a subset of less important blocks lands in the
window. Formally it minimises sum(2^position) over the removed blocks, position = place in the
ranking (0 = first to go); that sum orders subsets lexicographically by their most important
member. When no subset lands in the window, the subset with the smallest |saving - target| is
taken (ties by the same importance order) and the caller reports the gap.

Selection modes (the "lacd" pruner and the layer baselines)
    - epsilon mode (budget None): remove every removable collapsed block;
    - ``num_blocks=k``: remove the k removable blocks of lowest gain (budgeted comparisons);
    - MAC budget (budget float): rule "exact" (default) searches every subset of the removable
      blocks (``fcos.prune.block_selection``) for one whose saving meets the target within the
      channel pruners' tolerance (1 point), sparing the highest-gain blocks, else the subset
      closest to it; greedy alternatives walk the blocks from lowest gain upwards and take each
      one that brings the saving closer to the target (rule "closest") or every one until the
      target is met (rule "reach"). The achieved reduction, its gap to the target and an
      ``off_target`` flag (gap above 2 points) are reported: block granularity can make a
      budget reachable only approximately.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..errors import ConfigError
from ..metrics import macs_and_params
from .blocks import inspect_blocks, remove_blocks

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


BUDGET_RULES = ("exact", "closest", "reach")

#: A block selection whose achieved reduction is further than this from the budget is flagged.
OFF_TARGET = 0.02

#: Options every block-removing pruner understands.
REMOVAL_OPTIONS = ("budget_rule", "reference_macs", "architecture")


def rank_by_score(report: Mapping[str, Any], score: str = "gain") -> list[str]:
    """Removable blocks of a LaCD report, lowest ``score`` ("gain" or "step_gain") first; ties
    keep depth order."""
    if score not in ("gain", "step_gain"):
        raise ConfigError(f"score={score!r}: expected 'gain' or 'step_gain'")
    candidates = [p for p in report["points"] if p["kind"] == "block" and p["removable"]]
    return [p["name"] for p in sorted(candidates, key=lambda p: p[score])]

def lowest_gain_blocks(report: Mapping[str, Any], count: int, score: str = "gain") -> list[str]:
    """The ``count`` removable blocks of lowest gain (all of them when fewer exist)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"num_blocks={count!r}: expected an integer >= 0")
    return rank_by_score(report, score)[:count]

def select_for_budget(ranking: Sequence[str], savings: Mapping[str, int], target_saving: float,
                      rule: str = "exact", tolerance: float = 0.0) -> list[str]:
    """Blocks to remove, in ranking order (first = first to go), for a MAC saving of ``target_saving``.

    Rule "exact": the exact subset search of ``fcos.prune.block_selection`` (window
    ``[target, target + tolerance]`` MACs, most important blocks spared). Greedy rules walk
    ``ranking``: "closest" takes a block when the total saving gets closer to the target (a tie
    counts as closer when it meets the target), so a block that would overshoot by more than it
    helps is skipped and later, smaller ones are tried; "reach" takes blocks until the target is
    met (or the ranking is exhausted).
    """
    if rule not in BUDGET_RULES:
        raise ConfigError(f"budget_rule={rule!r}: expected one of {', '.join(BUDGET_RULES)}")
    if rule == "exact":
        from .block_selection import select_subset

        return select_subset(ranking, savings, target_saving, tolerance)[0]
    chosen, saved = [], 0
    for name in ranking:
        if rule == "reach":
            if saved >= target_saving:
                break
            chosen.append(name)
            saved += savings[name]
            continue
        after = saved + savings[name]
        if abs(after - target_saving) < abs(saved - target_saving) or (
                abs(after - target_saving) == abs(saved - target_saving) and after >= target_saving > saved):
            chosen.append(name)
            saved = after
    return chosen

def budget_target(macs_now: int, budget: float, reference_macs: int | None = None) -> float:
    """MACs to save so that the model costs (1 - budget) x reference (default: its own MACs)."""
    reference = macs_now if reference_macs is None else int(reference_macs)
    return max(0.0, macs_now - (1.0 - budget) * reference)

def remove_and_summarise(model: nn.Module, blocks: Sequence[str], *, length: int,
                         budget: float | None = None, reference_macs: int | None = None,
                         rule: str | None = None) -> tuple[nn.Module, dict, dict]:
    """Remove ``blocks`` and measure the result with the one MAC counter.

    Returns (model, removal record, summary) where summary has ``removed`` (depth order),
    ``macs_before``/``macs_after``, ``params_before``/``params_after``, ``reference_macs``,
    ``achieved_reduction`` (1 - macs_after / reference) and, when a budget was given,
    ``budget``, ``budget_rule`` and ``gap`` (achieved - budget).
    """
    macs_before, params_before = macs_and_params(model, length)
    order = {name: i for i, name in enumerate(model.removable_blocks())}
    blocks = sorted(blocks, key=order.__getitem__)
    model, removal = remove_blocks(model, blocks, length=length)
    macs_after, params_after = macs_and_params(model, length)
    reference = macs_before if reference_macs is None else int(reference_macs)
    summary = {"removed": blocks, "macs_before": macs_before, "macs_after": macs_after,
               "params_before": params_before, "params_after": params_after,
               "reference_macs": reference, "achieved_reduction": 1.0 - macs_after / reference}
    if budget is not None:
        gap = summary["achieved_reduction"] - budget
        summary.update({"budget": budget, "budget_rule": rule, "gap": gap,
                        "off_target": bool(abs(gap) > OFF_TARGET)})
    return model, removal, summary

def prune_ranked_to_budget(model: nn.Module, ranking: Sequence[str], *, length: int, budget: float,
                           rule: str = "exact",
                           reference_macs: int | None = None) -> tuple[nn.Module, dict, dict]:
    """Remove blocks of ``ranking`` (first = first to go) to meet a MAC-reduction ``budget``.

    The budget is a fraction of ``reference_macs`` (default: the model's MACs now); see
    ``select_for_budget`` for the rule. Returns what ``remove_and_summarise`` returns.
    """
    infos = {info.name: info for info in inspect_blocks(model, length)}
    bad = [name for name in ranking if name not in infos or not infos[name].removable]
    if bad:
        raise ConfigError(f"ranking names blocks that cannot be removed: {', '.join(bad)}")
    from .budget import BUDGET_TOLERANCE

    macs_now, _ = macs_and_params(model, length)
    target = budget_target(macs_now, budget, reference_macs)
    reference = macs_now if reference_macs is None else int(reference_macs)
    chosen = select_for_budget(ranking, {name: infos[name].saved_macs for name in ranking}, target, rule,
                               tolerance=BUDGET_TOLERANCE * reference)
    return remove_and_summarise(model, chosen, length=length, budget=budget,
                                reference_macs=reference_macs, rule=rule)
