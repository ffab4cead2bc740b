"""FCOS stage 1: hierarchical clustering of similar channels, then parameter fusion.

Data-free: only weights are used. For each coupled channel group (fcos.prune.groups):

1. **Channel vectors.** Each channel c gets one vector, the concatenation over the group's
   producers of that producer's row for c, each producer's rows scaled to unit L2 norm (so that
   every producer weighs the same; an all-zero row stays zero):
   conv/linear followed by BatchNorm: the BN-folded affine map ``[s_c W_c, g_c]`` with
   ``s_c = gamma_c / sqrt(var_c + eps)`` and ``g_c = beta_c + s_c (b_c - mean_c)`` (the eval-mode
   map of the channel, so BN scale and shift count); conv/linear without BN: ``[W_c, b_c]`` (no
   bias: ``W_c``); a channel map (ResNet56's pooled shortcut): its row ``S_c``.
2. **Cosine distance** between channel vectors (1 - cosine similarity, in [0, 2]; two all-zero
   vectors are at distance 0, an all-zero and any other at 1). Distance 0 means proportional, not
   identical: fusion is exact only for identical channels.
3. **Agglomerative clustering** (scipy.cluster.hierarchy.linkage), ``linkage`` one of
   "average" (default), "complete", "single" on the cosine distances, or "ward": Ward's
   criterion needs Euclidean geometry, so it runs on the L2-normalised vectors, whose squared
   Euclidean distance is 2 x the cosine distance; its merge heights h are reported as h^2 / 2,
   which is the cosine distance for two single channels, so thresholds mean the same thing
   for every linkage.
4. **Cut**, one rule for the whole model (``criterion``):
   "keep_ratio" r: every group keeps ``max(1, floor(r * C + 0.5))`` clusters;
   "threshold" t: every group merges while the merge height is <= t (one global t);
   "macs" target: the smallest global cut whose MAC reduction (fcos.metrics.macs_and_params at
   ``length``, the one counter, on each fused candidate) reaches the target. All merges of all
   groups are put in one order (height, then group depth order, then merge order within the
   group): a global threshold with ties broken deterministically, so a plateau (many merges at
   one height, e.g. duplicate channels at distance 0) is taken merge by merge, never all at
   once. The number of merges taken is found by bisection. One merge can still be coarse (one
   channel of CNN1D's first stream is about 2% of its MACs): if the merge crossing the target
   overshoots it by more than MACS_TOLERANCE (1 point), that group is frozen at its width just
   before, and the search continues from there with the other groups' remaining merges in the
   same order. The target is thus met from above, normally within 1 point (else the smallest
   overshoot seen). The reported ``threshold`` is the largest merge height taken.
5. **Fusion** of each cluster into one channel with fcos.prune.surgery.reduce_channels
   ("fuse"): producers' rows averaged, BatchNorm merged so the eval-mode map is the mean of the
   members' (formula in surgery._fuse_normalised_rows), shortcut-map rows averaged, consumers'
   input slices summed. If the members are identical, the fused network computes the same
   function (the "recoverable" property).

Residual streams (``stream``): "shared" (default) gives a stream one partition, clustered on
the concatenation of all its producers (every layer adding into it); "inner" leaves every
stream whole and fuses only inner groups (channels written by one layer). ``skip`` names groups
to leave untouched.

The result is an ordinary model with narrower real layers; the architecture record
``{"resized": True}`` rebuilds it from its state dict (fcos.checkpoint.model_from_checkpoint).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from torch import nn

from ..errors import ConfigError
from ..metrics import macs_and_params
from .base import PruneResult, check_budget, register_pruner
from .budget import BUDGET_TOLERANCE, counts_for_budget
from .groups import ChannelGroup, channel_groups
from .surgery import reduce_channels

LINKAGES = ("average", "complete", "single", "ward")
STREAM_MODES = ("shared", "inner")
FUSION_OPTIONS = ("keep_ratio", "threshold", "linkage", "stream", "skip", "fuse_linear")
#: The "macs" cut aims at [target, target + MACS_TOLERANCE] (see _merges_for_macs).
MACS_TOLERANCE = BUDGET_TOLERANCE


# --- channel vectors and the cluster tree ---------------------------------------------------

def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def channel_vectors(model: nn.Module, group: ChannelGroup) -> np.ndarray:
    """Clustering vectors of ``group``'s channels, float64 (C, D); see the module docstring."""
    parts = []
    for producer in group.producers:
        module = model.get_submodule(producer.module)
        if getattr(module, "mapping", None) is not None:
            parts.append(_unit_rows(module.mapping.detach().double().cpu().numpy()))
            continue
        weight = module.weight.detach().double().cpu().reshape(module.weight.shape[0], -1)
        bias = (torch.zeros(weight.shape[0], dtype=torch.float64) if module.bias is None
                else module.bias.detach().double().cpu())
        if producer.norm is not None:
            norm = model.get_submodule(producer.norm)
            scale = (norm.weight.detach().double().cpu()
                     / torch.sqrt(norm.running_var.detach().double().cpu() + norm.eps))
            weight = scale[:, None] * weight
            bias = norm.bias.detach().double().cpu() + scale * (
                bias - norm.running_mean.detach().double().cpu())
        rows = weight if module.bias is None and producer.norm is None else torch.cat(
            [weight, bias[:, None]], dim=1)
        parts.append(_unit_rows(rows.numpy()))
    return np.concatenate(parts, axis=1)


