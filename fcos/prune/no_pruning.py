"""The pruning step that prunes nothing ("none"), so the base-ft control run gets the same fine-tuning.

Pruned models are fine-tuned after pruning; if the base model was not trained to convergence,
that extra training alone raises accuracy. The ``base-ft`` pipeline method (chains.yaml) runs
this no-op step and the same recovery fine-tuning, giving the accuracy a pruned model must be
compared with under an equal training budget.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import PruneResult, register_pruner


@register_pruner("none")
def no_pruning(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
               options: dict[str, Any], progress: bool) -> PruneResult:
    """Return an unchanged copy of ``model`` (and an empty architecture change)."""
    if options:
        raise ConfigError(f"pruner none takes no options, got {', '.join(sorted(options))}")
    if budget not in (None, 0.0):
        raise ConfigError(f"pruner none removes nothing; budget={budget} cannot be met")
    return PruneResult(copy.deepcopy(model), {}, {"note": "no pruning (control for the fine-tuning budget)"})
