"""Channel-pruning baselines as registered pruners: L1-norm, FPGM, network slimming,
first-order Taylor and random channels, each one importance criterion
(fcos.prune.importance) pruned to a MAC budget by fcos.prune.channel_selection. Every pruner
requires a budget; the input model is not modified.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import PruneResult, register_pruner
from .channel_selection import prune_channels
from .importance import CRITERIA
from .options import COMPUTE_OPTIONS


def _method(name: str, model: nn.Module, model_name: str, budget: float | None, data: Any,
            seed: int, options: dict[str, Any], progress: bool) -> PruneResult:
    return prune_channels(model, model_name, CRITERIA[name], budget=budget, data=data, seed=seed,
                          options=options, progress=progress)


@register_pruner("l1")
def l1(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
       options: dict[str, Any], progress: bool) -> PruneResult:
    """L1-norm filter pruning to the budget. Options: allocation, stream, min_channels; data
    optional (input length only)."""
    return _method("l1", model, model_name, budget, data, seed, options, progress)


@register_pruner("fpgm")
def fpgm(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
         options: dict[str, Any], progress: bool) -> PruneResult:
    """Filter pruning via geometric median to the budget. Options as "l1"."""
    return _method("fpgm", model, model_name, budget, data, seed, options, progress)


@register_pruner("slimming", compute=tuple(COMPUTE_OPTIONS))
def slimming(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
             options: dict[str, Any], progress: bool) -> PruneResult:
    """Network slimming to the budget: sparsity training, then BatchNorm-scale ranking.
    Options: allocation, stream, min_channels, sparsity_epochs, sparsity_lambda, lr, batch_size,
    max_batches, device, mixed_precision, loader_workers."""
    return _method("slimming", model, model_name, budget, data, seed, options, progress)


@register_pruner("taylor", compute=tuple(COMPUTE_OPTIONS))
def taylor(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
           options: dict[str, Any], progress: bool) -> PruneResult:
    """First-order Taylor pruning to the budget. Options: allocation, stream, min_channels,
    num_batches, batch_size, device, mixed_precision, loader_workers."""
    return _method("taylor", model, model_name, budget, data, seed, options, progress)


@register_pruner("random-channel")
def random_channel(model: nn.Module, *, model_name: str, budget: float | None, data: Any,
                   seed: int, options: dict[str, Any], progress: bool) -> PruneResult:
    """Seeded random channels to the budget. Options as "l1"."""
    return _method("random-channel", model, model_name, budget, data, seed, options, progress)
