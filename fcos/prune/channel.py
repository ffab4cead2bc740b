"""Channel-pruning baselines: rank channels by one criterion, keep the best to a MAC budget.

Five registered methods share one pipeline and differ only in the importance criterion (one
class per criterion, :class:`Criterion`; a new criterion is one class added to ``CRITERIA``):

- ``"l1"`` (Li et al., "Pruning filters for efficient ConvNets", ICLR 2017): a channel's score
  at one producer is the L1 norm of the filter writing it (conv weight row, linear row).
- ``"fpgm"`` (He et al., "Filter pruning via geometric median", CVPR 2019): filters close to the
  geometric median of their layer are the most replaceable by the others; a filter's score is
  its summed Euclidean distance to every other filter of the same layer (the paper's
  approximation of the distance to the geometric median), so the filters nearest the median
  score lowest and go first.
- ``"slimming"`` (Liu et al., "Learning efficient convolutional networks through network
  slimming", ICCV 2017): score = |gamma| of the BatchNorm after the producer, *after* a short
  sparsity-training phase (cross-entropy + ``sparsity_lambda`` x sum of |gamma| over every
  BatchNorm of the model, Adam, seeded shuffling, train split) that pushes unneeded scales to
  zero. The returned model carries the sparsity-trained weights, as in the paper (train with
  sparsity, prune, fine-tune). Needs a BatchNorm after every pruned producer: CNN1D has none and
  is refused.
- ``"taylor"`` (Molchanov et al., "Importance estimation for neural network pruning", CVPR
  2019, first-order "Taylor FO"): per mini-batch, per channel, ``z = sum(w * dL/dw)`` over the
  producer's last affine parameters on that channel: the BatchNorm's (gamma, beta) when one
  follows the conv, else the conv/linear row (and bias). This is the paper's gate-after-BN
  variant, and it equals the activation x gradient form ``sum over positions of a * dL/da`` at
  the producer's output (Euler's identity for a layer linear in its parameters), so the two
  variants coincide here. Score = mean over ``num_batches`` seeded training mini-batches of
  ``z^2`` (the paper's squared per-batch contribution). The model is scored in eval mode
  (running BatchNorm statistics, no dropout): the network that will be deployed.
- ``"random-channel"``: seeded uniform random scores.

Structure: the project's own engine, not Torch-Pruning
    Channels are removed with the same machinery as FCOS stage 1: ``fcos.prune.groups``
    describes which channels are coupled (residual streams share one partition, ResNet56's
    parameter-free pooled shortcut is a channel map on its stream) and
    ``fcos.prune.surgery.reduce_channels(..., mode="select")`` keeps one channel per cluster.
    So every method, FCOS and baselines, gets exactly the same structural handling, and a
    pruned model is the base builder plus ``{"resized": True}`` (rebuilt from its state dict by
    ``fcos.checkpoint.model_from_checkpoint``). Torch-Pruning's dependency graph cannot handle
    ResNet56's zero-padding shortcut and would give the baselines a structure of its own;
    it serves as an independent reference instead: on CNN1D (identity residual adds only) the
    test suite checks that the same importance and the same per-group ratio give identical
    channel counts, MACs, kept channels and weights with both engines (tests/test_channel.py).

Importance of a group's channel
    Each learned producer (conv/linear writing the channels, with its BatchNorm) gives one
    score per channel; each producer's scores are divided by their mean (so every producer
    weighs the same whatever its fan-in or scale; an all-zero producer contributes zeros) and
    the group importance is the mean over producers, so every group's importance has mean 1.
    Channel maps (ResNet56's shortcut) hold no learned weights and are not scored; the surgery
    still selects their rows and columns. The classifier's outputs are never a group.

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

Every method requires a budget; the input model is not modified.
"""

from __future__ import annotations

import abc
import copy
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..metrics import macs_and_params
from .base import PruneResult, check_budget, register_method
from .budget import counts_for_budget
from .fusion import STREAM_MODES
from .groups import ChannelGroup, channel_groups
from .lacd import check_options
from .surgery import reduce_channels

