"""Pruning methods (FCOS stages, channel and layer baselines) and the shared surgery helpers.

Each method module registers itself with ``fcos.prune.base.register_method``; ``load_methods``
imports them all so the registry is complete. The names below are imported lazily, so that
``fcos.prune.chains`` (read by the Snakemake workflow when it parses) does not import torch.
"""

from __future__ import annotations

import importlib

#: Modules that register methods. A new method is one module added here.
METHOD_MODULES: tuple[str, ...] = ("fusion", "lacd", "layer", "channel", "no_pruning")
_FROM_BASE = ("METHODS", "PruneResult", "prune_model", "register_method")


def load_methods() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(f"{__name__}.{module}")


def __getattr__(name: str):
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":  # a submodule's own missing import: not ours to hide
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "PruneResult", "prune_model", "register_method", "load_methods", "METHOD_MODULES"]
