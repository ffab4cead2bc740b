"""README's pipeline picture names exactly the workflow's rules (regenerated in a copy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_pipeline import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
NODE = re.compile(r"^\s*id\d+\[(\w+)\]\s*$", flags=re.M)


def readme_rules() -> set[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```mermaid\n(.*?)^```", text, flags=re.M | re.S)
    assert len(blocks) == 1, "README.md should hold one ```mermaid block (the pipeline picture)"
    return set(NODE.findall(blocks[0]))


@pytest.mark.slow
def test_readme_pipeline_picture_names_every_rule(tmp_path):
    # A copy of the workflow (no results/, no .snakemake/), so the checkout's state cannot matter.
    work = copy_workflow(tmp_path / "workflow")
    proc = subprocess.run([str(SNAKEMAKE), "--rulegraph", "mermaid-js"], cwd=work,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    generated = set(NODE.findall(proc.stdout))
    assert {"all", "prepare_dataset", "train_base", "prune_step", "report_dataset"} <= generated
    assert readme_rules() == generated
