"""The architecture record of a model handed to a pruner: given by the caller, or
inferred by comparing the model with a freshly built base model."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .blocks import replacement_kind_of
from .modes import eval_mode, model_device


def replaced_blocks(model: nn.Module) -> dict[str, str]:
    """{block name: replacement kind} of the removable blocks already replaced by a stand-in."""
    kinds = {name: replacement_kind_of(model.get_submodule(name)) for name in model.removable_blocks()}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def prior_architecture(model: nn.Module, model_name: str, num_classes: int, length: int) -> dict[str, Any]:
    """Infer the architecture record of ``model`` relative to the base builder's model.

    Blocks already replaced by a REPLACEMENTS stand-in go to ``removed_blocks``; any state
    tensor whose shape differs from the freshly built base model's sets ``resized``. Used when
    the caller does not pass the input model's record (option ``architecture``).
    """
    from ..models import build_model

    record: dict[str, Any] = {}
    removed = replaced_blocks(model)
    if removed:
        record["removed_blocks"] = removed
    with torch.random.fork_rng(devices=[]):  # building the reference must not move the caller's RNG
        base = build_model(model_name, num_classes, length)
    base_shapes = {key: tuple(value.shape) for key, value in base.state_dict().items()}
    if any(key in base_shapes and tuple(value.shape) != base_shapes[key]
           for key, value in model.state_dict().items()):
        record["resized"] = True
    return record

def user_architecture(model: nn.Module) -> dict[str, Any]:
    """The record of a user's network (no registry name): its blocks already replaced by a
    stand-in, and ``resized`` (harmless when nothing was narrowed: rebuilding then re-creates
    only layers whose state-dict shapes differ)."""
    removed = replaced_blocks(model)
    return {**({"removed_blocks": removed} if removed else {}), "resized": True}


def input_architecture(model: nn.Module, model_name: str, data, options: Mapping[str, Any]) -> dict:
    """The record of the model handed to a pruner: ``options["architecture"]`` when given,
    else inferred (see ``prior_architecture``)."""
    if options.get("architecture") is not None:
        return dict(options["architecture"])
    if model_name is None:  # a user's network: no base builder to compare with
        return user_architecture(model)
    length = int(getattr(data, "length", None) or model.length)
    num_classes = getattr(data, "num_classes", None) or _output_classes(model, length)
    return prior_architecture(model, model_name, int(num_classes), length)

def _output_classes(model: nn.Module, length: int) -> int:
    with eval_mode(model), torch.no_grad():
        return int(model(torch.zeros(1, 2, length, device=model_device(model))).shape[1])
