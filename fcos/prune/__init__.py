"""Pruners (FCOS stages, channel and layer baselines) and the shared surgery helpers.

Each pruner module registers itself with ``fcos.prune.base.register_pruner``; ``load_pruners``
imports them all so the registry is complete. The names below are imported lazily, so that
``fcos.prune.chains`` (read by the Snakemake workflow when it parses) does not import torch.
"""

from __future__ import annotations

import importlib

#: Modules that register pruners. A new pruner is one module added here.
PRUNER_MODULES: tuple[str, ...] = ("fusion", "lacd", "layer", "channel", "no_pruning")
_FROM_BASE = ("PRUNERS", "PruneResult", "prune_model", "register_pruner")


def load_pruners() -> None:
    for module in PRUNER_MODULES:
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


__all__ = ["PRUNERS", "PruneResult", "prune_model", "register_pruner", "load_pruners", "PRUNER_MODULES"]
