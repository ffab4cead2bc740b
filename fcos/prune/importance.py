"""Channel importance criteria of the channel-pruning baselines: one class per criterion behind
one interface (:class:`Criterion`); a new criterion is one class added to ``CRITERIA``.

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

Importance of a group's channel
    Each learned producer (conv/linear writing the channels, with its BatchNorm) gives one
    score per channel; each producer's scores are divided by their mean (so every producer
    weighs the same whatever its fan-in or scale; an all-zero producer contributes zeros) and
    the group importance is the mean over producers, so every group's importance has mean 1.
    Channel maps (ResNet56's shortcut) hold no learned weights and are not scored; the surgery
    still selects their rows and columns. The classifier's outputs are never a group.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..batches import batches
from ..device import autocast, effective_precision, loader_settings
from ..errors import ConfigError
from .groups import ChannelGroup
from .modes import eval_mode
from .options import COMPUTE_OPTIONS, check_compute, check_integer, check_number
from .sparsity import BATCH_NORM, sparsity_training, train_tensors


@dataclass(frozen=True)
class ScoringContext:
    """What a criterion may use besides the model.

    ``data``: the prepared dataset (``split("train")`` -> x (N, 2, L), y (N,)) or None;
    ``options``: the pruner's options, checked, defaults filled in; ``length``: input length.
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


def per_producer(model: nn.Module, groups: Sequence[ChannelGroup], score) -> dict[str, list[np.ndarray]]:
    """{group name: [score(module, norm) for each learned producer]}, the shape every criterion
    returns."""
    return {group.name: [np.asarray(score(module, norm))
                         for _, module, norm in learned_producers(model, group)]
            for group in groups}


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
        return per_producer(model, groups, lambda module, _: _rows(module).abs().sum(dim=1).numpy())


class GeometricMedian(Criterion):
    name = "fpgm"
    description = ("summed Euclidean distance of each filter to the other filters of its layer "
                   "(FPGM, He et al. 2019): near the geometric median = redundant")

    def producer_scores(self, model, groups, context):
        def distance_sum(module, _):
            rows = _rows(module)
            return torch.cdist(rows, rows).sum(dim=1).numpy()

        return per_producer(model, groups, distance_sum)


class BatchNormScale(Criterion):
    name = "slimming"
    description = ("|BatchNorm gamma| after L1 sparsity training of all gammas (network "
                   "slimming, Liu et al. 2017)")
    #: Sparsity phase: a short fine-tuning of the trained model (the paper sparsity-trains
    #: from scratch; the pipeline's recovery fine-tuning follows anyway). lambda 1e-4 is the
    #: paper's VGG/CIFAR value and the project's L1 coefficient; Adam at the training lr.
    options = {"sparsity_epochs": 5, "sparsity_lambda": 1e-4, "lr": 1e-3, "batch_size": 128,
               "max_batches": None, **COMPUTE_OPTIONS}

    def check(self, model, groups, options, data, model_name):
        if not any(isinstance(m, BATCH_NORM) for m in model.modules()):
            raise ConfigError(f"pruner slimming ranks channels by BatchNorm scales, and "
                              f"{model_name} has no BatchNorm layers; use l1, fpgm, taylor or "
                              f"random-channel")
        for group in groups:
            for producer, _, norm in learned_producers(model, group):
                if norm is None or not norm.affine:
                    raise ConfigError(f"pruner slimming: {producer.module} (channel group "
                                      f"{group.name}) has no affine BatchNorm after it")
        check_integer("sparsity_epochs", options["sparsity_epochs"], 0)
        check_number("sparsity_lambda", options["sparsity_lambda"], positive=False)
        check_number("lr", options["lr"], positive=True)
        check_integer("batch_size", options["batch_size"], 1)
        if options["max_batches"] is not None:
            check_integer("max_batches", options["max_batches"], 1)
        check_compute(options)
        if options["sparsity_epochs"] > 0 and data is None:
            raise ConfigError("pruner slimming needs the prepared dataset for its sparsity "
                              "training (or sparsity_epochs=0)")

    def prepare(self, model, groups, context):
        options = context.options
        gamma_l1 = float(sum(m.weight.detach().abs().sum() for m in model.modules()
                             if isinstance(m, BATCH_NORM) and m.affine))
        if options["sparsity_epochs"] == 0:
            return {"gamma_l1_before": gamma_l1, "sparsity_training": None}
        device, precision, workers = check_compute(options)
        history = sparsity_training(
            model, context.data, epochs=options["sparsity_epochs"],
            penalty=options["sparsity_lambda"], lr=options["lr"], batch_size=options["batch_size"],
            max_batches=options["max_batches"], seed=context.seed, device=device,
            mixed_precision=precision, loader_workers=workers, progress=context.progress)
        return {"gamma_l1_before": gamma_l1, "sparsity_training": history}

    def producer_scores(self, model, groups, context):
        return per_producer(model, groups,
                            lambda _, norm: norm.weight.detach().double().abs().cpu().numpy())


