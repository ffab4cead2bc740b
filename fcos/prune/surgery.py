"""Shared model-editing helpers, written once for every pruning method.

A pruned model is the base builder's model plus an ``architecture`` record:

``{"removed_blocks": {dotted_name: replacement}, "resized": true}``

* ``removed_blocks`` maps a block's dotted name to what replaces it: ``"identity"``.
* ``resized`` means layers narrower than the base model's are to be re-created from the shapes
  found in the state dict (channel pruning and channel fusion only change widths, so the shapes
  are a complete description of the new widths).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError

REPLACEMENTS = {"identity": nn.Identity}


def get_submodule_parent(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """Return (parent module, attribute name) of the submodule at ``dotted``."""
    parent_name, _, child = dotted.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        parent.get_submodule(child)
    except AttributeError:
        raise CheckpointError(f"architecture names a module {dotted!r} that the model does not have") from None
    return parent, child


def replace_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    """Put ``new`` in place of the submodule at ``dotted`` (works inside nn.Sequential too)."""
    parent, child = get_submodule_parent(model, dotted)
    setattr(parent, child, new)


def resized_like(module: nn.Module, weight_shape: torch.Size) -> nn.Module:
    """A fresh layer of the same kind and hyper-parameters as ``module`` with new channel counts."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        out_ch, in_per_group = weight_shape[0], weight_shape[1]
        groups = module.groups
        return type(module)(in_per_group * groups, out_ch, module.kernel_size, stride=module.stride,
                            padding=module.padding, dilation=module.dilation, groups=groups,
                            bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, nn.Linear):
        return nn.Linear(weight_shape[1], weight_shape[0], bias=module.bias is not None)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(module)(weight_shape[0], eps=module.eps, momentum=module.momentum,
                            affine=module.affine, track_running_stats=module.track_running_stats)
    raise CheckpointError(f"cannot resize a {type(module).__name__}")


def resize_to_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Re-create every conv/linear/BN layer whose weight shape differs from ``state_dict``."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        key = f"{name}.weight" if name else "weight"
        if key not in state_dict:
            key = f"{name}.running_mean"
            if key not in state_dict:
                continue
        shape = state_dict[key].shape
        current = module.weight.shape if getattr(module, "weight", None) is not None else module.running_mean.shape
        if tuple(shape) != tuple(current):
            replace_module(model, name, resized_like(module, shape))
    return model


def apply_architecture(model: nn.Module, architecture: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Replay an architecture record on a freshly built base model (see module docstring)."""
    unknown = set(architecture) - {"removed_blocks", "resized", "history"}
    if unknown:
        raise CheckpointError(f"architecture record has unknown key(s) {sorted(unknown)}")
    for dotted, kind in (architecture.get("removed_blocks") or {}).items():
        if kind not in REPLACEMENTS:
            raise CheckpointError(f"architecture: block {dotted!r} replaced by unknown {kind!r}; "
                                  f"expected one of {sorted(REPLACEMENTS)}")
        replace_module(model, dotted, REPLACEMENTS[kind]())
    if architecture.get("resized"):
        resize_to_state_dict(model, state_dict)
    return model
