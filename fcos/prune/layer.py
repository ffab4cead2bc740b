"""Layer-pruning baselines: remove whole blocks to a MAC budget, blocks ranked three ways.

All three share LaCD's machinery: which blocks are removable and what replaces them
(``fcos.prune.blocks``), the linear probes (``fcos.prune.probes.diagnose_collapse``)
and the budgeted selection (``prune_ranked_to_budget``: by default the exact search over all
subsets of removable blocks of ``fcos.prune.block_selection``, which lands on the budget within
1 point when any subset does and spares the blocks the ranking puts last; the achieved reduction,
its gap to the target and an off-target flag are in the record, since block granularity can make
a budget reachable only approximately).

- "lcp" (linear classifier probes; Chen & Zhao, "Shallowing deep networks", TPAMI 2019): probe
  every block like LaCD, rank by the probe accuracy's rise over the *previous* point
  (``step_gain``), remove the blocks with the smallest rise. LaCD ranks by the gain over the
  best earlier point instead (its collapse criterion); the two differ after an accuracy dip.
- "sr-init" (Tang et al., ICASSP 2023): re-initialise one removable block at a time (its
  modules' ``reset_parameters``: PyTorch's default initialisation, BatchNorm running statistics
  reset too; seeded per block), measure the validation-accuracy drop on a seeded subset
  (option ``val_samples``), restore the block; remove the blocks whose re-initialisation hurts
  least.
- "random-layer": a seeded random order of the removable blocks.

Every pruner needs a budget (a MAC-reduction fraction); the input model is not modified.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import merge_architecture
from ..errors import ConfigError
from .architecture import input_architecture
from .base import PruneResult, input_length, register_pruner, require_budget
from .options import COMPUTE_OPTIONS, check_compute, check_options
from .block_selection import REMOVAL_OPTIONS, prune_ranked_to_budget, rank_by_score
from .blocks import inspect_blocks
from .modes import preserved_modes
from .probes import DIAGNOSE_OPTIONS, diagnose_collapse

#: Validation examples SR-init evaluates each re-initialised model on (seeded subset).
DEFAULT_SR_INIT_VAL_SAMPLES = 2000


def _prune_by_ranking(pruner: str, model: nn.Module, ranking: Sequence[str], scores: dict[str, float] | None,
                      *, model_name: str, budget: float, data: Any, options: dict[str, Any],
                      extra: dict[str, Any], tic: float) -> PruneResult:
    """Common tail of the baselines: remove blocks of ``ranking`` to the budget, build the record."""
    previous = input_architecture(model, model_name, data, options)
    model, removal, summary = prune_ranked_to_budget(
        model, ranking, length=input_length(model, data), budget=budget,
        rule=options.get("budget_rule", "exact"), reference_macs=options.get("reference_macs"))
    record = {"pruner": pruner,
              "ranking": [{"name": name, "score": None if scores is None else scores[name]} for name in ranking],
              "selection": summary, **extra, "time_s": time.perf_counter() - tic}
    return PruneResult(model, merge_architecture(previous, removal), record=record)


def removable_names(model: nn.Module, length: int) -> list[str]:
    """Removable blocks of ``model`` in depth order (see ``fcos.prune.blocks.inspect_blocks``)."""
    return [info.name for info in inspect_blocks(model, length) if info.removable]


# --------------------------------------------------------------------------------------- LCP


@register_pruner("lcp", compute=tuple(COMPUTE_OPTIONS))
def lcp(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
        options: dict[str, Any], progress: bool) -> PruneResult:
    """Linear classifier probes: remove the blocks whose probe accuracy rises least.

    Options: those of ``diagnose_collapse`` (pooling, max_train, ...) and budget_rule,
    reference_macs, architecture. ``record["probe_report"]`` is the full probe report.
    """
    tic = time.perf_counter()
    check_options("lcp", options, DIAGNOSE_OPTIONS + REMOVAL_OPTIONS)
    budget = require_budget("lcp", budget)
    if data is None:
        raise ConfigError("pruner lcp needs the prepared dataset (probes train on it)")
    model = copy.deepcopy(model)
    report = diagnose_collapse(model, data, seed=seed, progress=progress,
                               **{k: options[k] for k in DIAGNOSE_OPTIONS if k in options})
    ranking = rank_by_score(report, "step_gain")
    scores = {p["name"]: p["step_gain"] for p in report["points"] if p["name"] in ranking}
    return _prune_by_ranking("lcp", model, ranking, scores, model_name=model_name, budget=budget, data=data,
                             options=options, extra={"score": "probe accuracy step gain",
                                                     "probe_report": report}, tic=tic)


# ------------------------------------------------------------------------------------ SR-init


def _block_seed(seed: int, index: int) -> int:
    """A torch seed for block ``index`` under run ``seed`` (independent streams per block)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def reinitialise(block: nn.Module) -> None:
    """Re-draw every parameter of ``block`` with its modules' default initialisation."""
    for module in block.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def reinitialisation_drops(model: nn.Module, blocks: Sequence[str], x: np.ndarray, y: np.ndarray, *,
                           seed: int, batch_size: int, device: torch.device,
                           loader_workers: int | None = None,
                           progress: bool = False) -> tuple[float, dict[str, float]]:
    """Accuracy on (x (N, 2, L), y (N,)) of ``model``, and its drop when each block in turn is
    re-initialised (seeded per block, then restored), measured on ``device`` in float32 like an
    evaluation (batches read ahead by ``loader_workers`` threads). The model ends as it started."""
    from ..train import accuracy

    original_device = next(model.parameters()).device
    try:
        with preserved_modes(model.to(device)):
            base = accuracy(model, x, y, batch_size, device, loader_workers)
            drops = {}
            for index, name in enumerate(tqdm(blocks, desc="SR-init", disable=not progress, leave=False)):
                block = model.get_submodule(name)
                saved = copy.deepcopy(block.state_dict())
                with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is not consumed
                    torch.manual_seed(_block_seed(seed, index))
                    reinitialise(block)
                drops[name] = base - accuracy(model, x, y, batch_size, device, loader_workers)
                block.load_state_dict(saved)
    finally:
        model.to(original_device)
    return base, drops


