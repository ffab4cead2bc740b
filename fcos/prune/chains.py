"""Pipeline methods as chains of pruning steps (defined in chains.yaml, shared with the workflow)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from ..errors import ConfigError


@lru_cache(maxsize=1)
def method_chains() -> dict[str, dict]:
    """{pipeline method: {"description": str, "steps": [{"method": str, "budget": bool}, ...]}}."""
    text = resources.files(__package__).joinpath("chains.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def chain_steps(method: str) -> list[dict]:
    chains = method_chains()
    if method not in chains:
        raise ConfigError(f"unknown method {method!r}: expected base or one of {', '.join(sorted(chains))}")
    return list(chains[method]["steps"])


def is_budgeted(method: str) -> bool:
    return any(step["budget"] for step in chain_steps(method))
