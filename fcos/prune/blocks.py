"""Blocks of a model: which can be removed, what takes their place, and their removal.

Shared by LaCD (FCOS stage 2) and the layer-pruning baselines. The blocks are
``model.removable_blocks()`` (depth order).

Which blocks can be removed, and what takes their place (``inspect_blocks``)
    - a block whose output shape equals its input shape becomes ``nn.Identity`` ("identity"):
      ResNet56's 25 non-stage-opening basic blocks (``layer1.0`` included: 16 -> 16, stride 1)
      and SigNet50's 12 non-stage-opening bottlenecks. Decided from shapes, so it still holds
      after channel pruning/fusion (a stage shares one width along its residual stream);
    - every CNN1D residual stack (all six) is reduced to what it is when its two residual units
      add zero: its own trained 1x1 entry conv, ReLU, and its max-pool by 2
      (``surgery.StackProjection``, "stack-projection1d"/"stack-projection2d"). Every CNN1D
      stack halves the length and may change the width (stage-1 fusion gives each stack its own
      width), so neither an identity nor a bare pool fits; this bridge keeps the stack's width
      change and downsampling with weights already trained (32 x 32 = 1,024 parameters and about
      8% of a 1-D stack's MACs), and the time length reaching the flatten + ``dense`` layer stays
      L/64, so the trained dense weights stay valid. (The authors instead inserted an adaptive
      pooling before the dense layer, which changes what the dense layer sees.) A stack whose
      residual units add zero (second conv of each unit zero) computes exactly this;
    - every other block changes width or resolution and is kept (never removed): ResNet56's
      ``layer2.0`` / ``layer3.0`` and SigNet50's four stage-opening bottlenecks. Keeping them is
      the authors-compatible, parameter-free choice (their parameter-free ResNet56 shortcut has
      no trained projection to keep, and a new one would start untrained). Kept blocks are still
      probed and may be reported as collapsed (``collapsed_kept``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..metrics import macs_and_params
from . import surgery
from .modes import eval_mode, model_device

IDENTITY = "identity"

#: Replacement kinds of a removed CNN1D residual stack (1-D stacks, and the 2-D first one).
STACK_PROJECTION = {False: "stack-projection1d", True: "stack-projection2d"}


@dataclass(frozen=True)
class BlockInfo:
    """What removal means for one block of ``model.removable_blocks()``.

    Attributes:
        name: dotted module name.
        input_shape, output_shape: shapes for one example, e.g. (1, 16, 2, 128).
        replacement: the ``surgery.REPLACEMENTS`` kind removal puts in its place, or None when
            the block changes width/resolution and is kept.
        reason: one line saying why it is kept or how it is removed.
        macs, params: the block's cost for one example (the one MAC counter); for a block
            removed earlier, the cost of its stand-in.
        saved_macs, saved_params: what removing it saves (its cost minus its stand-in's); 0 when
            it is kept or removed already.
        removed: True when an earlier removal already replaced it.
    """

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    replacement: str | None
    reason: str
    macs: int
    params: int
    saved_macs: int
    saved_params: int
    removed: bool

    @property
    def removable(self) -> bool:
        return self.replacement is not None and not self.removed

def replacement_for(block: nn.Module, input_shape: Sequence[int],
                    output_shape: Sequence[int]) -> tuple[str | None, str]:
    """(replacement kind or None, reason) for ``block`` mapping ``input_shape`` to ``output_shape``
    (the rules of the module docstring)."""
    from ..models.cnn1d import ResidualStack

    shapes = f"{tuple(input_shape)[1:]} -> {tuple(output_shape)[1:]}"
    if isinstance(block, ResidualStack):
        return (STACK_PROJECTION[block.planar],
                f"CNN1D stack {shapes}: reduced to its 1x1 entry conv, ReLU and max-pool")
    if tuple(input_shape) == tuple(output_shape):
        return IDENTITY, f"same shape {shapes}: replaced by the identity"
    return None, f"changes shape {shapes}: kept"

def _new_replacement(kind: str) -> nn.Module:
    # A factory may initialise weights (StackProjection's conv); that must not move the caller's
    # RNG stream, so that pruning leaves seeded fine-tuning unchanged.
    with torch.random.fork_rng(devices=[]):
        return surgery.REPLACEMENTS[kind]()

def stand_in_for(block: nn.Module, kind: str) -> nn.Module:
    """The module that takes ``block``'s place when it is removed as ``kind``."""
    stand_in = _new_replacement(kind)
    if isinstance(stand_in, surgery.StackProjection):
        stand_in.conv = copy.deepcopy(block.conv1)  # trained weights at the stack's own widths
    return stand_in.train(block.training)

def replacement_kind_of(module: nn.Module) -> str | None:
    """The REPLACEMENTS kind ``module`` is an instance of (an already removed block), else None."""
    for kind in surgery.REPLACEMENTS:
        probe = _new_replacement(kind)
        if type(module) is type(probe) and module.extra_repr() == probe.extra_repr():
            return kind
    return None

def shapes_at(model: nn.Module, names: Sequence[str], length: int) -> dict[str, tuple[tuple, tuple]]:
    """{name: (input shape, output shape)} for one zero input (1, 2, length); eval mode, no grad."""
    shapes: dict[str, tuple[tuple, tuple]] = {}

    def make_hook(name):
        def hook(module, inputs, output):
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
        return hook

    handles = [model.get_submodule(name).register_forward_hook(make_hook(name)) for name in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 2, length, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


class _FixedInput(nn.Module):
    """Runs ``block`` on a zero tensor of ``shape`` whatever it is given: lets the one MAC counter
    (which feeds a (1, channels, length) input) cost a block that expects another shape."""

    def __init__(self, block: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.block = block
        self.shape = shape

    def forward(self, ignored: torch.Tensor) -> torch.Tensor:
        return self.block(torch.zeros(self.shape, device=ignored.device, dtype=ignored.dtype))

def block_cost(block: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(MACs, params) of ``block`` for one input of ``input_shape``, by fcos.metrics' counter."""
    return macs_and_params(_FixedInput(block, input_shape), length=1, channels=1)

def inspect_blocks(model: nn.Module, length: int | None = None) -> list[BlockInfo]:
    """Describe every block of ``model.removable_blocks()`` (depth order): shapes, cost, and
    whether and how it can be removed (see the module docstring). ``length`` defaults to
    ``model.length``."""
    length = int(length if length is not None else model.length)
    names = list(model.removable_blocks())
    shapes = shapes_at(model, names, length)
    infos = []
    for name in names:
        module = model.get_submodule(name)
        in_shape, out_shape = shapes[name]
        macs, params = block_cost(module, in_shape)
        removed_kind = replacement_kind_of(module)
        if removed_kind is not None:
            infos.append(BlockInfo(name, in_shape, out_shape, removed_kind, "removed earlier",
                                   macs, params, 0, 0, True))
            continue
        kind, reason = replacement_for(module, in_shape, out_shape)
        saved_macs, saved_params = 0, 0
        if kind is not None:
            stand_in_macs, stand_in_params = block_cost(stand_in_for(module, kind), in_shape)
            saved_macs, saved_params = macs - stand_in_macs, params - stand_in_params
        infos.append(BlockInfo(name, in_shape, out_shape, kind, reason, macs, params,
                               saved_macs, saved_params, False))
    return infos

def remove_blocks(model: nn.Module, blocks: Iterable[str], *, length: int | None = None) -> tuple[nn.Module, dict]:
    """Replace ``blocks`` of ``model`` in place by their stand-ins (see ``inspect_blocks``).

    Returns ``(model, {"removed_blocks": {name: kind}})``; the record is what
    ``fcos.prune.surgery.apply_architecture`` replays, so ``model_from_checkpoint`` rebuilds the
    model from it and the state dict. Raises ConfigError for a name that is not a removable
    block (unknown, shape-changing, or removed already).
    """
    blocks = list(dict.fromkeys(blocks))
    if not blocks:
        return model, {"removed_blocks": {}}
    infos = {info.name: info for info in inspect_blocks(model, length)}
    removed = {}
    for name in blocks:
        info = infos.get(name)
        if info is None:
            raise ConfigError(f"remove_blocks: {name!r} is not a block of this model; "
                              f"blocks: {', '.join(infos)}")
        if not info.removable:
            raise ConfigError(f"remove_blocks: block {name!r} cannot be removed ({info.reason})")
        removed[name] = info.replacement
    for name, kind in removed.items():
        surgery.replace_module(model, name, stand_in_for(model.get_submodule(name), kind))
    return model, {"removed_blocks": removed}
