"""FCOS stage 2, LaCD (Layer Collapse Diagnosis): find the blocks that add no linearly
decodable information (``fcos.prune.probes``) and remove them (``fcos.prune.blocks``).

Modes of the "lacd" pruner:

- epsilon mode (budget None): remove every removable collapsed block;
- ``num_blocks=k``: remove the k removable blocks of lowest gain;
- MAC budget (budget float): remove the lowest-gain blocks to that reduction with the exact
  subset search of ``fcos.prune.block_selection``.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ..checkpoint import merge_architecture
from ..errors import ConfigError
from .architecture import input_architecture
from .base import PruneResult, register_pruner
from .options import COMPUTE_OPTIONS, check_options
from .block_selection import REMOVAL_OPTIONS, lowest_gain_blocks, prune_ranked_to_budget, rank_by_score, \
    remove_and_summarise
from .probes import DIAGNOSE_OPTIONS, diagnose_collapse

#: Every option of the "lacd" pruner.
LACD_OPTIONS = DIAGNOSE_OPTIONS + REMOVAL_OPTIONS + ("num_blocks",)


@register_pruner("lacd", compute=tuple(COMPUTE_OPTIONS))
def lacd(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
         options: dict[str, Any], progress: bool) -> PruneResult:
    """FCOS stage 2. budget None: remove the collapsed blocks (epsilon criterion); option
    ``num_blocks=k``: remove the k lowest-gain blocks; budget float: remove lowest-gain blocks
    to that MAC reduction. The input model is not modified. ``record`` is the LaCD report plus
    ``selection`` (mode and the ``remove_and_summarise`` summary)."""
    check_options("lacd", options, LACD_OPTIONS)
    if data is None:
        raise ConfigError("pruner lacd needs the prepared dataset (probes train on it)")
    num_blocks = options.get("num_blocks")
    if num_blocks is not None and budget is not None:
        raise ConfigError("lacd: give either a MAC budget or num_blocks, not both")
    previous = input_architecture(model, model_name, data, options)
    model = copy.deepcopy(model)
    length = int(data.length)
    report = diagnose_collapse(model, data, seed=seed, progress=progress,
                               **{k: options[k] for k in DIAGNOSE_OPTIONS if k in options})
    rule = options.get("budget_rule", "exact")
    if budget is not None:
        mode = "budget"
        model, removal, summary = prune_ranked_to_budget(
            model, rank_by_score(report), length=length, budget=budget, rule=rule,
            reference_macs=options.get("reference_macs"))
    else:
        mode = "num_blocks" if num_blocks is not None else "epsilon"
        chosen = report["collapsed"] if num_blocks is None else lowest_gain_blocks(report, num_blocks)
        model, removal, summary = remove_and_summarise(model, chosen, length=length,
                                                       reference_macs=options.get("reference_macs"))
    report["selection"] = {"mode": mode, "num_blocks": num_blocks, **summary}
    return PruneResult(model, merge_architecture(previous, removal), record=report)
