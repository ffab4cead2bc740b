"""profiles/slurm-noaccounting on a real one-node SLURM (tools/slurm-local.sh): the jobs go
through sbatch and their results equal a local run's of the same DAG.

The cluster is brought up by the fixture (apt-get installs SLURM and munge where absent) and
taken down by its finaliser, unless it was already running before the test. Every SLURM and
Snakemake command runs in its own process group under a hard timeout: on expiry the whole group
is killed (Snakemake ignores SIGTERM while it polls) and the test fails instead of hanging.
The test skips only where SLURM cannot be installed (not root and no sudo, or no apt-get).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_pipeline import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLURM_LOCAL = ROOT / "tools" / "slurm-local.sh"
STATE = Path(os.environ.get("FCOS_SLURM_STATE", "/var/lib/fcos-slurm-local"))
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "profiles", "fcos", "environment.yml")
# Report columns that are wall-clock measurements (rules/latency.smk): they differ between any
# two runs, local or not, so they are left out of the comparison; everything else must match.
# Training history entries record throughput (samples/s): wall-clock too. This, not the weights
# (equal tensor for tensor), is what differed between SLURM and local runs.
# wall-clock figures, and the checkpoint's seal (a sha256 over the whole payload, timings
# included; every load verifies it against its own file)
TIMING_KEYS = {"samples_per_s", "checksum"}
TIMING_COLUMN = re.compile(r"^(latency_ms|throughput|speedup|cpu_speedup|load)_b\d+$")

pytestmark = pytest.mark.slow


def bounded(args, *, cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` in a new process group; kill the whole group if it outlives ``timeout``."""
    proc = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{' '.join(map(str, args))} still running after {timeout} s; killed:\n"
                             f"{out[-6000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def checked(args, *, cwd: Path, timeout: float, env: dict | None = None) -> str:
    proc = bounded(args, cwd=cwd, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-8000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node SLURM; the finaliser stops it if this fixture started it."""
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        pytest.skip("SLURM cannot be installed here: not root and no sudo")
    already = bounded([SLURM_LOCAL, "status"], cwd=ROOT, timeout=60).returncode == 0
    if not already and shutil.which("sinfo") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM cannot be installed here: sinfo absent and no apt-get")
    started = time.monotonic()
    checked([SLURM_LOCAL, "up"], cwd=ROOT, timeout=1200)
    print(f"\nslurm-local up in {time.monotonic() - started:.0f} s (already running: {already})")
    yield STATE
    if not already:
        checked([SLURM_LOCAL, "down"], cwd=ROOT, timeout=120)


def small_workflow(dest: Path) -> Path:
    """A copy of the workflow with config/slurm-test.yaml: config/test.yaml cut to one model, one
    seed and the base method (prepare, train, evaluate, latency, report: 5 jobs, a chain of 4)."""
    copy_workflow(dest, WORKFLOW_PARTS)
    config = yaml.safe_load((dest / "config" / "test.yaml").read_text())
    config.update(models=["cnn1d"], seeds=[0], methods=["base"], step_metrics=False)
    (dest / "config" / "slurm-test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def snakemake_env() -> dict:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def comparable_files(results: Path) -> list[Path]:
    """Every result except logs, benchmarks and latency measurements (wall-clock timings)."""
    return sorted(p.relative_to(results) for p in results.rglob("*") if p.is_file()
                  and p.parts[len(results.parts)] not in ("logs", "benchmarks")
                  and p.name != "latency.json")


def without_timing_columns(text: str) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: v for k, v in row.items() if not TIMING_COLUMN.match(k)} for row in rows]


def checkpoints_equal(a: Path, b: Path) -> bool:
    """Same keys and values; tensors (state dicts, nested anywhere) equal element for element."""
    import torch

    def same(x, y) -> bool:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dtype == y.dtype \
                and x.shape == y.shape and torch.equal(x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x if k not in TIMING_KEYS)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    return same(torch.load(a, weights_only=True), torch.load(b, weights_only=True))


def json_equal_but_timing(a: Path, b: Path) -> bool:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMING_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))


def test_profile_submits_through_sbatch_and_matches_a_local_run(slurm_cluster, tmp_path):
    local = small_workflow(tmp_path / "local")
    cluster = small_workflow(tmp_path / "cluster")
    env = snakemake_env()

    started = time.monotonic()
    checked([BIN / "snakemake", "--cores", "2", "--configfile", "config/slurm-test.yaml"],
            cwd=local, timeout=1200, env=env)
    local_s = time.monotonic() - started

    started = time.monotonic()
    # A first status check 5 s after submission instead of 40: fine for squeue polling as long as
    # MinJobAge (300 s in slurm-local.sh) is at least 3 x this delay.
    out = checked([BIN / "snakemake", "--profile", "profiles/slurm-noaccounting",
                   "--configfile", "config/slurm-test.yaml",
                   "--slurm-init-seconds-before-status-checks", "5"],
                  cwd=cluster, timeout=1500, env=env)
    slurm_s = time.monotonic() - started
    print(f"local run {local_s:.0f} s, SLURM run {slurm_s:.0f} s")

    # every job went through sbatch: one SLURM job id per submitted job, each of them in
    # slurmctld's job-completion log, completed
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    planned = int(re.search(r"^total\s+(\d+)$", out, re.M).group(1))
    assert len(job_ids) == planned - 1, f"expected {planned - 1} sbatch jobs (all but the local 'all'):\n{out[-4000:]}"
    completed = {m.group(1): m.group(2) for m in re.finditer(
        r"JobId=(\d+) .*?JobState=(\S+)", (slurm_cluster / "jobcomp.log").read_text())}
    assert {j: completed.get(j) for j in job_ids} == {j: "COMPLETED" for j in job_ids}

    results_local, results_cluster = local / "results", cluster / "results"
    files = comparable_files(results_local)
    assert files == comparable_files(results_cluster)
    assert any(f.suffix == ".pt" for f in files) and any(f.name == "table.csv" for f in files)
    differing = []
    for rel in files:
        a, b = results_local / rel, results_cluster / rel
        if rel.suffix == ".pt":
            same = checkpoints_equal(a, b)
        elif rel.name == "table.csv":
            same = without_timing_columns(a.read_text()) == without_timing_columns(b.read_text())
        elif rel.name in ("table.md", "table.tex"):
            same = True  # the CSV's rows, timing columns included, in another layout
        elif rel.suffix == ".json":
            same = json_equal_but_timing(a, b)
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            differing.append(str(rel))
    assert not differing, f"differ between the local and the SLURM run: {differing}"
