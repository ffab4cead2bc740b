"""Every config file the project ships is one the workflow accepts.

The studies (config/cpu-study*.yaml, config/paper.yaml) take hours, so no test runs them; a typo
in one would surface only when a user starts it. Each file is checked against the workflow's
schema and its names against the registries, without running anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fcos.config_check import schema_problem
from fcos.models import MODELS
from fcos.prune.chains import method_chains

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "schema.yaml")


def test_the_study_configs_are_among_the_shipped_ones():
    names = {p.name for p in SHIPPED}
    assert {"config.yaml", "test.yaml", "cpu-study.yaml", "cpu-study-cnn1d.yaml", "paper.yaml"} <= names


def _problems(config) -> list[str]:
    """What the workflow would refuse in ``config``: the schema's first problem, unknown names."""
    problems = [schema_problem(config, ROOT / "config" / "schema.yaml")]
    for model in config.get("models", []):
        if isinstance(model, str) and model not in MODELS:
            problems.append(f"unknown model {model!r}")
    known = set(method_chains()) | {"base"}
    problems += [f"unknown method {m!r}" for m in config.get("methods", []) if m not in known]
    return [p for p in problems if p]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_satisfies_the_schema_and_names_known_models_and_methods(path):
    assert _problems(yaml.safe_load(path.read_text())) == []


def test_the_check_finds_planted_mistakes():
    config = yaml.safe_load((ROOT / "config" / "cpu-study-cnn1d.yaml").read_text())
    config["methods"] = [*config["methods"], "fcoss"]
    assert _problems(config) == ["unknown method 'fcoss'"]
    config["seeds"] = [0, 0]
    assert _problems(config) == ["config key 'seeds': [0, 0] has non-unique elements", "unknown method 'fcoss'"]
