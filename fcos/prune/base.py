"""The one interface every pruner implements, and the registry of pruners.

A pruner takes a trained model plus a budget (and data when it needs it) and returns a smaller,
ordinary ``nn.Module`` together with the record needed to rebuild it and to explain it:

    result = prune_model("fcos-stage1", model, model_name="resnet56", budget=0.5, data=data, seed=0)
    result.model          # real narrower layers / removed blocks, trains and saves like the original
    result.architecture   # JSON-like surgery record: replayed by fcos.checkpoint.model_from_checkpoint
    result.record         # JSON-like account of what was done (per layer / block), for reports

A pruner that trains on the train split while pruning (network slimming's sparsity phase) puts
the number of epochs in ``record["training_epochs"]``: the pipeline counts them against the
pruner's recovery budget, so every pruner gets the same number of training epochs after the
base model.

``budget`` is the target reduction of MACs as a fraction in [0, 1) (0.5 = remove half the MACs),
measured with fcos.metrics.macs_and_params on the dataset's input length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from torch import nn

from ..errors import ConfigError


@dataclass
class PruneResult:
    model: nn.Module
    architecture: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


class Pruner(Protocol):
    def __call__(self, model: nn.Module, *, model_name: str, budget: float | None, data: Any,
                 seed: int, options: dict[str, Any], progress: bool) -> PruneResult: ...


PRUNERS: dict[str, Pruner] = {}
#: Per pruner, the compute options (fcos.prune.options.COMPUTE_OPTIONS) it takes: the pruners
#: that run the model on data. prune_model fills them from the run's device settings.
COMPUTE_KEYS: dict[str, tuple[str, ...]] = {}


def register_pruner(name: str, compute: tuple[str, ...] = ()) -> Callable[[Pruner], Pruner]:
    """Decorator: make ``fn`` available as pruner ``name``; ``compute``: the compute
    options it takes (device, mixed_precision, loader_workers), if it runs the model on data."""
    def decorator(fn: Pruner) -> Pruner:
        if name in PRUNERS:
            raise ValueError(f"pruner {name!r} registered twice")
        PRUNERS[name] = fn
        COMPUTE_KEYS[name] = tuple(compute)
        return fn
    return decorator


def require_budget(pruner: str, budget: float | None) -> float:
    """The budget of a pruner that cannot run without one (ConfigError when it is None)."""
    if budget is None:
        raise ConfigError(f"pruner {pruner} needs a budget (MAC reduction fraction in [0, 1))")
    return budget


def input_length(model: nn.Module, data: Any) -> int:
    """The input length a pruner works at: the prepared dataset's, else the model's own."""
    return int(getattr(data, "length", None) or model.length)


def check_budget(budget: float | None, key: str = "budget") -> float | None:
    if budget is None:
        return None
    if not isinstance(budget, (int, float)) or not 0 <= budget < 1:
        raise ConfigError(f"{key}={budget!r}: expected a MAC reduction fraction in [0, 1)")
    return float(budget)


def prune_model(pruner: str, model: nn.Module, *, model_name: str | None = None,
                budget: float | None = None, data: Any = None, seed: int = 0,
                options: dict[str, Any] | None = None, progress: bool = False,
                example_input: Any = None, blocks: list[str] | None = None,
                stem: str | None = None, device: str | None = None,
                mixed_precision: str | None = None, loader_workers: int | None = None) -> PruneResult:
    """Run pruner ``pruner`` (see ``PRUNERS``) on ``model``.

    ``model_name``: the registry name the model was built as. None: any network taking I/Q
    frames (B, 2, L); ``example_input`` (N, 2, L) (or ``data``) gives L, channel groups and
    LaCD's blocks/stem are found from its dataflow (fcos.prune.user_model; ``blocks`` and
    ``stem`` name them instead). The input model is never modified; a user network's pruned
    copy rebuilds with fcos.prune.user_model.load_pruned(builder(), architecture, state_dict).

    ``device``, ``mixed_precision``, ``loader_workers``: the run's device settings (those of
    training, fcos.device), given to every pruner that runs the model on data (LaCD and LCP
    probes, SR-init, slimming's sparsity training, Taylor gradients) as the options of those
    names that ``options`` does not set itself (an explicit pruner option wins); None leaves the
    pruner's default. Data-free pruners compute on the CPU and ignore them.
    """
    from . import load_pruners

    load_pruners()
    if pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {pruner!r}: expected one of {', '.join(sorted(PRUNERS))}")
    original = model
    run = {"device": device, "mixed_precision": mixed_precision, "loader_workers": loader_workers}
    options = {**{key: run[key] for key in COMPUTE_KEYS[pruner] if run[key] is not None}, **dict(options or {})}
    if model_name is None:
        from .user_model import prepared_user_model

        model = prepared_user_model(model, pruner=pruner, example_input=example_input,
                                    data=data, blocks=blocks, stem=stem)
    elif blocks is not None or stem is not None:
        raise ConfigError(f"blocks/stem are for models without a registry name; {model_name} "
                          f"declares its own")
    result = PRUNERS[pruner](model, model_name=model_name, budget=check_budget(budget), data=data,
                             seed=seed, options=options, progress=progress)
    if model_name is None:
        from .user_model import check_same_outputs

        check_same_outputs(original, result.model, model.length)
    return result
