"""The exact block-subset search against brute-force enumeration of every subset."""

from __future__ import annotations

import itertools
import random

import pytest

from fcos.errors import ConfigError
from fcos.prune.block_selection import select_subset


def brute_force(names, savings, target, tolerance):
    """Every subset: in-window ones first (cheapest by importance), else the smallest gap."""
    best = None
    for size in range(len(names) + 1):
        for subset in itertools.combinations(range(len(names)), size):
            saved = sum(savings[names[i]] for i in subset)
            importance = sum(2 ** i for i in subset)  # the last-ranked block weighs most
            inside = target <= saved <= target + tolerance
            key = (not inside, 0 if inside else abs(saved - target), importance)
            if best is None or key < best[0]:
                best = (key, subset)
    return [names[i] for i in best[1]], not best[0][0]


@pytest.mark.parametrize("trial", range(60))
def test_matches_brute_force(trial):
    rng = random.Random(trial)
    names = [f"block{i}" for i in range(rng.randint(1, 10))]
    savings = {name: rng.choice([5, 10, 10, 20, 7, 33, 100]) for name in names}
    target = rng.choice([rng.uniform(1, 1.1 * sum(savings.values())), float(rng.randint(1, sum(savings.values())))])
    tolerance = rng.choice([0, 3, 10])
    assert select_subset(names, savings, target, tolerance) == brute_force(names, savings, target, tolerance)


def test_spares_the_most_important_block_when_lesser_ones_suffice():
    # ranking: a first to go, d last; d alone would hit 30 exactly, but a+b+c land in the window too
    savings = {"a": 10, "b": 10, "c": 11, "d": 30}
    assert select_subset(list("abcd"), savings, 30, 2) == (["a", "b", "c"], True)
    # without a tolerance only d (or nothing closer) meets 30 exactly
    assert select_subset(list("abcd"), savings, 30, 0) == (["d"], True)


def test_unreachable_window_takes_the_closest_subset_and_says_so():
    chosen, met = select_subset(["a", "b"], {"a": 40, "b": 40}, 50, 1)
    assert (chosen, met) == (["a"], False)  # 40 is 10 short, 80 is 30 over


def test_27_blocks_are_searched_exactly_and_fast():
    rng = random.Random(0)
    names = [f"b{i}" for i in range(27)]
    savings = {name: rng.choice([1_179_648, 2_359_296, 4_718_592]) for name in names}
    chosen, met = select_subset(names, savings, 20_000_000, 416_000)
    assert met and 20_000_000 <= sum(savings[n] for n in chosen) <= 20_416_000


def test_too_many_blocks_are_refused():
    with pytest.raises(ConfigError, match="at most"):
        select_subset([f"b{i}" for i in range(41)], {f"b{i}": 1 for i in range(41)}, 3, 0)
