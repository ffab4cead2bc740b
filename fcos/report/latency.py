"""Latency columns of the comparison table: per final model, the median latency, throughput and
measured speedup over its base model (timed in the same job, fcos.latency), next to the MAC
ratio, from the latency JSON files the workflow writes beside each metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import DataError
from .runs import budget_key

#: What identifies the model a latency file measured (as in the metrics files).
LATENCY_KEYS = ("dataset", "model", "method", "budget", "seed")


def latency_table(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per latency JSON (fcos.api.measure_checkpoint_latency, with a ``base`` reference).

    Columns: dataset, model, method, budget (as ``budget_key``: "0.5" or "none"), seed, mac_ratio (base MACs / MACs),
    and per timed batch size b: ``latency_ms_b{b}`` (median of the model), ``throughput_b{b}``
    (examples/s), ``speedup_b{b}`` (median of the per-round ratio base time / model time, both
    measured in the same run), ``cpu_speedup_b{b}`` (the same on process CPU time: robust when
    other jobs hold the cores), ``load_b{b}`` (1-minute load average when that batch size started).
    """
    from ..io import read_json

    rows = []
    for path in paths:
        record = read_json(path)
        missing = [k for k in (*LATENCY_KEYS, "mac_ratio", "batches") if k not in record]
        if missing:
            raise DataError(f"{path}: latency file lacks key(s) {', '.join(missing)}")
        row = {k: record[k] for k in LATENCY_KEYS}
        row["budget"] = budget_key(row["budget"])
        row["mac_ratio"] = record["mac_ratio"]
        for entry in record["batches"]:
            stats = entry.get("models", {}).get("model", {})
            if not {"median_ms", "throughput_per_s", "speedup"} <= set(stats):
                raise DataError(f"{path}: batch {entry.get('batch_size')} lacks the model's median_ms, "
                                "throughput_per_s or speedup (measured without a base reference?)")
            size = entry["batch_size"]
            row[f"latency_ms_b{size}"] = stats["median_ms"]
            row[f"throughput_b{size}"] = stats["throughput_per_s"]
            row[f"speedup_b{size}"] = stats["speedup"]["median"]
            if "cpu_speedup" in stats:
                row[f"cpu_speedup_b{size}"] = stats["cpu_speedup"]["median"]
            row[f"load_b{size}"] = entry["load_before"][0]
        rows.append(row)
    if not rows:
        raise DataError("no latency files to report on")
    return pd.DataFrame(rows)


def join_latency(table: pd.DataFrame, latency: pd.DataFrame) -> pd.DataFrame:
    """``table`` (comparison_table) with the latency columns of ``latency`` (latency_table),
    averaged over seeds, merged on (dataset, model, method, budget); NaN where not measured."""
    keys = [k for k in LATENCY_KEYS if k != "seed"]
    measured = latency.drop(columns="seed").groupby(keys, sort=False, dropna=False).mean().reset_index()
    measured = measured.rename(columns={"budget": "budget_key"})
    keyed = table.assign(budget_key=[budget_key(b) for b in table["budget"]])
    merged = keyed.merge(measured, on=["dataset", "model", "method", "budget_key"], how="left",
                         validate="one_to_one")
    return merged.drop(columns="budget_key")


def latency_markdown_columns(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Markdown header cells and per-row cells of the latency columns present in ``table``:
    MAC ratio, then per batch size the median latency and the measured speedup, and the largest
    batch's throughput. Nothing when the table has no latency columns."""
    sizes = sorted(int(c[len("latency_ms_b"):]) for c in table.columns if c.startswith("latency_ms_b"))
    if not sizes:
        return [], [[] for _ in range(len(table))]
    header = ["MAC ratio"]
    for size in sizes:
        header += [f"Latency b{size} (ms)", f"Speedup b{size}"]
    header.append(f"Throughput b{sizes[-1]} (/s)")

    def number(value: float, digits: int) -> str:
        return "" if pd.isna(value) else f"{value:,.{digits}f}"

    cells = []
    for _, row in table.iterrows():
        line = [number(row["mac_ratio"], 2)]
        for size in sizes:
            line += [number(row[f"latency_ms_b{size}"], 2), number(row[f"speedup_b{size}"], 2)]
        line.append(number(row[f"throughput_b{sizes[-1]}"], 0))
        cells.append(line)
    return header, cells