class FirstOrderTaylor(Criterion):
    name = "taylor"
    description = ("first-order Taylor (Molchanov et al. 2019): mean over mini-batches of "
                   "(sum of weight x gradient of the channel's last affine parameters)^2")
    options = {"num_batches": 16, "batch_size": 128, **COMPUTE_OPTIONS}

    def check(self, model, groups, options, data, model_name):
        check_integer("num_batches", options["num_batches"], 1)
        check_integer("batch_size", options["batch_size"], 1)
        check_compute(options)
        if data is None:
            raise ConfigError("pruner taylor needs the prepared dataset (it takes "
                              "gradients on training batches)")

    def producer_scores(self, model, groups, context):
        options = context.options
        device, precision, workers = check_compute(options)
        return taylor_scores(model, groups, context.data, num_batches=options["num_batches"],
                             batch_size=options["batch_size"], seed=context.seed, device=device,
                             mixed_precision=precision, loader_workers=workers,
                             progress=context.progress)


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


def _taylor_contribution(module: nn.Module, norm: nn.Module | None) -> torch.Tensor:
    """sum(w * dL/dw) per output channel over the last affine parameters on it; float64 (C,)."""
    if norm is not None:
        return (norm.weight * norm.weight.grad + norm.bias * norm.bias.grad).detach().double()
    weight = module.weight
    total = (weight * weight.grad).detach().double().reshape(weight.shape[0], -1).sum(dim=1)
    if module.bias is not None:
        total = total + (module.bias * module.bias.grad).detach().double()
    return total


#: First loss scale of Taylor's fp16 backward passes (halved until the gradients are finite).
FP16_TAYLOR_LOSS_SCALE = 2.0 ** 16


def taylor_scores(model: nn.Module, groups: Sequence[ChannelGroup], data: Any, *,
                  num_batches: int, batch_size: int, seed: int, device: torch.device,
                  mixed_precision: str = "off", loader_workers: int | None = None,
                  progress: bool = False) -> dict[str, list[np.ndarray]]:
    """Per group, per learned producer: mean over mini-batches of the squared per-batch
    first-order Taylor contribution of each channel (see the module docstring).

    Batches: ``num_batches`` x ``batch_size`` training examples in a seeded random order
    (fewer when the split is smaller), read ahead by ``loader_workers`` threads on ``device``.
    Eval mode; gradients are computed for every parameter and cleared afterwards; the model's
    weights, flags and device are left as they were. On CUDA the forward pass may run in
    ``mixed_precision`` (the loss and the parameters' gradients stay float32); with "fp16" the
    loss is scaled for the backward pass (from FP16_TAYLOR_LOSS_SCALE, halved while a gradient
    overflows) and the contributions unscaled, so small gradients do not underflow. On a CPU
    it runs in float32.
    """
    xs, ys = train_tensors(data)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(ys)))
    order = order[:num_batches * batch_size]
    steps = math.ceil(len(order) / batch_size)
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    original = parameters[0].device
    precision = effective_precision(device, mixed_precision)
    workers, pin = loader_settings(device, loader_workers)
    sums = {group.name: [torch.zeros(group.channels, dtype=torch.float64)
                         for _ in learned_producers(model, group)] for group in groups}
    try:
        with eval_mode(model.to(device)):
            for p in parameters:
                p.requires_grad_(True)
            stream = batches(xs, ys, batch_size, device, order=order, workers=workers, pin_memory=pin)
            for xb, yb in tqdm(stream, total=steps, desc="taylor", disable=not progress, leave=False):
                scale = _taylor_backward(model, parameters, xb, yb, device, precision)
                for group in groups:
                    for index, (_, module, norm) in enumerate(learned_producers(model, group)):
                        contribution = _taylor_contribution(module, norm)
                        if scale != 1.0:
                            contribution = contribution / scale
                        sums[group.name][index] += contribution.cpu() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)
        model.to(original)
    return {name: [(total / steps).numpy() for total in totals] for name, totals in sums.items()}


def _taylor_backward(model: nn.Module, parameters: Sequence[nn.Parameter], xb: torch.Tensor,
                     yb: torch.Tensor, device: torch.device, precision: str) -> float:
    """Gradients of the batch's mean cross-entropy in every parameter's ``.grad``; returns the
    loss scale they carry (1.0 except for fp16, see ``taylor_scores``)."""
    scale = FP16_TAYLOR_LOSS_SCALE if precision == "fp16" else 1.0
    while True:
        model.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        (loss if scale == 1.0 else loss * scale).backward()
        if scale == 1.0 or all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None):
            return scale
        scale = max(1.0, scale / 2)
