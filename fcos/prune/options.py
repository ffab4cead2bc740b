"""Checking a pruning method's options: unknown keys and out-of-range values are refused with
one line naming the key and what was expected."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..errors import ConfigError


def check_options(method: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ConfigError naming the unknown keys of ``options``."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for pruning method {method}; "
                          f"valid options: {', '.join(known) or 'none'}")


def check_integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return int(value)


def check_number(key: str, value: Any, *, positive: bool) -> float:
    bad = (isinstance(value, bool) or not isinstance(value, numbers.Real)
           or not math.isfinite(value) or value < 0 or (positive and value == 0))
    if bad:
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{key}={value!r}: expected a finite number {bound}")
    return float(value)


def check_device(value: Any) -> torch.device:
    from ..train import resolve_device

    if not isinstance(value, str):
        raise ConfigError(f"device={value!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    return resolve_device(value)