ALLOCATIONS = ("uniform", "global")
#: Options every channel-pruning method takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {"allocation": "uniform", "stream": "shared", "min_channels": 1}

_CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCH_NORM = nn.modules.batchnorm._BatchNorm


# --- option checks ----------------------------------------------------------------------------

def _integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _number(key: str, value: Any, *, positive: bool) -> float:
    bad = (isinstance(value, bool) or not isinstance(value, numbers.Real)
           or not math.isfinite(value) or value < 0 or (positive and value == 0))
    if bad:
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{key}={value!r}: expected a finite number {bound}")
    return float(value)


def _device(value: Any) -> torch.device:
    from ..train import resolve_device

    if not isinstance(value, str):
        raise ConfigError(f"device={value!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    return resolve_device(value)


# --- importance criteria ------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoringContext:
    """What a criterion may use besides the model.

    ``data``: the prepared dataset (``split("train")`` -> x (N, 2, L), y (N,)) or None;
    ``options``: the method's options, checked, defaults filled in; ``length``: input length.
    """

    data: Any
    seed: int
    length: int
    options: Mapping[str, Any]
    progress: bool = False


def learned_producers(model: nn.Module, group: ChannelGroup):
    """(producer, conv/linear module, BatchNorm or None) for each producer with weights.

    Channel maps (ResNet56's pooled shortcut) are skipped: they hold no learned weights.
    """
    for producer in group.producers:
        module = model.get_submodule(producer.module)
        if getattr(module, "mapping", None) is not None:
            continue
        norm = None if producer.norm is None else model.get_submodule(producer.norm)
        yield producer, module, norm


def _rows(module: nn.Module) -> torch.Tensor:
    """The producer's weight as (C, D) float64 on the CPU: one row per output channel."""
    return module.weight.detach().double().cpu().reshape(module.weight.shape[0], -1)


class Criterion(abc.ABC):
    """One channel-importance criterion (higher score = more important).

    ``options``: the criterion's own options and defaults (beyond COMMON_OPTIONS).
    ``check`` refuses what the criterion cannot do (ConfigError), ``prepare`` may change the
    model in place before scoring (network slimming's sparsity training) and returns a record,
    ``producer_scores`` gives per group one score array (C,) per learned producer.
    """

    name = ""
    description = ""
    options: Mapping[str, Any] = {}

    def check(self, model: nn.Module, groups: Sequence[ChannelGroup], options: Mapping[str, Any],
              data: Any, model_name: str) -> None:
        """Raise ConfigError if the criterion cannot run with these options / this model."""

    def prepare(self, model: nn.Module, groups: Sequence[ChannelGroup],
                context: ScoringContext) -> dict[str, Any]:
        return {}

    @abc.abstractmethod
    def producer_scores(self, model: nn.Module, groups: Sequence[ChannelGroup],
                        context: ScoringContext) -> dict[str, list[np.ndarray]]:
        """{group name: one score array (channels,) per learned producer}; higher = keep."""


class L1Norm(Criterion):
    name = "l1"
    description = "L1 norm of each producer's filter (Li et al. 2017)"

    def producer_scores(self, model, groups, context):
        return {group.name: [_rows(module).abs().sum(dim=1).numpy()
                             for _, module, _ in learned_producers(model, group)]
                for group in groups}


class GeometricMedian(Criterion):
    name = "fpgm"
    description = ("summed Euclidean distance of each filter to the other filters of its layer "
                   "(FPGM, He et al. 2019): near the geometric median = redundant")

    def producer_scores(self, model, groups, context):
        scores = {}
        for group in groups:
            scores[group.name] = []
            for _, module, _ in learned_producers(model, group):
                rows = _rows(module)
                scores[group.name].append(torch.cdist(rows, rows).sum(dim=1).numpy())
        return scores


class BatchNormScale(Criterion):
    name = "slimming"
    description = ("|BatchNorm gamma| after L1 sparsity training of all gammas (network "
                   "slimming, Liu et al. 2017)")
    #: Sparsity phase: a short fine-tuning of the trained model (the paper sparsity-trains
    #: from scratch; the pipeline's recovery fine-tuning follows anyway). lambda 1e-4 is the
    #: paper's VGG/CIFAR value and the project's L1 coefficient; Adam at the training lr.
    options = {"sparsity_epochs": 5, "sparsity_lambda": 1e-4, "lr": 1e-3, "batch_size": 128,
               "max_batches": None, "device": "auto"}

    def check(self, model, groups, options, data, model_name):
        if not any(isinstance(m, _BATCH_NORM) for m in model.modules()):
            raise ConfigError(f"pruning method slimming ranks channels by BatchNorm scales, and "
                              f"{model_name} has no BatchNorm layers; use l1, fpgm, taylor or "
                              f"random-channel")
        for group in groups:
            for producer, _, norm in learned_producers(model, group):
                if norm is None or not norm.affine:
                    raise ConfigError(f"pruning method slimming: {producer.module} (channel group "
                                      f"{group.name}) has no affine BatchNorm after it")
        _integer("sparsity_epochs", options["sparsity_epochs"], 0)
        _number("sparsity_lambda", options["sparsity_lambda"], positive=False)
        _number("lr", options["lr"], positive=True)
        _integer("batch_size", options["batch_size"], 1)
        if options["max_batches"] is not None:
            _integer("max_batches", options["max_batches"], 1)
        _device(options["device"])
        if options["sparsity_epochs"] > 0 and data is None:
            raise ConfigError("pruning method slimming needs the prepared dataset for its sparsity "
                              "training (or sparsity_epochs=0)")

    def prepare(self, model, groups, context):
        options = context.options
        gamma_l1 = float(sum(m.weight.detach().abs().sum() for m in model.modules()
                             if isinstance(m, _BATCH_NORM) and m.affine))
        if options["sparsity_epochs"] == 0:
            return {"gamma_l1_before": gamma_l1, "sparsity_training": None}
        history = sparsity_training(
            model, context.data, epochs=options["sparsity_epochs"],
            penalty=options["sparsity_lambda"], lr=options["lr"], batch_size=options["batch_size"],
            max_batches=options["max_batches"], seed=context.seed,
            device=_device(options["device"]), progress=context.progress)
        return {"gamma_l1_before": gamma_l1, "sparsity_training": history}

    def producer_scores(self, model, groups, context):
        return {group.name: [norm.weight.detach().double().abs().cpu().numpy()
                             for _, _, norm in learned_producers(model, group)]
                for group in groups}


class FirstOrderTaylor(Criterion):
    name = "taylor"
    description = ("first-order Taylor (Molchanov et al. 2019): mean over mini-batches of "
                   "(sum of weight x gradient of the channel's last affine parameters)^2")
    options = {"num_batches": 16, "batch_size": 128, "device": "auto"}

    def check(self, model, groups, options, data, model_name):
        _integer("num_batches", options["num_batches"], 1)
        _integer("batch_size", options["batch_size"], 1)
        _device(options["device"])
        if data is None:
            raise ConfigError("pruning method taylor needs the prepared dataset (it takes "
                              "gradients on training batches)")

    def producer_scores(self, model, groups, context):
        options = context.options
        return taylor_scores(model, groups, context.data, num_batches=options["num_batches"],
                             batch_size=options["batch_size"], seed=context.seed,
                             device=_device(options["device"]), progress=context.progress)


class RandomChannels(Criterion):
    name = "random-channel"
    description = "seeded uniform random scores"

    def producer_scores(self, model, groups, context):
        rng = np.random.default_rng(context.seed)
        # one draw per group in depth order: the same seed gives the same scores
        return {group.name: [rng.random(group.channels)] for group in groups}


CRITERIA: dict[str, Criterion] = {criterion.name: criterion for criterion in (
    L1Norm(), GeometricMedian(), BatchNormScale(), FirstOrderTaylor(), RandomChannels())}


def group_importance(producer_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over producers of each producer's scores divided by their mean; float64 (C,).

    Every producer weighs the same, and the result has mean 1 (unless every score is 0).
    """
    normalised = []
    for scores in producer_scores:
        scores = np.asarray(scores, dtype=np.float64)
        mean = scores.mean()
        normalised.append(scores / mean if mean > 0 else np.zeros_like(scores))
    return np.mean(normalised, axis=0)


def removal_order(importance: np.ndarray) -> np.ndarray:
    """Channel indices from least to most important (ties: lower index first)."""
    return np.argsort(np.asarray(importance), kind="stable")


# --- data-dependent scoring steps ---------------------------------------------------------------

def _train_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _ = data.split("train")
    if len(y) == 0:
        raise ConfigError("the train split is empty")
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(np.asarray(y, dtype=np.int64)))


def sparsity_training(model: nn.Module, data: Any, *, epochs: int, penalty: float, lr: float,
                      batch_size: int, max_batches: int | None, seed: int, device: torch.device,
                      progress: bool = False) -> list[dict[str, float]]:
    """Network slimming's sparsity phase, in place: train mode, Adam(lr), loss = cross-entropy
    + ``penalty`` x sum of |gamma| over every affine BatchNorm of ``model``.

    ``epochs`` passes over the train split (seeded shuffling; ``max_batches`` caps the steps
    per epoch). The model ends in eval mode on its original device. Returns per epoch: mean
    loss, mean cross-entropy and the final sum of |gamma|.
    """
    xs, ys = _train_tensors(data)
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORM) and m.affine]
    original = next(model.parameters()).device
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(ys) / batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    history = []
    with torch.random.fork_rng(devices=[]):  # dropout masks seeded, the caller's RNG untouched
        torch.manual_seed(seed)
        for epoch in tqdm(range(epochs), desc="sparsity training", disable=not progress,
                          leave=False):
            order = torch.randperm(len(ys), generator=shuffle)
            loss_sum = cross_entropy_sum = 0.0
            for step in range(steps):
                rows = order[step * batch_size:(step + 1) * batch_size]
                xb, yb = xs[rows].to(device), ys[rows].to(device)
                cross_entropy = F.cross_entropy(model(xb), yb)
                loss = cross_entropy + penalty * sum(norm.weight.abs().sum() for norm in norms)
                if not torch.isfinite(loss):
                    raise ConfigError(f"slimming: sparsity training diverged at epoch {epoch + 1} "
                                      f"step {step + 1}; lower lr (now {lr}) or sparsity_lambda")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                cross_entropy_sum += cross_entropy.item()
            with torch.no_grad():
                gamma_l1 = float(sum(norm.weight.abs().sum() for norm in norms))
            history.append({"epoch": epoch + 1, "loss": loss_sum / steps,
                            "cross_entropy": cross_entropy_sum / steps, "gamma_l1": gamma_l1})
    optimizer.zero_grad(set_to_none=True)
    model.to(original).eval()
    return history


def _taylor_contribution(module: nn.Module, norm: nn.Module | None) -> torch.Tensor:
    """sum(w * dL/dw) per output channel over the last affine parameters on it; float64 (C,)."""
    if norm is not None:
        return (norm.weight * norm.weight.grad + norm.bias * norm.bias.grad).detach().double()
    weight = module.weight
    total = (weight * weight.grad).detach().double().reshape(weight.shape[0], -1).sum(dim=1)
    if module.bias is not None:
        total = total + (module.bias * module.bias.grad).detach().double()
    return total


def taylor_scores(model: nn.Module, groups: Sequence[ChannelGroup], data: Any, *,
                  num_batches: int, batch_size: int, seed: int, device: torch.device,
                  progress: bool = False) -> dict[str, list[np.ndarray]]:
    """Per group, per learned producer: mean over mini-batches of the squared per-batch
    first-order Taylor contribution of each channel (see the module docstring).

    Batches: ``num_batches`` x ``batch_size`` training examples in a seeded random order
    (fewer when the split is smaller). Eval mode; gradients are computed for every parameter
    and cleared afterwards; the model's weights, flags and device are left as they were.
    """
    xs, ys = _train_tensors(data)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(ys)))
    order = order[:num_batches * batch_size]
    batches = math.ceil(len(order) / batch_size)
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    modes = {module: module.training for module in model.modules()}
    original = parameters[0].device
    sums = {group.name: [torch.zeros(group.channels, dtype=torch.float64)
                         for _ in learned_producers(model, group)] for group in groups}
    try:
        model.to(device).eval()
        for p in parameters:
            p.requires_grad_(True)
        for batch in tqdm(range(batches), desc="taylor", disable=not progress, leave=False):
            rows = order[batch * batch_size:(batch + 1) * batch_size]
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[rows].to(device)), ys[rows].to(device)).backward()
            for group in groups:
                for index, (_, module, norm) in enumerate(learned_producers(model, group)):
                    sums[group.name][index] += _taylor_contribution(module, norm).cpu() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)
        for module, training in modes.items():
            module.training = training
        model.to(original)
    return {name: [(total / batches).numpy() for total in totals] for name, totals in sums.items()}


# --- MACs as a function of the groups' widths -----------------------------------------------------

class WidthCostModel:
    """MACs of a model (inputs (1, 2, ``length``)) as a function of its groups' widths.

    Selecting channels changes widths only. A conv costs output positions x kernel elements x
    C_out x C_in and a linear layer tokens x C_out x C_in: ``a x C_out x C_in`` with ``a`` fixed
    by the input length, measured once with forward hooks. C_out is the width of the group the
    layer writes, C_in the width of the group it reads (times ``block`` for a linear layer
    reading a flattened map), other widths stay. What the counter prices otherwise (modules
    with ``count_macs``: SigNet50's S2M, ResNet56's shortcut map, which selection keeps a free
    0/1 routing map) is taken as constant: the difference between the counter's total and the
    conv/linear terms. ``macs(widths)`` for widths in ``groups`` order.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup], length: int):
        self.base_macs, _ = macs_and_params(model, length)
        writes = {p.module: index for index, group in enumerate(groups) for p in group.producers}
        reads = {c.module: (index, c.block) for index, group in enumerate(groups)
                 for c in group.consumers}
        own_counter = [name for name, module in model.named_modules()
                       if callable(getattr(module, "count_macs", None))]
        layers = {name: module for name, module in model.named_modules()
                  if isinstance(module, _CONV_OR_LINEAR)
                  and not any(name.startswith(root + ".") for root in own_counter)}
        macs = _layer_macs(model, layers, length)
        self._terms = []  # (a, out group or -1, out width, in group or -1, block, in width)
        for name, module in layers.items():
            out_width, in_width = module.weight.shape[0], module.weight.shape[1]
            out_group = writes.get(name, -1)
            in_group, block = reads.get(name, (-1, 1))
            self._terms.append((macs[name] // (out_width * in_width), out_group, out_width,
                                in_group, block, in_width))
        self._constant = self.base_macs - sum(macs.values())

    def macs(self, widths: Sequence[int]) -> int:
        total = self._constant
        for a, out_group, out_width, in_group, block, in_width in self._terms:
            out_now = out_width if out_group < 0 else int(widths[out_group])
            in_now = in_width if in_group < 0 else int(widths[in_group]) * block
            total += a * out_now * in_now
        return int(total)


