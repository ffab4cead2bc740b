"""Meeting a global MAC budget with per-group compression events (shared by fusion and channel pruning).

One channel of an expensive residual stream can be worth several points of MACs, so a plain
global cut can overshoot a budget badly. The search takes the shortest prefix of the events
(in the pruner's order) that reaches the target; when the event that crosses it overshoots by
more than ``BUDGET_TOLERANCE``, that group is frozen and the search continues with the others.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ConfigError

#: A cut aims at [budget, budget + BUDGET_TOLERANCE].
BUDGET_TOLERANCE = 0.01


def counts_for_budget(event_groups: np.ndarray, event_ranks: np.ndarray, groups: int,
                      reduction: Callable[[np.ndarray], float], target: float,
                      tolerance: float = BUDGET_TOLERANCE, key: str = "budget",
                      unit: str = "pruning every channel group to its minimum") -> tuple[np.ndarray, int]:
    """Events per group of the shortest prefix of the events whose reduction reaches target.

    An event is one unit of compression of one group (a channel removed, a cluster merge);
    ``event_groups``/``event_ranks`` list them in the pruner's preferred global order.
    ``reduction(counts)`` is the MAC reduction after taking ``counts[g]`` events of each group
    (monotone in every count). Bisection over the prefix length; if the event that
    crosses the target overshoots it by more than ``tolerance``, its group is frozen at its
    count just before and the search goes on with the remaining events of the other groups, in
    the same order. Returns (counts, number of reductions evaluated); raises ConfigError if the
    target cannot be reached.
    """
    cache: dict[tuple[int, ...], float] = {}

    def measured(counts: np.ndarray) -> float:
        signature = tuple(int(c) for c in counts)
        if signature not in cache:
            cache[signature] = reduction(counts)
        return cache[signature]

    taken = np.zeros(groups, dtype=np.int64)
    if target <= 0:
        return taken, 0
    frozen = np.zeros(groups, dtype=bool)
    best: np.ndarray | None = None
    while True:
        is_open = ~frozen[event_groups] & (event_ranks >= taken[event_groups])
        remaining = event_groups[is_open]

        def counts(n: int) -> np.ndarray:
            return taken + np.bincount(remaining[:n], minlength=groups)

        if measured(counts(len(remaining))) < target:
            if best is None:
                most = measured(counts(len(remaining)))
                raise ConfigError(f"{key}={target}: not reachable, {unit} removes "
                                  f"{100 * most:.1f}% of the MACs")
            return best, len(cache)
        low, high = 0, len(remaining)  # reduction(low) < target <= reduction(high)
        while high - low > 1:
            middle = (low + high) // 2
            if measured(counts(middle)) >= target:
                high = middle
            else:
                low = middle
        candidate = counts(high)
        if best is None or measured(candidate) < measured(best):
            best = candidate
        if measured(candidate) - target <= tolerance:
            return candidate, len(cache)
        taken = counts(low)
        frozen[remaining[high - 1]] = True
