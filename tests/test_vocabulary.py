"""One word per concept: a *method* is a row of the comparison (a chain in fcos/prune/chains.yaml,
config ``methods``, the ``{method}`` path part); a *pruner* is one registered pruning step
(``fcos.prune.PRUNERS``, config ``pruner_options``, a chain step's ``pruner:`` key, the ``{pruner}``
wildcard). The retired names of the second concept must not come back, and old config keys are
refused with their new name instead of being ignored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fcos.config_check import schema_problem
from fcos.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["fcos", "rules", "scripts", "config", "docs", "Snakefile", "README.md", "bench/README.md"]
RETIRED = {
    r"\bregister_method\b": "register_pruner",
    r"\bload_methods\b": "load_pruners",
    r"\bMETHOD_MODULES\b": "PRUNER_MODULES",
    r"\bPruneMethod\b": "Pruner",
    r"\bBLOCK_METHODS\b": "BLOCK_PRUNERS",
    r"\bmethod_options\b": "pruner_options",
    r"\bstep_methods\b": "step_pruners",
    # a Snakemake wildcard in a plain string (f-strings over a ``stage`` variable are fine)
    r"(?<![f\w])[\"'][^\"']*\{stage\}|wildcards\.stage\b": "{pruner} / wildcards.pruner",
    r"fcos\.prune\.METHODS|from \.base import .*\bMETHODS\b|^METHODS: dict": "PRUNERS",
    r"\bpruning methods?\b": "pruner(s)",
    r"^\s*- \{method: ": "- {pruner: ...} (chains.yaml step)",
}


def _files():
    for part in SCANNED:
        path = ROOT / part
        if path.is_file():
            yield path
        else:
            yield from (p for p in sorted(path.rglob("*"))
                        if p.is_file() and p.suffix in {".py", ".smk", ".yaml", ".md"})


def test_no_retired_name_of_the_pruner_concept_is_left():
    # the scan itself must see the files (a wrong root would pass vacuously)
    files = list(_files())
    assert any(f.name == "chains.yaml" for f in files) and any(f.name == "prune.smk" for f in files)
    found = []
    for path in files:
        if path.name == "config_check.py":
            continue  # names the retired config key to refuse it
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for pattern, new in RETIRED.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]} (use {new})")
    assert not found, "\n".join(found)


def test_the_scan_finds_a_planted_retired_name(tmp_path):
    # the patterns match what they are meant to: a check that can fail
    planted = ["@register_method('x')", "    - {method: lacd, budget: true}", "config['method_options']",
               "step_path('{step}', '{stage}', '.pt')", "an unknown pruning method"]
    for line in planted:
        assert any(re.search(p, line) for p in RETIRED), line
    for fine in ("methods: [base, fcos]  # rows of the comparison", 'name = f"{stage}.{index}"'):
        assert not any(re.search(p, fine) for p in RETIRED), fine


def test_chains_name_their_step_functions_pruners():
    from fcos.prune import PRUNERS, load_pruners
    from fcos.prune.chains import chain_steps, method_chains, step_pruners

    load_pruners()
    text = yaml.safe_load((ROOT / "fcos" / "prune" / "chains.yaml").read_text())
    for method, chain in text.items():
        assert all(set(step) >= {"pruner", "budget"} and "method" not in step for step in chain["steps"])
        assert [s["pruner"] for s in chain_steps(method)] == [s["pruner"] for s in chain["steps"]]
    assert step_pruners() == sorted(PRUNERS)
    assert set(method_chains()) == set(text)
    assert chain_steps("fcos")[0]["pruner"] == "fcos-stage1" and chain_steps("fcos")[1]["pruner"] == "lacd"


def test_a_chain_step_keyed_method_is_refused_with_the_new_key():
    from fcos.prune.chains import _check

    with pytest.raises(ConfigError, match=r"step 1 key 'method' is now 'pruner'"):
        _check({"mine": {"family": "channel", "steps": [{"method": "l1", "budget": True}]}})


def test_old_config_key_is_refused_naming_its_new_name():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    assert schema_problem(config, ROOT / "config" / "schema.yaml") is None
    config["method_options"] = config.pop("pruner_options", {})
    problem = schema_problem(config, ROOT / "config" / "schema.yaml")
    assert problem == ("config key 'method_options': renamed to 'pruner_options' (same contents); "
                       "rename it in your config")