def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    """Condensed (scipy order) cosine distances of the rows of ``vectors`` (C, D), in [0, 2]."""
    unit = _unit_rows(vectors)
    zero = ~unit.any(axis=1)
    similarity = unit @ unit.T
    similarity[np.ix_(zero, zero)] = 1.0
    distance = np.clip(1.0 - similarity, 0.0, 2.0)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)
    return squareform(distance, checks=False)


def cluster_tree(vectors: np.ndarray, linkage: str = "average") -> np.ndarray:
    """Agglomerative merge tree of the rows of ``vectors`` (C, D): scipy linkage matrix (C-1, 4).

    Column 2 holds merge heights in cosine-distance units (ward: h^2 / 2), non-decreasing.
    """
    if linkage not in LINKAGES:
        raise ConfigError(f"linkage={linkage!r}: expected one of {', '.join(LINKAGES)}")
    if len(vectors) < 2:
        return np.zeros((0, 4))
    distances = cosine_distances(vectors)
    if linkage == "ward":
        tree = hierarchy.linkage(np.sqrt(2.0 * distances), method="ward")
        tree[:, 2] = tree[:, 2] ** 2 / 2.0
    else:
        tree = hierarchy.linkage(distances, method=linkage)
    tree[:, 2] = np.maximum.accumulate(tree[:, 2])  # guard against rounding-level dips
    return tree


def assignment_from_merges(tree: np.ndarray, merges: int) -> np.ndarray:
    """Cluster id per channel (C,) after the first ``merges`` merges of ``tree``.

    Ids are 0..K-1 (K = C - merges) in order of each cluster's lowest channel index, so that the
    fused channels keep the original channel order.
    """
    channels = len(tree) + 1
    if not 0 <= merges < channels:
        raise ValueError(f"merges must be in [0, {channels}), got {merges}")
    members: dict[int, list[int]] = {c: [c] for c in range(channels)}
    for row in range(merges):
        left, right = int(tree[row, 0]), int(tree[row, 1])
        members[channels + row] = members.pop(left) + members.pop(right)
    assign = np.empty(channels, dtype=np.int64)
    for cluster, channel_list in enumerate(sorted(members.values(), key=min)):
        assign[channel_list] = cluster
    return assign


# --- options ----------------------------------------------------------------------------------

def _check_options(ratio, target, threshold, linkage, stream, skip, length) -> str:
    chosen = [key for key, value in (("ratio", ratio), ("target_macs_reduction", target),
                                     ("threshold", threshold)) if value is not None]
    if len(chosen) != 1:
        raise ConfigError(f"channel fusion: set exactly one of ratio, target_macs_reduction, "
                          f"threshold (got {', '.join(chosen) or 'none'})")
    if ratio is not None and (not _is_number(ratio) or not 0 < ratio <= 1):
        raise ConfigError(f"ratio={ratio!r}: expected a keep ratio in (0, 1]")
    if threshold is not None and (not _is_number(threshold) or not threshold >= 0):
        raise ConfigError(f"threshold={threshold!r}: expected a cosine distance >= 0")
    check_budget(target, key="target_macs_reduction")
    if linkage not in LINKAGES:
        raise ConfigError(f"linkage={linkage!r}: expected one of {', '.join(LINKAGES)}")
    if stream not in STREAM_MODES:
        raise ConfigError(f"stream={stream!r}: expected one of {', '.join(STREAM_MODES)}")
    if isinstance(skip, str) or not all(isinstance(name, str) for name in skip):
        raise ConfigError(f"skip={skip!r}: expected a list of channel group names")
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise ConfigError(f"length={length!r}: expected a positive integer input length")
    return {"ratio": "keep_ratio", "target_macs_reduction": "macs", "threshold": "threshold"}[
        chosen[0]]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# --- the cut rules ------------------------------------------------------------------------------

@dataclass
class _Clustered:
    group: ChannelGroup
    tree: np.ndarray
    seconds: float

    @property
    def heights(self) -> np.ndarray:
        return self.tree[:, 2]


