"""Comparison tables, paired verdicts and figures from metrics JSON files.

Expected values are computed here by hand (means, sample std, Student-t quantiles from scipy's
table) from the records, not by the report code.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from fcos.errors import DataError
from fcos.report import (comparison_table, latex_table, markdown_table, paired_verdicts,
                         write_dataset_report)
from fcos.report.stats import BETTER, ONE_SEED, TIED, WORSE


def metrics(model, method, seed, accuracy, macs, params, budget=None, recovery=None, high=None):
    return {"dataset": "rml2016", "model": model, "method": method, "seed": seed, "budget": budget,
            "accuracy": accuracy, "accuracy_high_snr": high if high is not None else accuracy + 0.2,
            "per_snr": {"-10": accuracy / 2, "0": accuracy, "10": accuracy},
            "per_class": {"a": 0.5, "b": 0.5}, "macs": macs, "params": params,
            "recovery": None if recovery is None else {"epochs": recovery, "steps": [], "budget_epochs": 4},
            "train_history": [{"epoch": 1, "loss": 2.0, "val_loss": 2.1, "val_accuracy": 0.3},
                              {"epoch": 2, "loss": 1.5, "val_loss": 1.7, "val_accuracy": 0.4}]}


RECORDS = [
    metrics("resnet56", "base", 0, 0.60, 1000, 100),
    metrics("resnet56", "base", 1, 0.62, 1000, 100),
    metrics("resnet56", "base", 2, 0.61, 1000, 100),
    metrics("resnet56", "base-ft", 0, 0.63, 1000, 100, recovery=4),
    metrics("resnet56", "base-ft", 1, 0.64, 1000, 100, recovery=4),
    metrics("resnet56", "base-ft", 2, 0.62, 1000, 100, recovery=4),
    metrics("resnet56", "fcos", 0, 0.59, 250, 30, budget=0.75, recovery=4),
    metrics("resnet56", "fcos", 1, 0.57, 240, 30, budget=0.75, recovery=3),
    metrics("resnet56", "fcos", 2, 0.58, 250, 30, budget=0.75, recovery=4),
    metrics("resnet56", "l1", 0, 0.50, 250, 40, budget=0.75, recovery=4),
    metrics("resnet56", "l1", 1, 0.49, 250, 40, budget=0.75, recovery=4),
    metrics("resnet56", "l1", 2, 0.52, 250, 40, budget=0.75, recovery=4),
    metrics("resnet56", "lcp", 0, 0.58, 200, 20, budget=0.75, recovery=4),  # 80% fewer MACs: off target
    metrics("resnet56", "lcp", 1, 0.59, 200, 20, budget=0.75, recovery=4),
    metrics("resnet56", "lcp", 2, 0.56, 200, 20, budget=0.75, recovery=4),
    metrics("cnn1d", "base", 0, 0.55, 400, 50),
]


def _t_half(values):
    return stats.t.ppf(0.975, len(values) - 1) * pd.Series(values).std() / math.sqrt(len(values))


def test_table_aggregates_seeds_with_intervals_and_paired_drops():
    table = comparison_table(RECORDS).set_index(["model", "method"])
    base = table.loc[("resnet56", "base")]
    assert base["seeds"] == 3 and base["accuracy"] == pytest.approx(0.61)
    assert base["accuracy_std"] == pytest.approx(0.01)
    assert base["accuracy_ci95"] == pytest.approx(4.302652729749462 * 0.01 / math.sqrt(3))
    fcos = table.loc[("resnet56", "fcos")]
    assert fcos["family"] == "fcos" and fcos["budget"] == 0.75
    assert fcos["macs_reduction"] == pytest.approx(1 - (250 + 240 + 250) / 3 / 1000)
    assert (fcos["macs_reduction_min"], fcos["macs_reduction_max"]) == (pytest.approx(0.75), pytest.approx(0.76))
    assert fcos["params_reduction"] == pytest.approx(0.70)
    # paired by seed: base - fcos per seed = 0.01, 0.05, 0.03
    assert fcos["drop_vs_base"] == pytest.approx(0.03)
    assert fcos["drop_vs_base_ft"] == pytest.approx(((0.63 - 0.59) + (0.64 - 0.57) + (0.62 - 0.58)) / 3)
    assert fcos["accuracy_high_snr"] == pytest.approx(0.78)
    assert (fcos["recovery_epochs"], fcos["recovery_epochs_max"]) == (pytest.approx(11 / 3), 4)
    assert not fcos["off_target"] and table.loc[("resnet56", "lcp")]["off_target"]
    assert pd.isna(table.loc[("cnn1d", "base")]["drop_vs_base_ft"])
    assert math.isnan(table.loc[("cnn1d", "base")]["accuracy_std"])  # one seed: no spread


def test_paired_verdicts_follow_the_t_interval_of_the_differences():
    verdicts = paired_verdicts(RECORDS).set_index("method")
    assert set(verdicts.index) == {"l1", "lcp"}  # base and base-ft have no budget
    l1 = verdicts.loc["l1"]
    differences = [0.59 - 0.50, 0.57 - 0.49, 0.58 - 0.52]
    mean = sum(differences) / 3
    assert l1["difference"] == pytest.approx(mean)
    assert l1["ci_low"] == pytest.approx(mean - _t_half(differences))
    assert l1["verdict"] == BETTER and l1["family"] == "channel"
    lcp = verdicts.loc["lcp"]
    differences = [0.01, -0.02, 0.02]
    assert lcp["ci_high"] == pytest.approx(sum(differences) / 3 + _t_half(differences))
    assert lcp["verdict"] == TIED
    assert lcp["method_macs_reduction"] == pytest.approx(0.80)
    worse = paired_verdicts([dict(r, accuracy=1 - r["accuracy"]) if r["method"] == "fcos" else r
                             for r in RECORDS]).set_index("method")
    assert worse.loc["l1", "verdict"] == WORSE
    one = paired_verdicts([r for r in RECORDS if r["seed"] == 0]).set_index("method")
    assert one.loc["l1", "verdict"] == ONE_SEED and math.isnan(one.loc["l1", "ci_low"])


def test_markdown_and_latex_show_target_and_achieved_side_by_side():
    table = comparison_table(RECORDS)
    md = markdown_table(table)
    fcos_row = next(line for line in md.splitlines() if "| fcos |" in line)
    assert fcos_row.startswith("| 75% | 75.3 (75.0–76.0) |")
    lcp_row = next(line for line in md.splitlines() if "| lcp |" in line)
    assert lcp_row.startswith("| 75% | 80.0† |")
    assert "| 58.00 ± 1.00 |" in fcos_row
    tex = latex_table(table)
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1
    assert r"75\% & 80.0$^\dagger$ & layer & lcp & 57.67$\pm$1.53" in tex


def test_write_report_files(tmp_path):
    paths = []
    for i, record in enumerate(RECORDS):
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    step = dict(RECORDS[6], method="fcos:1-fcos-stage1.pruned")
    (tmp_path / "step.json").write_text(json.dumps(step))
    out = tmp_path / "out"
    files = {key: out / name for key, name in {
        "csv": "t.csv", "markdown": "t.md", "latex": "t.tex", "verdicts_csv": "v.csv",
        "verdicts_markdown": "v.md", "pareto": "p.png", "verdicts_figure": "v.png", "curves": "c.png",
        "steps_csv": "steps.csv"}.items()}
    write_dataset_report(paths, **files, snr_figures={"resnet56": out / "r.png", "cnn1d": out / "s.png"},
                         step_metrics_paths=[tmp_path / "step.json"])
    assert len(pd.read_csv(files["csv"])) == 6
    assert list(pd.read_csv(files["verdicts_csv"])["method"]) == ["l1", "lcp"]
    for png in ("r.png", "s.png", "p.png", "v.png", "c.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    steps = pd.read_csv(files["steps_csv"])
    assert steps.loc[0, "pipeline"] == "fcos" and steps.loc[0, "checkpoint"] == "1-fcos-stage1.pruned"
    assert "better" in files["verdicts_markdown"].read_text()


def test_incomplete_metrics_are_refused_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "cnn1d"}))
    with pytest.raises(DataError, match="bad.json.*accuracy"):
        write_dataset_report([bad], csv=tmp_path / "t.csv", markdown=tmp_path / "t.md")
    assert not (tmp_path / "t.csv").exists()
