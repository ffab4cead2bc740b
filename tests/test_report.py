"""Comparison tables and figures from metrics JSON files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fcos.errors import DataError
from fcos.report import comparison_table, markdown_table, write_dataset_report


def metrics(model, method, seed, accuracy, macs, params, budget=None):
    return {"dataset": "rml2016", "model": model, "method": method, "seed": seed, "budget": budget,
            "accuracy": accuracy, "per_snr": {"-10": accuracy / 2, "0": accuracy, "10": accuracy},
            "per_class": {"a": 0.5, "b": 0.5}, "macs": macs, "params": params}


RECORDS = [
    metrics("resnet56", "base", 0, 0.60, 1000, 100),
    metrics("resnet56", "base", 1, 0.62, 1000, 100),
    metrics("resnet56", "fcos", 0, 0.59, 250, 30, budget=0.7),
    metrics("resnet56", "fcos", 1, 0.57, 250, 30, budget=0.7),
    metrics("cnn1d", "base", 0, 0.55, 400, 50),
    metrics("resnet56", "base-ft", 0, 0.63, 1000, 100),
]


def test_table_aggregates_seeds_and_measures_against_base():
    table = comparison_table(RECORDS).set_index(["model", "method"])
    base = table.loc[("resnet56", "base")]
    assert base["seeds"] == 2 and base["accuracy"] == pytest.approx(0.61)
    assert base["accuracy_std"] == pytest.approx(pd.Series([0.60, 0.62]).std())
    fcos = table.loc[("resnet56", "fcos")]
    assert fcos["macs_reduction"] == pytest.approx(0.75)
    assert fcos["params_reduction"] == pytest.approx(0.70)
    assert fcos["accuracy_drop"] == pytest.approx(0.61 - 0.58)
    assert fcos["accuracy_drop_vs_base_ft"] == pytest.approx(0.63 - 0.58)
    assert pd.isna(table.loc[("cnn1d", "base")]["accuracy_drop_vs_base_ft"])
    assert table.loc[("cnn1d", "base")]["macs_reduction"] == pytest.approx(0.0)


def test_markdown_has_one_row_per_model_method_budget():
    md = markdown_table(comparison_table(RECORDS))
    rows = [line for line in md.splitlines()[2:] if line.startswith("|")]
    assert len(rows) == 4
    assert any("| fcos | 70% |" in r and "75.00" in r for r in rows)


def test_write_report_files(tmp_path):
    paths = []
    for i, record in enumerate(RECORDS):
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    step = dict(RECORDS[2], method="fcos:1-fcos-stage1.pruned")
    (tmp_path / "step.json").write_text(json.dumps(step))
    out = tmp_path / "out"
    write_dataset_report(paths, out / "t.csv", out / "t.md",
                         {"resnet56": out / "r.png", "cnn1d": out / "c.png"}, pareto_path=out / "p.png",
                         step_metrics_paths=[tmp_path / "step.json"], steps_csv_path=out / "steps.csv")
    assert len(pd.read_csv(out / "t.csv")) == 4
    for png in ("r.png", "c.png", "p.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    steps = pd.read_csv(out / "steps.csv")
    assert steps.loc[0, "pipeline"] == "fcos" and steps.loc[0, "checkpoint"] == "1-fcos-stage1.pruned"


def test_incomplete_metrics_are_refused_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "cnn1d"}))
    with pytest.raises(DataError, match="bad.json.*accuracy"):
        write_dataset_report([bad], tmp_path / "t.csv", tmp_path / "t.md", {})
    assert not (tmp_path / "t.csv").exists()
