"""Pruning methods (FCOS stages, channel and layer baselines) and the shared surgery helpers.

Each method module registers itself with ``fcos.prune.base.register_method``; ``load_methods``
imports them all so the registry is complete.
"""

from __future__ import annotations

import importlib

from .base import METHODS, PruneResult, prune_model, register_method

#: Modules that register methods. A new method is one module added here.
METHOD_MODULES: tuple[str, ...] = ("fusion", "lacd", "layer", "channel", "reference")


def load_methods() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(f"{__name__}.{module}")


__all__ = ["METHODS", "PruneResult", "prune_model", "register_method", "load_methods", "METHOD_MODULES"]