#: The compute options of SR-init: float32 accuracy, so no mixed precision.
SR_INIT_COMPUTE = ("device", "loader_workers")


@register_pruner("sr-init", compute=SR_INIT_COMPUTE)
def sr_init(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
            options: dict[str, Any], progress: bool) -> PruneResult:
    """SR-init: remove the blocks whose re-initialisation costs the least validation accuracy.

    Options: val_samples (default 2000; None = the whole val split), batch_size, device ("auto"),
    loader_workers (None: automatic), and budget_rule, reference_macs, architecture. Accuracy is
    measured in float32, like an evaluation (no mixed precision).
    """
    tic = time.perf_counter()
    check_options("sr-init", options, SR_INIT_COMPUTE + ("val_samples", "batch_size") + REMOVAL_OPTIONS)
    device, _, workers = check_compute(options)
    budget = require_budget("sr-init", budget)
    if data is None:
        raise ConfigError("pruner sr-init needs the prepared dataset (it measures val accuracy)")
    model = copy.deepcopy(model)
    x, y, _ = data.split("val")
    cap = options.get("val_samples", DEFAULT_SR_INIT_VAL_SAMPLES)
    if cap is not None and cap < len(y):
        if cap < 1:
            raise ConfigError(f"sr-init: val_samples={cap!r}: expected an integer >= 1 or None")
        rows = np.sort(np.random.default_rng(seed).choice(len(y), size=int(cap), replace=False))
        x, y = x[rows], y[rows]
    blocks = removable_names(model, input_length(model, data))
    base, drops = reinitialisation_drops(model, blocks, x, y, seed=seed,
                                         batch_size=int(options.get("batch_size", 512)),
                                         device=device, loader_workers=workers, progress=progress)
    ranking = sorted(blocks, key=lambda name: drops[name])  # stable: ties keep depth order
    return _prune_by_ranking("sr-init", model, ranking, drops, model_name=model_name, budget=budget,
                             data=data, options=options,
                             extra={"score": "val accuracy drop when re-initialised",
                                    "base_accuracy": base, "val_samples": int(len(y))}, tic=tic)


# ------------------------------------------------------------------------------- random layer


@register_pruner("random-layer")
def random_layer(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
                 options: dict[str, Any], progress: bool) -> PruneResult:
    """Remove removable blocks in a seeded random order to the budget.

    Options: budget_rule, reference_macs, architecture. ``data`` is optional (only its length).
    """
    tic = time.perf_counter()
    check_options("random-layer", options, REMOVAL_OPTIONS)
    budget = require_budget("random-layer", budget)
    model = copy.deepcopy(model)
    blocks = removable_names(model, input_length(model, data))
    order = np.random.default_rng(seed).permutation(len(blocks))
    ranking = [blocks[i] for i in order]
    return _prune_by_ranking("random-layer", model, ranking, None, model_name=model_name, budget=budget,
                             data=data, options=options, extra={"score": "seeded random order"}, tic=tic)
