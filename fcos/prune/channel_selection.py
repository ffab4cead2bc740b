"""Channel pruning to a MAC budget: rank every channel of every coupled group by one criterion
(fcos.prune.importance), find the cut that meets the budget, and keep the best channels with
the shared surgery (fcos.prune.surgery.reduce_channels, mode "select").

Structure: the project's own engine, not Torch-Pruning
    Channels are removed with the same machinery as FCOS stage 1: ``fcos.prune.groups``
    describes which channels are coupled (residual streams share one partition, ResNet56's
    parameter-free pooled shortcut is a channel map on its stream) and
    ``fcos.prune.surgery.reduce_channels(..., mode="select")`` keeps one channel per cluster.
    So every pruner, FCOS and baselines, gets exactly the same structural handling, and a
    pruned model is the base builder plus ``{"resized": True}`` (rebuilt from its state dict by
    ``fcos.checkpoint.model_from_checkpoint``). Torch-Pruning's dependency graph cannot handle
    ResNet56's zero-padding shortcut and would give the baselines a structure of its own;
    it serves as an independent reference instead: on CNN1D (identity residual adds only) the
    test suite checks that the same importance and the same per-group ratio give identical
    channel counts, MACs, kept channels and weights with both engines (tests/test_channel.py).

Allocation (option ``allocation``) and the budget
    Within a group, channels go in order of increasing importance (ties: lower index first).
    Every possible single-channel removal is put in one global order, and the cut is the
    shortest prefix of that order whose MAC reduction (relative to the input model) reaches the
    budget, found by bisection:

    - "uniform" (default): removals ordered by the fraction of its group they bring the group
      to (k / C for the k-th removal of a C-channel group), ties by importance, then depth: a
      common keep ratio for every group, up to one channel;
    - "global": removals ordered by normalised importance: one global threshold.

    One channel can be worth more than the tolerance (a stream channel of CNN1D's first stack
    is about 2.6% of its MACs): if the removal crossing the budget overshoots it by more than
    BUDGET_TOLERANCE (1 point), that group is frozen at its width just before and the search
    goes on with the other groups' removals in the same order. The budget is met from above,
    normally within 1 point; the achieved reduction and the gap are in the record.
    ``min_channels`` (>= 1) is the fewest channels a group keeps; ``stream``: "shared"
    (default) prunes residual-stream groups too, "inner" only groups written by one layer
    (same meaning as in fcos.prune.fusion).

    MAC evaluation during the search: selection changes widths only, so the MACs are a fixed
    bilinear function of the groups' widths (:class:`WidthCostModel`, calibrated on the model
    with one forward pass). The chosen network is measured with the one counter
    (fcos.metrics.macs_and_params); should the two ever disagree, the search is repeated with
    the counter on each candidate network (``record["mac_search"]`` says which was used).

Every pruner requires a budget; the input model is not modified.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..errors import ConfigError
from ..metrics import macs_and_params
from .base import PruneResult, check_budget, input_length, require_budget
from .budget import counts_for_budget
from .fusion import STREAM_MODES
from .groups import ChannelGroup, channel_groups
from .importance import Criterion, ScoringContext, group_importance, removal_order
from .options import check_integer, check_options
from .surgery import reduce_channels
from .width_cost import WidthCostModel


ALLOCATIONS = ("uniform", "global")


#: Options every channel-pruner takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {"allocation": "uniform", "stream": "shared", "min_channels": 1}


def removal_events(groups: Sequence[ChannelGroup], importance: Mapping[str, np.ndarray],
                   limits: Sequence[int], allocation: str) -> tuple[np.ndarray, np.ndarray]:
    """All single-channel removals in global order: (group index, rank within its group) each.

    The k-th removal (rank k-1) of group g removes its k-th least important channel; at most
    ``limits[g]`` removals per group. Order: "uniform" by k / C_g, then the removed channel's
    importance, then depth; "global" by the removed channel's importance, then depth, then k.
    """
    group_index, ranks, primary, secondary = [], [], [], []
    for index, (group, limit) in enumerate(zip(groups, limits)):
        removed = np.asarray(importance[group.name])[removal_order(importance[group.name])[:limit]]
        k = np.arange(1, limit + 1)
        group_index.append(np.full(limit, index))
        ranks.append(k - 1)
        if allocation == "uniform":
            primary.append(k / group.channels)
            secondary.append(removed)
        else:
            primary.append(removed)
            secondary.append(np.zeros(limit))
    if not group_index:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    group_index, ranks = np.concatenate(group_index), np.concatenate(ranks)
    order = np.lexsort((ranks, group_index, np.concatenate(secondary), np.concatenate(primary)))
    return group_index[order].astype(np.int64), ranks[order].astype(np.int64)


def kept_channels(importance: np.ndarray, removed: int) -> np.ndarray:
    """Indices (ascending) of the channels left after removing the ``removed`` least important."""
    return np.sort(removal_order(importance)[removed:])


def select_channels(model: nn.Module, groups: Sequence[ChannelGroup],
                    kept: Mapping[str, Sequence[int]]) -> nn.Module:
    """Keep only channels ``kept[group.name]`` (ascending indices) of each group, in place.

    Uses fcos.prune.surgery.reduce_channels in "select" mode (one cluster per kept channel, in
    index order); groups not in ``kept`` or keeping every channel are untouched. Returns
    ``model``.
    """
    for group in groups:
        if group.name not in kept:
            continue
        indices = np.asarray(kept[group.name], dtype=np.int64)
        if len(indices) == 0 or len(np.unique(indices)) != len(indices) or indices.min() < 0 \
                or indices.max() >= group.channels or np.any(np.diff(indices) < 0):
            raise ValueError(f"select_channels: {group.name}: kept must be distinct ascending "
                             f"indices in [0, {group.channels}), at least one")
        if len(indices) == group.channels:
            continue
        assign = np.full(group.channels, -1, dtype=np.int64)
        assign[indices] = np.arange(len(indices))
        reduce_channels(model, group, assign, mode="select")
    return model


def _resolve_options(criterion: Criterion, options: Mapping[str, Any]) -> dict[str, Any]:
    defaults = {**COMMON_OPTIONS, **criterion.options}
    check_options(criterion.name, options, defaults)
    resolved = {**defaults, **options}
    if resolved["allocation"] not in ALLOCATIONS:
        raise ConfigError(f"allocation={resolved['allocation']!r}: expected one of "
                          f"{', '.join(ALLOCATIONS)}")
    if resolved["stream"] not in STREAM_MODES:
        raise ConfigError(f"stream={resolved['stream']!r}: expected one of "
                          f"{', '.join(STREAM_MODES)}")
    check_integer("min_channels", resolved["min_channels"], 1)
    return resolved


def prune_channels(model: nn.Module, model_name: str, criterion: Criterion, *,
                   budget: float | None, data: Any = None, seed: int = 0,
                   options: Mapping[str, Any] | None = None, progress: bool = False) -> PruneResult:
    """Prune ``model`` (built as ``model_name``) to a MAC-reduction ``budget`` by ``criterion``.

    ``model`` itself is not modified. Returns PruneResult(pruned model, ``{"resized": True}``,
    record); the record (JSON-able) has ``pruner``, ``criterion``, ``options`` (defaults filled
    in), ``budget``, macs/params before/after and reductions, ``gap`` (achieved MAC reduction
    minus budget), ``cut`` ("uniform": the largest fraction of a group removed; "global": the
    largest normalised importance removed), ``mac_search`` and ``search_steps``, ``groups``
    (per group, depth order: name, kind, status "pruned" | "skipped", channels_before/after,
    ``kept`` indices into the input model's channels, ``importance`` normalised, None when
    skipped), ``preparation`` (slimming: the sparsity-training history), timings.
    """
    tic = time.perf_counter()
    options = _resolve_options(criterion, dict(options or {}))
    budget = check_budget(require_budget(criterion.name, budget))
    length = input_length(model, data)
    model = copy.deepcopy(model)
    groups = channel_groups(model, model_name)
    active = [g for g in groups if options["stream"] == "shared" or g.kind == "inner"]
    criterion.check(model, active, options, data, model_name)
    context = ScoringContext(data=data, seed=seed, length=length, options=options,
                             progress=progress)
    preparation = criterion.prepare(model, active, context)
    scoring_tic = time.perf_counter()
    importance = {name: group_importance(scores) for name, scores in
                  criterion.producer_scores(model, active, context).items()}
    scoring_seconds = time.perf_counter() - scoring_tic

    macs_before, params_before = macs_and_params(model, length)
    limits = [max(0, g.channels - options["min_channels"]) for g in active]
    event_groups, event_ranks = removal_events(active, importance, limits, options["allocation"])
    costs = WidthCostModel(model, active, length)
    widths = np.array([g.channels for g in active], dtype=np.int64)

    def estimated(counts: np.ndarray) -> float:
        return 1.0 - costs.macs(widths - counts) / macs_before

    def pruned_for(counts: np.ndarray) -> nn.Module:
        kept = {g.name: kept_channels(importance[g.name], int(c)) for g, c in zip(active, counts)}
        return select_channels(copy.deepcopy(model), active, kept)

    def counted(counts: np.ndarray) -> float:
        return 1.0 - macs_and_params(pruned_for(counts), length)[0] / macs_before

    mac_search = "width model"
    counts, steps = counts_for_budget(event_groups, event_ranks, len(active), estimated, budget)
    pruned = pruned_for(counts)
    macs_after, params_after = macs_and_params(pruned, length)
    if macs_after != costs.macs(widths - counts):  # a layer the width model does not describe
        mac_search = "counter"
        counts, steps = counts_for_budget(event_groups, event_ranks, len(active), counted, budget)
        pruned = pruned_for(counts)
        macs_after, params_after = macs_and_params(pruned, length)

    removed = dict(zip((g.name for g in active), (int(c) for c in counts)))
    group_records = []
    for group in groups:
        record = {"name": group.name, "kind": group.kind, "channels_before": group.channels}
        if group.name in removed:
            record.update(status="pruned", channels_after=group.channels - removed[group.name],
                          kept=kept_channels(importance[group.name], removed[group.name]).tolist(),
                          importance=importance[group.name].tolist())
        else:
            record.update(status="skipped", channels_after=group.channels, kept=None,
                          importance=None)
        group_records.append(record)
    if options["allocation"] == "uniform":
        cuts = [removed[g.name] / g.channels for g in active]
    else:
        cuts = [float(np.sort(importance[g.name])[removed[g.name] - 1])
                for g in active if removed[g.name]]
    achieved = 1.0 - macs_after / macs_before
    record = {
        "pruner": criterion.name, "criterion": criterion.description, "options": dict(options),
        "budget": budget, "macs_before": macs_before, "macs_after": macs_after,
        "params_before": params_before, "params_after": params_after,
        "macs_reduction": achieved, "params_reduction": 1.0 - params_after / params_before,
        "gap": achieved - budget, "cut": float(max(cuts, default=0.0)),
        "mac_search": mac_search, "search_steps": steps, "groups": group_records,
        "preparation": preparation, "scoring_seconds": scoring_seconds,
        # passes over the train split this step trained for (slimming's sparsity phase); the
        # pipeline counts them in the pruner's recovery budget
        "training_epochs": len((preparation or {}).get("sparsity_training") or []),
        "time_s": time.perf_counter() - tic,
    }
    return PruneResult(pruned, {"resized": True}, record)
