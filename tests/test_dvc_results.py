"""tools/version-results.sh: a finished run's checkpoints and report under DVC, restored in a
fresh clone by `tools/version-results.sh --restore` (dvc pull, then snakemake --touch), after
which Snakemake has nothing to do.

Runs the real workflow (a small cut of config/test.yaml), git and the venv's dvc in temporary
directories; DVC's global/system config and site cache are moved there too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "profiles", "fcos", "environment.yml", "tools")
CONFIG = "config/dvc-test.yaml"

pytestmark = pytest.mark.slow


def run(*args, cwd: Path, timeout: float = 900, env_extra: dict | None = None) -> str:
    isolated = cwd.parent / "dvc-home"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               DVC_GLOBAL_CONFIG_DIR=str(isolated / "global"), DVC_SYSTEM_CONFIG_DIR=str(isolated / "system"),
               DVC_SITE_CACHE_DIR=str(isolated / "site-cache"), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", **(env_extra or {}))
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_pulled_results_leave_snakemake_nothing_to_do(tmp_path):
    repo = tmp_path / "repo"
    copy_workflow(repo, WORKFLOW_PARTS)
    shutil.copy2(ROOT / ".gitignore", repo / ".gitignore")
    config = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    config.update(models=["cnn1d"], seeds=[0], methods=["base", "base-ft"], step_metrics=False)
    (repo / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    run("git", "init", "-q", cwd=repo)
    run("dvc", "init", "-q", cwd=repo)
    run("dvc", "config", "core.analytics", "false", cwd=repo)
    run("dvc", "remote", "add", "-d", "lab", tmp_path / "remote", cwd=repo)
    run("git", "add", ".", cwd=repo)
    run("git", "commit", "-q", "-m", "workflow", cwd=repo)

    # versioning refuses an unfinished run
    with pytest.raises(AssertionError, match="(no such results directory|still has jobs)"):
        run(repo / "tools" / "version-results.sh", cwd=repo, env_extra={"FCOS_CONFIGFILE": CONFIG})
    run("snakemake", "--cores", "2", "--configfile", CONFIG, cwd=repo)
    run(repo / "tools" / "version-results.sh", cwd=repo, env_extra={"FCOS_CONFIGFILE": CONFIG})
    assert yaml.safe_load((repo / "results.dvc").read_text())["outs"][0]["path"] == "results"
    run("git", "add", "results.dvc", ".gitignore", cwd=repo)
    run("git", "commit", "-q", "-m", "results", cwd=repo)
    originals = file_hashes(repo / "results")
    assert any(name.endswith("base/model.pt") for name in originals)
    assert any(name.endswith("1-none.pt") for name in originals)  # base-ft's fine-tuned model
    assert "report/rml2016/table.csv" in originals

    clone = tmp_path / "clone"
    run("git", "clone", "-q", repo, clone, cwd=tmp_path)
    assert not (clone / "results").exists() and not (clone / ".snakemake").exists()
    run("dvc", "pull", "-q", cwd=clone)
    assert file_hashes(clone / "results") == originals
    # The pulled files' mtimes are the order DVC wrote them in, not the order of the DAG, and
    # the clone has no .snakemake metadata: a bare pull does not count as finished (this checks
    # that the test can fail), which is why --restore marks the tree up to date.
    out = run("snakemake", "--dry-run", "--cores", "2", "--configfile", CONFIG, "--rerun-triggers", "mtime",
              cwd=clone, timeout=300)
    assert "Nothing to be done" not in out
    run(clone / "tools" / "version-results.sh", "--restore", cwd=clone, env_extra={"FCOS_CONFIGFILE": CONFIG})
    assert file_hashes(clone / "results") == originals
    for triggers in ([], ["--rerun-triggers", "mtime"]):
        out = run("snakemake", "--dry-run", "--cores", "2", "--configfile", CONFIG, *triggers, cwd=clone,
                  timeout=300)
        assert "Nothing to be done" in out, out[-3000:]
