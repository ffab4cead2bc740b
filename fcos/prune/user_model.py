"""A user's own network as a pruner's input: what a registry model declares by itself
(input length, blocks, stem), found from its dataflow instead, and rebuilding a pruned copy.

Every pruner reads ``model.length`` (the I/Q frame length), and LaCD and the layer baselines
``model.removable_blocks()`` and ``model.stem_name``. A registry model defines them; for any
other network :func:`prepared_user_model` sets them on the deep copy handed to the pruner
(so the returned pruned model has them too): the length from the example input (N, 2, L) or the
dataset, the blocks and stem from fcos.prune.dependency.stages or the caller's lists. Channel
groups come from fcos.prune.dependency.channels (``channel_groups(model, None)``).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .dependency.stages import ProbePoints, declared_probe_points, find_probe_points
from .modes import eval_mode, model_device

#: Pruners that probe or remove blocks (need blocks and a stem).
BLOCK_PRUNERS = ("lacd", "lcp", "sr-init", "random-layer")


class DeclaredBlocks:
    """``model.removable_blocks`` for a user's network: returns the block names found/given."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)

    def __call__(self) -> list[str]:
        return list(self.names)


def frame_length(example_input: Any, data: Any = None) -> int:
    """L of an example input (N, 2, L) (the datasets' I/Q frames), else of the dataset."""
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 3 \
                or example_input.shape[1] != 2 or example_input.shape[0] < 1:
            shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) \
                else type(example_input).__name__
            raise ConfigError(f"example_input: expected a tensor (N, 2, L) of I/Q frames, got "
                              f"{shape}")
        length = int(example_input.shape[2])
        if data is not None and int(getattr(data, "length", length)) != length:
            raise ConfigError(f"example_input has length {length}, the dataset {data.length}")
        return length
    if data is not None and getattr(data, "length", None):
        return int(data.length)
    raise ConfigError("prune_model: a model without a registry name needs example_input "
                      "(N, 2, L) or data")


def prepared_user_model(model: nn.Module, *, pruner: str, example_input: Any = None,
                        data: Any = None, blocks: Sequence[str] | None = None,
                        stem: str | None = None) -> nn.Module:
    """A deep copy of ``model`` with ``length``, ``removable_blocks`` and ``stem_name`` set
    where the model does not define them (see the module docstring). ``blocks``/``stem``
    override the blocks and stem found. Raises ConfigError for a bad example input, or when a
    block pruner (LaCD, layer baselines) finds no blocks or no stem."""
    length = frame_length(example_input, data)
    model = copy.deepcopy(model)
    own = getattr(model, "length", None)
    if own is None:
        model.length = length
    elif own != length:
        raise ConfigError(f"the model's length attribute is {own}, the input length {length}")
    if callable(getattr(type(model), "removable_blocks", None)) and blocks is None:
        return model
    points = (declared_probe_points(model, blocks, stem) if blocks is not None
              else find_probe_points(model, length))
    if stem is not None:
        points = declared_probe_points(model, points.blocks, stem)
    if pruner in BLOCK_PRUNERS:
        if not points.blocks:
            raise ConfigError(f"{pruner}: no residual blocks or sequential stages found in the "
                              f"model; pass blocks=[module names]")
        if points.stem is None and getattr(model, "stem_name", None) is None:
            raise ConfigError(f"{pruner}: the first block {points.blocks[0]!r} reads the input "
                              f"directly, no stem to probe; pass stem=<module name>")
    model.removable_blocks = DeclaredBlocks(points.blocks)
    if points.stem is not None:
        model.stem_name = points.stem
    return model


def check_same_outputs(original: nn.Module, pruned: nn.Module, length: int) -> None:
    """Refuse a pruned network whose output shape differs from the original's on frames of
    ``length`` (a forward hard-coding a width, e.g. ``view(-1, 512)``)."""
    frames = torch.zeros(2, 2, length)
    shapes = []
    for model in (original, pruned):
        with eval_mode(model), torch.no_grad():
            try:
                shapes.append(tuple(model(frames.to(model_device(model))).shape))
            except Exception as err:  # the pruned forward no longer runs
                raise ConfigError(f"the pruned model's forward fails ({type(err).__name__}: "
                                  f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                                  f"does the model hard-code a channel count?") from None
    if shapes[0] != shapes[1]:
        raise ConfigError(f"the pruned model outputs {shapes[1]}, the original {shapes[0]}; "
                          f"does the model hard-code a channel count (e.g. view(-1, N))?")


def load_pruned(model: nn.Module, architecture: Mapping, state_dict: Mapping[str, torch.Tensor]
                ) -> nn.Module:
    """Rebuild a pruned network: ``model`` freshly built by the user's builder, the pruning
    result's ``architecture`` record, its state dict. Returns ``model`` in eval mode."""
    from ..errors import CheckpointError
    from .surgery import apply_architecture

    model = apply_architecture(model, architecture, state_dict)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"state dict does not fit the architecture record ({first})") from None
    return model.eval()