def _fused(model: nn.Module, clustered: list[_Clustered], merges: list[int]) -> nn.Module:
    fused = copy.deepcopy(model)
    for item, count in zip(clustered, merges):
        if count:
            reduce_channels(fused, item.group, assignment_from_merges(item.tree, count), "fuse")
    return fused


def _merges_for_macs(model: nn.Module, clustered: list[_Clustered], target: float,
                     length: int, base_macs: int) -> tuple[list[int], int]:
    """Per-group merge counts of the smallest global cut with MAC reduction >= target.

    All merges are ordered by (height, group, merge index); a cut takes a prefix of that order,
    found by bisection. If the merge that crosses the target overshoots it by more than
    MACS_TOLERANCE (one channel of an expensive stream can be worth several points), its group
    is frozen at its width just before, and the search goes on from there with the other
    groups' remaining merges, in the same order. Returns (merges per group, counter calls).
    """
    groups = len(clustered)
    group_of = np.concatenate([np.full(len(item.heights), g, dtype=np.int64)
                               for g, item in enumerate(clustered)] + [np.zeros(0, np.int64)])
    rank = np.concatenate([np.arange(len(item.heights), dtype=np.int64) for item in clustered]
                          + [np.zeros(0, np.int64)])
    heights = np.concatenate([item.heights for item in clustered] + [np.zeros(0)])
    order = np.lexsort((rank, group_of, heights))  # by height, then group, then merge order
    ordered_groups, ordered_ranks = group_of[order], rank[order]

    def reduction(counts: np.ndarray) -> float:
        macs, _ = macs_and_params(_fused(model, clustered, [int(c) for c in counts]), length)
        return 1.0 - macs / base_macs

    counts, steps = counts_for_budget(ordered_groups, ordered_ranks, groups, reduction, target,
                                      MACS_TOLERANCE, key="target_macs_reduction",
                                      unit="fusing every group to one channel")
    return counts.tolist(), steps


# --- the pruner ---------------------------------------------------------------------------------

