"""Checking a pruner's options: unknown keys and out-of-range values are refused with
one line naming the key and what was expected."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..errors import ConfigError


def check_options(pruner: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ConfigError naming the unknown keys of ``options``."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for pruner {pruner}; "
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


#: Options of the pruners that run the model on data (probes, gradients, training), with their
#: defaults: where and how they compute (fcos.device). ``prune_model(device=...,
#: mixed_precision=..., loader_workers=...)`` fills the ones a pruner takes and was not given.
COMPUTE_OPTIONS: dict[str, Any] = {"device": "auto", "mixed_precision": "off", "loader_workers": None}


def check_device(value: Any) -> torch.device:
    from ..device import resolve_device

    if not isinstance(value, str):
        raise ConfigError(f"device={value!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    return resolve_device(value, key="device")


def check_compute(options: Mapping[str, Any]) -> tuple[torch.device, str, int | None]:
    """(device, mixed-precision mode, loader threads) of a pruner's options (defaults:
    ``COMPUTE_OPTIONS``); ConfigError naming the option on a bad value."""
    from ..device import check_precision, check_workers

    values = {**COMPUTE_OPTIONS, **{k: v for k, v in options.items() if k in COMPUTE_OPTIONS}}
    return (check_device(values["device"]), check_precision(values["mixed_precision"], "mixed_precision"),
            check_workers(values["loader_workers"], "loader_workers"))
