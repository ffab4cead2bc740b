"""The latency harness: fixed call counts, interleaved rounds, paired speedups, every runtime."""

from __future__ import annotations

import json
import subprocess
import sys
import numpy as np
import pandas as pd
import pytest
import torch

from fcos.errors import ConfigError
from fcos.latency import (LatencyConfig, Runner, batch_of, exported_runner, layer_profile, measure_latency,
                          summarize_times, torch_runner)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.mark.parametrize("values, key", [
    ({"repeat": 3}, "repeat"),
    ({"batch_sizes": [0]}, "batch_sizes"),
    ({"batch_sizes": []}, "batch_sizes"),
    ({"warmup": -1}, "warmup"),
    ({"repeats": 0}, "repeats"),
    ({"threads": 1.5}, "threads"),
    ({"device": "tpu"}, "device"),
])
def test_config_refuses_bad_values(values, key):
    with pytest.raises(ConfigError, match=key):
        LatencyConfig.from_dict(values)


def test_summary_statistics_by_hand():
    stats = summarize_times([0.005, 0.001, 0.004, 0.002, 0.003], batch_size=256)
    assert stats["median_ms"] == pytest.approx(3.0) and stats["mean_ms"] == pytest.approx(3.0)
    assert stats["min_ms"] == pytest.approx(1.0)
    # linear interpolation between order statistics: p10 = 1 + 0.4 * (2 - 1)
    assert stats["p10_ms"] == pytest.approx(1.4) and stats["p90_ms"] == pytest.approx(4.6)
    assert stats["p25_ms"] == pytest.approx(2.0) and stats["iqr_ms"] == pytest.approx(2.0)
    assert stats["throughput_per_s"] == pytest.approx(256 / 0.003)


def test_batch_of_repeats_rows_cyclically():
    inputs = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)
    batch = batch_of(inputs, 7)
    assert batch.shape == (7, 2, 4)
    assert torch.equal(batch[:, 0, 0], inputs[[0, 1, 2, 0, 1, 2, 0], 0, 0])