def _layer_widths(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(output, input) width of every conv, linear layer and channel map (linear: features)."""
    widths = {}
    for name, module in model.named_modules():
        if getattr(module, "mapping", None) is not None:
            widths[name] = tuple(module.mapping.shape)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            widths[name] = (module.out_channels, module.in_channels)
        elif isinstance(module, nn.Linear):
            widths[name] = (module.out_features, module.in_features)
    return widths


def fuse_channels(model: nn.Module, model_name: str, *, ratio: float | None = None,
                  target_macs_reduction: float | None = None, threshold: float | None = None,
                  linkage: str = "average", stream: str = "shared", skip: Iterable[str] = (),
                  length: int, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """FCOS stage 1 on ``model`` (built as ``model_name``); ``model`` itself is not modified.

    Exactly one cut rule: ``ratio`` (keep ratio per group, in (0, 1]), ``target_macs_reduction``
    (global MAC reduction in [0, 1), measured for inputs (1, 2, ``length``)) or ``threshold``
    (global cosine distance). ``linkage``: average | complete | single | ward; ``stream``:
    shared | inner; ``skip``: names of channel groups to leave untouched (fcos.prune.groups).

    Returns (fused model, record). The record is JSON-able: ``options``; ``groups`` (per group:
    name, kind, status "fused" | "skipped", channels_before/after, cluster_sizes in new-channel
    order or None, max_merge_distance, clustering_seconds); ``layers`` ({module: {"out": [before,
    after], "in": [before, after]}} for every conv/linear/channel map); macs/params
    before/after and reductions; ``threshold`` (the cut's largest merge height taken);
    ``clustering_seconds`` (vectors + linkage, all groups), ``search_steps`` (counter calls of
    the "macs" bisection). Raises ConfigError for an invalid option (one line, naming the key).
    """
    skip = () if skip is None else skip if isinstance(skip, str) else tuple(skip)
    criterion = _check_options(ratio, target_macs_reduction, threshold, linkage, stream, skip,
                               length)
    groups = channel_groups(model, model_name)
    names = [group.name for group in groups]
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ConfigError(f"skip: unknown channel group(s) {', '.join(map(repr, unknown))} for "
                          f"{model_name}; its groups are {', '.join(names)}")
    active = [group for group in groups
              if group.name not in skip and (stream == "shared" or group.kind == "inner")]

    iterator = active
    if progress:
        from tqdm import tqdm
        iterator = tqdm(active, desc="clustering channel groups", unit="group")
    clustered = []
    for group in iterator:
        start = time.perf_counter()
        tree = cluster_tree(channel_vectors(model, group), linkage)
        clustered.append(_Clustered(group, tree, time.perf_counter() - start))

    base_macs, base_params = macs_and_params(model, length)
    steps = 0
    if criterion == "keep_ratio":
        merges = [item.group.channels - max(1, math.floor(ratio * item.group.channels + 0.5))
                  for item in clustered]
    elif criterion == "threshold":
        merges = [int(np.count_nonzero(item.heights <= threshold)) for item in clustered]
    else:
        merges, steps = _merges_for_macs(model, clustered, target_macs_reduction, length,
                                         base_macs)
    fused = _fused(model, clustered, merges)
    macs, params = macs_and_params(fused, length)

    per_group = {item.group.name: (item, count) for item, count in zip(clustered, merges)}
    group_records = []
    for group in groups:
        item, count = per_group.get(group.name, (None, 0))
        record = {"name": group.name, "kind": group.kind,
                  "status": "skipped" if item is None else "fused",
                  "channels_before": group.channels, "channels_after": group.channels - count,
                  "cluster_sizes": None, "max_merge_distance": None, "clustering_seconds": None}
        if item is not None:
            assign = assignment_from_merges(item.tree, count)
            record["cluster_sizes"] = np.bincount(assign).tolist()
            record["max_merge_distance"] = float(item.heights[count - 1]) if count else None
            record["clustering_seconds"] = item.seconds
        group_records.append(record)
    before, after = _layer_widths(model), _layer_widths(fused)
    layers = {name: {"out": [before[name][0], after[name][0]],
                     "in": [before[name][1], after[name][1]]} for name in before}
    taken = [item.heights[count - 1] for item, count in zip(clustered, merges) if count]
    record = {
        "pruner": "fcos-stage1",
        "options": {"criterion": criterion, "keep_ratio": ratio,
                    "target_macs_reduction": target_macs_reduction, "threshold": threshold,
                    "linkage": linkage, "stream": stream, "skip": list(skip),
                    "length": int(length)},
        "threshold": float(max(taken)) if taken else 0.0,
        "macs_before": base_macs, "macs_after": macs,
        "params_before": base_params, "params_after": params,
        "macs_reduction": 1.0 - macs / base_macs, "params_reduction": 1.0 - params / base_params,
        "clustering_seconds": float(sum(item.seconds for item in clustered)),
        "search_steps": steps,
        "groups": group_records,
        "layers": layers,
    }
    return fused, record


@register_pruner("fcos-stage1")
def fcos_stage1(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
                options: dict[str, Any], progress: bool) -> PruneResult:
    """Registered pruner: ``budget`` (MAC reduction) -> criterion "macs"; ``options`` may set
    keep_ratio or threshold instead of a budget, and linkage, stream, skip, fuse_linear (default
    true: hidden dense layers such as CNN1D's are fused too; false fuses conv layers only, the
    paper's wording). Data-free and
    deterministic (``data`` only supplies the input length when given; ``seed`` is unused).
    """
    unknown = sorted(set(options) - set(FUSION_OPTIONS))
    if unknown:
        raise ConfigError(f"fcos-stage1: unknown option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(FUSION_OPTIONS)}")
    rules = [key for key, value in (("budget", budget), ("keep_ratio", options.get("keep_ratio")),
                                    ("threshold", options.get("threshold"))) if value is not None]
    if len(rules) != 1:
        raise ConfigError(f"fcos-stage1: give exactly one of a budget or the options keep_ratio, "
                          f"threshold (got {', '.join(rules) or 'none'})")
    keep_ratio = options.get("keep_ratio")
    if keep_ratio is not None and (not _is_number(keep_ratio) or not 0 < keep_ratio <= 1):
        raise ConfigError(f"keep_ratio={keep_ratio!r}: expected a keep ratio in (0, 1]")
    length = getattr(data, "length", None) or getattr(model, "length", None)
    skip = list(options.get("skip", ()))
    fuse_linear = options.get("fuse_linear", True)
    if not isinstance(fuse_linear, bool):
        raise ConfigError(f"fuse_linear={fuse_linear!r}: expected true or false")
    if not fuse_linear:
        # The paper speaks of conv layers; this keeps hidden fully connected layers (CNN1D's
        # dense) whole. Default true: a hidden dense layer's units are channels too.
        skip += [group.name for group in channel_groups(model, model_name)
                 if group.name not in skip
                 and all(isinstance(model.get_submodule(p.module), nn.Linear) for p in group.producers)]
    fused, record = fuse_channels(
        model, model_name, ratio=keep_ratio, target_macs_reduction=budget,
        threshold=options.get("threshold"), linkage=options.get("linkage", "average"),
        stream=options.get("stream", "shared"), skip=skip, length=length,
        progress=progress)
    return PruneResult(fused, {"resized": True}, record)
