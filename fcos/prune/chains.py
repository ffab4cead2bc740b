"""Pipeline methods as chains of pruning steps (defined in chains.yaml).

The library and the Snakemake workflow both read the chains through this module: which steps a
method runs, which MAC reduction each step aims at, and how much of the recovery budget the
fine-tuning after each step may use.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ..errors import ConfigError

FAMILIES = ("reference", "channel", "layer", "fcos")
_STEP_KEYS = {"pruner", "budget", "budget_share", "recovery_share"}


def _check(chains: dict[str, Any]) -> dict[str, dict]:
    for name, chain in chains.items():
        where = f"fcos/prune/chains.yaml: {name}"
        if chain.get("family") not in FAMILIES:
            raise ConfigError(f"{where}: family must be one of {', '.join(FAMILIES)}")
        steps = chain.get("steps") or []
        if not steps:
            raise ConfigError(f"{where}: no steps")
        for index, step in enumerate(steps, start=1):
            if "method" in step:
                raise ConfigError(f"{where}: step {index} key 'method' is now 'pruner' (the pruner "
                                  f"the step runs)")
            unknown = set(step) - _STEP_KEYS
            if unknown or "pruner" not in step or not isinstance(step.get("budget"), bool):
                raise ConfigError(f"{where}: step {index} needs pruner and budget (bool), "
                                  f"optional budget_share, recovery_share")
            for key in ("budget_share", "recovery_share"):
                if not 0 < float(step.get(key, 1.0)) <= 1:
                    raise ConfigError(f"{where}: step {index} {key} must be in (0, 1]")
        budgeted = [step for step in steps if step["budget"]]
        if budgeted and float(budgeted[-1].get("budget_share", 1.0)) != 1.0:
            raise ConfigError(f"{where}: the last budgeted step must land on the budget (budget_share 1)")
        if float(steps[-1].get("recovery_share", 1.0)) != 1.0:
            raise ConfigError(f"{where}: the last step's fine-tuning gets the rest of the recovery budget "
                              f"(recovery_share 1)")
    return chains


@lru_cache(maxsize=1)
def method_chains() -> dict[str, dict]:
    """{pipeline method: {"description", "family", "steps": [{"pruner", "budget", ...}], "models"?}}."""
    text = resources.files(__package__).joinpath("chains.yaml").read_text(encoding="utf-8")
    return _check(yaml.safe_load(text))


def chain_steps(method: str) -> list[dict]:
    chains = method_chains()
    if method not in chains:
        raise ConfigError(f"unknown method {method!r}: expected base or one of {', '.join(sorted(chains))}")
    return [dict(step) for step in chains[method]["steps"]]


def method_family(method: str) -> str:
    """"reference" for base and base-ft, else the chain's family (channel, layer, fcos)."""
    if method == "base":
        return "reference"
    chain_steps(method)  # refuses unknown names
    return method_chains()[method]["family"]


def takes_budget(method: str) -> bool:
    """True when some step of ``method`` is aimed at the run's MAC budget."""
    return any(step["budget"] for step in chain_steps(method))


def step_budget(method: str, index: int, budget: float | None) -> float | None:
    """The MAC reduction (against the base model) step ``index`` (1-based) of ``method`` aims at.

    None for an unbudgeted step or run. A step with ``budget_share`` s aims at
    ``1 - (1 - budget)^s``: that share of the budget's log-MAC reduction.
    """
    step = chain_steps(method)[index - 1]
    if not step["budget"] or budget is None:
        return None
    share = float(step.get("budget_share", 1.0))
    return 1.0 - (1.0 - float(budget)) ** share


def recovery_share(method: str, index: int) -> float:
    """The most of the recovery budget the fine-tuning after step ``index`` (1-based) may use."""
    return float(chain_steps(method)[index - 1].get("recovery_share", 1.0))


def step_pruners() -> list[str]:
    """The pruners the chains' steps run (every pruner registered in fcos.prune)."""
    return sorted({step["pruner"] for chain in method_chains().values() for step in chain["steps"]})


def check_pruner_options(pruner_options: Any) -> None:
    """Refuse a ``pruner_options`` config entry whose keys are not the chains' pruners, or whose
    values are not mappings (ConfigError naming the key; the option names themselves are checked
    by each pruner when it runs)."""
    if not isinstance(pruner_options, dict):
        raise ConfigError(f"config key 'pruner_options': expected a mapping of pruner to options, "
                          f"got {type(pruner_options).__name__}")
    known = step_pruners()
    for key, options in pruner_options.items():
        if key not in known:
            raise ConfigError(f"config key 'pruner_options.{key}': unknown pruner; expected one of "
                              f"{', '.join(known)}")
        if not isinstance(options, dict):
            raise ConfigError(f"config key 'pruner_options.{key}': expected a mapping of option names to "
                              f"values, got {options!r}")