def _layer_macs(model: nn.Module, layers: Mapping[str, nn.Module], length: int) -> dict[str, int]:
    """MACs of each conv/linear layer in ``layers`` for one zero input (1, 2, length)."""
    found: dict[str, int] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            per_output = module.weight[0].numel() if not isinstance(module, nn.Linear) \
                else module.weight.shape[1]
            found[name] = found.get(name, 0) + output.numel() * per_output
        return hook

    modes = {module: module.training for module in model.modules()}
    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers.items()]
    first = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 2, length, device=first.device, dtype=first.dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return {name: found.get(name, 0) for name in layers}


# --- the budgeted cut -------------------------------------------------------------------------

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


# --- surgery ----------------------------------------------------------------------------------

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


# --- the method ---------------------------------------------------------------------------------

def _length(model: nn.Module, data: Any) -> int:
    return int(getattr(data, "length", None) or model.length)


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
    _integer("min_channels", resolved["min_channels"], 1)
    return resolved


def prune_channels(model: nn.Module, model_name: str, criterion: Criterion, *,
                   budget: float | None, data: Any = None, seed: int = 0,
                   options: Mapping[str, Any] | None = None, progress: bool = False) -> PruneResult:
    """Prune ``model`` (built as ``model_name``) to a MAC-reduction ``budget`` by ``criterion``.

    ``model`` itself is not modified. Returns PruneResult(pruned model, ``{"resized": True}``,
    record); the record (JSON-able) has ``method``, ``criterion``, ``options`` (defaults filled
    in), ``budget``, macs/params before/after and reductions, ``gap`` (achieved MAC reduction
    minus budget), ``cut`` ("uniform": the largest fraction of a group removed; "global": the
    largest normalised importance removed), ``mac_search`` and ``search_steps``, ``groups``
    (per group, depth order: name, kind, status "pruned" | "skipped", channels_before/after,
    ``kept`` indices into the input model's channels, ``importance`` normalised, None when
    skipped), ``preparation`` (slimming: the sparsity-training history), timings.
    """
    tic = time.perf_counter()
    options = _resolve_options(criterion, dict(options or {}))
    if budget is None:
        raise ConfigError(f"pruning method {criterion.name} needs a budget (MAC reduction fraction "
                          f"in [0, 1))")
    budget = check_budget(budget)
    length = _length(model, data)
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
        "method": criterion.name, "criterion": criterion.description, "options": dict(options),
        "budget": budget, "macs_before": macs_before, "macs_after": macs_after,
        "params_before": params_before, "params_after": params_after,
        "macs_reduction": achieved, "params_reduction": 1.0 - params_after / params_before,
        "gap": achieved - budget, "cut": float(max(cuts, default=0.0)),
        "mac_search": mac_search, "search_steps": steps, "groups": group_records,
        "preparation": preparation, "scoring_seconds": scoring_seconds,
        # passes over the train split this step trained for (slimming's sparsity phase); the
        # pipeline counts them in the method's recovery budget
        "training_epochs": len((preparation or {}).get("sparsity_training") or []),
        "time_s": time.perf_counter() - tic,
    }
    return PruneResult(pruned, {"resized": True}, record)


