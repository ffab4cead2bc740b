"""Running a model in a temporary mode without disturbing the caller's: every module's
train/eval flag restored afterwards, and the device a model lives on."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Yield ``model``; afterwards every module's ``training`` flag is what it was before, even
    where the block switched modes (``model.eval()``) or some modules differed from others."""
    modes = {module: module.training for module in model.modules()}
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, every module's flag restored afterwards."""
    with preserved_modes(model):
        yield model.eval()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
