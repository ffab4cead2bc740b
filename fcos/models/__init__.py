"""Model registry: config names -> builders of plain ``nn.Module`` classifiers.

Every model takes float32 input (B, 2, L) and returns logits (B, num_classes), derives channel
counts from module/tensor shapes at run time (so narrower replacement layers still work), and
offers ``removable_blocks()`` (dotted block names in depth order) and ``stem_name``.
A builder is called as ``builder(num_classes, length, **options)``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError
from .cnn1d import CNN1D, cnn1d
from .resnet56 import ResNet56, resnet56
from .signet50 import SigNet50, signet50

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet56": resnet56,
    "cnn1d": cnn1d,
    "signet50": signet50,
}

__all__ = ["MODELS", "build_model", "model_names", "ResNet56", "CNN1D", "SigNet50",
           "resnet56", "cnn1d", "signet50"]


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def _positive_int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def build_model(name: str, num_classes: int, length: int, **options: Any) -> nn.Module:
    """Build model ``name`` for inputs (B, 2, length) and ``num_classes`` outputs.

    ``options`` go to the builder (e.g. ``detach_shortcut`` for resnet56). Raises ConfigError
    for an unknown name, an unknown option, num_classes < 2 or a length the model cannot take.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")
    num_classes = _positive_int(num_classes, "num_classes", 2)
    length = _positive_int(length, "length", 1)
    builder = MODELS[name]
    known = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "length")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for model {name}; "
                          f"valid options: {', '.join(known) or 'none'}")
    return builder(num_classes, length, **options)