def _method(name: str, model: nn.Module, model_name: str, budget: float | None, data: Any,
            seed: int, options: dict[str, Any], progress: bool) -> PruneResult:
    return prune_channels(model, model_name, CRITERIA[name], budget=budget, data=data, seed=seed,
                          options=options, progress=progress)


@register_method("l1")
def l1(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
       options: dict[str, Any], progress: bool) -> PruneResult:
    """L1-norm filter pruning to the budget. Options: allocation, stream, min_channels; data
    optional (input length only)."""
    return _method("l1", model, model_name, budget, data, seed, options, progress)


@register_method("fpgm")
def fpgm(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
         options: dict[str, Any], progress: bool) -> PruneResult:
    """Filter pruning via geometric median to the budget. Options as "l1"."""
    return _method("fpgm", model, model_name, budget, data, seed, options, progress)


@register_method("slimming")
def slimming(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
             options: dict[str, Any], progress: bool) -> PruneResult:
    """Network slimming to the budget: sparsity training, then BatchNorm-scale ranking.
    Options: allocation, stream, min_channels, sparsity_epochs, sparsity_lambda, lr, batch_size,
    max_batches, device."""
    return _method("slimming", model, model_name, budget, data, seed, options, progress)


@register_method("taylor")
def taylor(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
           options: dict[str, Any], progress: bool) -> PruneResult:
    """First-order Taylor pruning to the budget. Options: allocation, stream, min_channels,
    num_batches, batch_size, device."""
    return _method("taylor", model, model_name, budget, data, seed, options, progress)


@register_method("random-channel")
def random_channel(model: nn.Module, *, model_name: str, budget: float | None, data: Any,
                   seed: int, options: dict[str, Any], progress: bool) -> PruneResult:
    """Seeded random channels to the budget. Options as "l1"."""
    return _method("random-channel", model, model_name, budget, data, seed, options, progress)