class FakeClock:
    """Stands in for time.perf_counter / time.process_time: runners advance it by known amounts."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _timed(name: str, seconds: float, log: list, clock: FakeClock) -> Runner:
    prepared = []

    def prepare(batch):
        prepared.append(tuple(batch.shape))
        return batch

    def call(batch):
        log.append(name)
        clock.now += seconds

    runner = Runner("torch-eager", "cpu", prepare, call)
    runner.prepared = prepared
    return runner


def test_interleaved_fixed_count_rounds_and_paired_speedup(monkeypatch):
    import types

    import fcos.latency

    clock = FakeClock()
    monkeypatch.setattr(fcos.latency, "time", types.SimpleNamespace(perf_counter=clock, process_time=clock))
    log: list[str] = []
    slow, fast = _timed("slow", 0.006, log, clock), _timed("fast", 0.002, log, clock)
    config = LatencyConfig(batch_sizes=(1, 4), warmup=2, repeats=6, threads=1)
    result = measure_latency({"slow": slow, "fast": fast}, torch.zeros(3, 2, 8), config, reference="slow")
    assert slow.prepared == [(1, 2, 8), (4, 2, 8)] and fast.prepared == slow.prepared
    per_batch = log[: (2 + 6) * 2]
    assert per_batch[:4] == ["slow", "fast", "slow", "fast"]  # warm-up
    assert per_batch[4:] == ["slow", "fast", "fast", "slow"] * 3  # order reversed every other round
    assert len(log) == 2 * len(per_batch)
    for entry in result["batches"]:
        assert entry["threads"] == 1 and len(entry["load_before"]) == len(entry["load_after"]) == 3
        models = entry["models"]
        assert models["slow"]["speedup"]["median"] == 1.0
        assert models["fast"]["speedup"]["median"] == pytest.approx(3.0)
        assert models["fast"]["cpu_speedup"]["median"] == pytest.approx(3.0)
        assert models["slow"]["median_ms"] == pytest.approx(6.0) and models["fast"]["median_ms"] == pytest.approx(2.0)
        assert models["fast"]["throughput_per_s"] == pytest.approx(entry["batch_size"] / 0.002)
    assert result["reference"] == "slow" and result["config"]["repeats"] == 6
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["torch"] == torch.__version__


def test_cpu_time_speedup_counts_work_not_waiting():
    """Busy loops of 3n and n iterations: CPU-time speedup ~3 however busy the machine is."""
    def busy(iterations):
        def call(_):
            total = 0
            for i in range(iterations):
                total += i
            return total
        return Runner("python", "cpu", lambda b: b, call)

    result = measure_latency({"slow": busy(300_000), "fast": busy(100_000)}, torch.zeros(1, 2, 4),
                             LatencyConfig(batch_sizes=(1,), warmup=1, repeats=7), reference="slow")
    fast = result["batches"][0]["models"]["fast"]
    assert 2.0 < fast["cpu_speedup"]["median"] < 4.5
    assert fast["cpu_median_ms"] <= fast["median_ms"] * 1.05, "CPU time cannot exceed wall time (1 thread)"


def test_threads_are_set_for_the_measurement_and_restored():
    seen = []
    runner = Runner("torch-eager", "cpu", lambda b: b, lambda b: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    result = measure_latency({"m": runner}, torch.zeros(1, 2, 4), LatencyConfig(batch_sizes=(1,), warmup=0,
                                                                                 repeats=2, threads=2))
    assert seen == [2, 2] and result["batches"][0]["threads"] == 2 and "speedup" not in result["batches"][0]["models"]["m"]
    assert torch.get_num_threads() == before


@pytest.fixture(scope="module")
def small_models():
    from fcos.models import build_model
    from fcos.prune import prune_model

    torch.manual_seed(0)
    base = build_model("cnn1d", 11, 128).eval()
    pruned = prune_model("fcos-stage1", build_model("cnn1d", 11, 128).eval(), model_name="cnn1d",
                         budget=0.8).model.eval()
    return base, pruned


def test_eager_torchscript_and_onnxruntime_are_timed_by_one_harness(small_models, tmp_path):
    from fcos.export import export_checked

    base, pruned = small_models
    inputs = torch.randn(16, 2, 128) * 0.01
    runners = {"base": torch_runner(base), "model": torch_runner(pruned)}
    for fmt in ("torchscript", "onnx"):
        export_checked(pruned, fmt, tmp_path / f"model.{fmt}", inputs)
        runner = exported_runner(tmp_path / f"model.{fmt}")
        runners[runner.runtime] = runner
    assert set(runners) == {"base", "model", "torchscript", "onnxruntime"}
    result = measure_latency(runners, inputs, LatencyConfig(batch_sizes=(1, 8), warmup=1, repeats=3),
                             reference="base")
    assert result["runners"]["onnxruntime"]["providers"] == ["CPUExecutionProvider"]
    for entry in result["batches"]:
        for name, stats in entry["models"].items():
            assert stats["median_ms"] > 0 and stats["throughput_per_s"] > 0 and stats["speedup"]["median"] > 0
            assert stats["cpu_median_ms"] > 0 and stats["cpu_speedup"]["median"] > 0


def test_layer_profile_accounts_for_time_and_macs(small_models):
    from fcos.metrics import macs_and_params

    _, pruned = small_models
    profile = layer_profile(pruned, torch.randn(4, 2, 128), batch_size=8, forwards=3, warmup=1)
    rows = {row["name"]: row for row in profile["modules"]}
    assert sum(row["macs"] for row in profile["modules"]) == macs_and_params(pruned, 128)[0]
    top = [row for name, row in rows.items() if "." not in name]
    assert profile["forward_ms"] > 0 and sum(row["total_ms"] for row in top) <= profile["forward_ms"] * 1.01
    convs = [row for row in profile["modules"] if row["type"].startswith("Conv")]
    assert convs and all(row["total_ms"] > 0 and row["macs"] > 0 for row in convs)
    assert rows["stacks"]["self_ms"] >= 0 and rows["stacks.0"]["total_ms"] >= rows["stacks.0.conv1"]["total_ms"]
    assert any("conv" in op["op"] for op in profile["ops"])


def test_cli_latency_of_a_pruned_checkpoint_against_its_base(tiny_rml2016, tmp_path):
    from fcos.api import prune_checkpoint, train_base_model
    from fcos.checkpoint import model_from_checkpoint
    from fcos.metrics import macs_and_params

    base, pruned, out = tmp_path / "base.pt", tmp_path / "pruned.pt", tmp_path / "latency.json"
    train_base_model(tiny_rml2016, "cnn1d", base, {"epochs": 1, "max_batches_per_epoch": 1}, progress=False)
    prune_checkpoint(base, None, "l1", pruned, tmp_path / "p.json", budget=0.5, progress=False)
    proc = subprocess.run([sys.executable, "-m", "fcos", "latency", "--checkpoint", pruned, "--reference", base,
                           "--data", tiny_rml2016, "--out", out, "--batch-sizes", "1", "4", "--warmup", "1",
                           "--repeats", "3", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "batch 4: base" in proc.stdout and "x base)" in proc.stdout
    record = json.loads(out.read_text())
    assert record["dataset"] == "rml2016" and record["model"] == "cnn1d"
    assert set(record["runners"]) == {"base", "model"} and record["reference"] == "base"
    macs = macs_and_params(model_from_checkpoint(pruned), 128)[0]
    assert record["macs"] == macs and record["mac_ratio"] == pytest.approx(9_532_800 / macs)
    assert record["inputs"].startswith("test split of") and [b["batch_size"] for b in record["batches"]] == [1, 4]

    bad = subprocess.run([sys.executable, "-m", "fcos", "latency", "--checkpoint", pruned, "--exported", base,
                          "--out", tmp_path / "x.json"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not TorchScript" in bad.stderr and bad.stderr.count("\n") == 1


def _latency_json(path, method, budget, seed, latency_ms, speedup, mac_ratio):
    entry = {"batch_size": 1, "threads": 1, "load_before": [0.5, 0.5, 0.5], "load_after": [0.5, 0.5, 0.5],
             "models": {"model": {"median_ms": latency_ms, "throughput_per_s": 1e3 / latency_ms,
                                  "speedup": {"median": speedup}}}}
    path.write_text(json.dumps({"dataset": "rml2016", "model": "cnn1d", "method": method, "budget": budget,
                                "seed": seed, "mac_ratio": mac_ratio, "batches": [entry]}))
    return path


def test_report_joins_latency_averaged_over_seeds(tmp_path):
    from fcos.report.latency import join_latency, latency_markdown_columns, latency_table

    files = [_latency_json(tmp_path / "a.json", "base", None, 0, 4.0, 1.0, 1.0),
             _latency_json(tmp_path / "b.json", "l1", 0.5, 0, 2.0, 1.8, 2.0),
             _latency_json(tmp_path / "c.json", "l1", 0.5, 1, 3.0, 1.4, 2.0)]
    table = pd.DataFrame({"dataset": ["rml2016"] * 3, "model": ["cnn1d"] * 3, "method": ["base", "l1", "fpgm"],
                          "budget": [np.nan, 0.5, 0.5], "accuracy": [0.5, 0.4, 0.45]})
    joined = join_latency(table, latency_table(files))
    assert list(joined["method"]) == ["base", "l1", "fpgm"]
    assert list(joined["latency_ms_b1"][:2]) == [4.0, 2.5] and list(joined["speedup_b1"][:2]) == [1.0, 1.6]
    assert np.isnan(joined["latency_ms_b1"][2]), "a model without a latency file gets no numbers"
    header, cells = latency_markdown_columns(joined)
    assert header == ["MAC ratio", "Latency b1 (ms)", "Speedup b1", "Throughput b1 (/s)"]
    assert cells[1] == ["2.00", "2.50", "1.60", "417"] and cells[2] == ["", "", "", ""]
