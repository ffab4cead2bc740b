"""Comparison tables and figures from metrics JSON files.

Input: the metrics JSON written by ``fcos evaluate`` (one per dataset x model x method x seed),
carrying at least ``dataset``, ``model``, ``method``, ``seed``, ``accuracy``, ``per_snr``,
``macs`` and ``params``. Pruned runs may add ``budget``. Rows are aggregated over seeds
(mean and standard deviation); reductions and accuracy drops are relative to the ``base`` method
of the same dataset and model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DataError
from .io import atomic_path, atomic_write

REQUIRED_KEYS = ("dataset", "model", "method", "seed", "accuracy", "per_snr", "macs", "params")


def load_metrics(paths: Iterable[str | Path]) -> list[dict]:
    """Read metrics JSON files, checking each has the keys a report needs."""
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: metrics file not found") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg})") from None
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise DataError(f"{path}: metrics file lacks key(s) {', '.join(missing)}")
        record.setdefault("budget", None)
        records.append(record)
    if not records:
        raise DataError("no metrics files to report on")
    return records


def comparison_table(records: list[dict]) -> pd.DataFrame:
    """One row per (dataset, model, method, budget): accuracy mean/std over seeds, cost, deltas.

    Columns: dataset, model, method, budget, seeds, accuracy, accuracy_std, macs, params,
    macs_reduction, params_reduction, accuracy_drop (these three relative to ``base``; NaN
    when the base run is not in ``records``), accuracy_drop_vs_base_ft (relative to the
    ``base-ft`` control, NaN without one).
    """
    frame = pd.DataFrame([{k: r[k] for k in ("dataset", "model", "method", "budget", "seed",
                                             "accuracy", "macs", "params")} for r in records])
    frame["budget"] = frame["budget"].astype(object).where(frame["budget"].notna(), "")
    keys = ["dataset", "model", "method", "budget"]
    table = (frame.groupby(keys, sort=False, dropna=False)
             .agg(seeds=("seed", "nunique"), accuracy=("accuracy", "mean"),
                  accuracy_std=("accuracy", lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0),
                  macs=("macs", "mean"), params=("params", "mean"))
             .reset_index())
    base = table[table["method"] == "base"].set_index(["dataset", "model"])
    def relative(row, column):
        key = (row["dataset"], row["model"])
        if key not in base.index:
            return np.nan
        ref = base.loc[key]
        if column == "accuracy":
            return float(ref["accuracy"] - row["accuracy"])
        return float(1.0 - row[column] / ref[column])
    table["macs_reduction"] = table.apply(relative, axis=1, column="macs")
    table["params_reduction"] = table.apply(relative, axis=1, column="params")
    table["accuracy_drop"] = table.apply(relative, axis=1, column="accuracy")
    # base-ft (the base model fine-tuned like every pruned model) is the fair accuracy reference
    # when the base model was not trained to convergence.
    control = table[table["method"] == "base-ft"].set_index(["dataset", "model"])["accuracy"]
    table["accuracy_drop_vs_base_ft"] = [
        float(control.loc[(d, m)] - a) if (d, m) in control.index else np.nan
        for d, m, a in zip(table["dataset"], table["model"], table["accuracy"])]
    table["macs"] = table["macs"].round().astype(np.int64)
    table["params"] = table["params"].round().astype(np.int64)
    return table.sort_values(["dataset", "model", "macs"], ascending=[True, True, False], kind="stable",
                             ignore_index=True)


def per_snr_table(records: list[dict]) -> pd.DataFrame:
    """Long table: dataset, model, method, budget, seed, snr (int, dB), accuracy."""
    rows = []
    for r in records:
        for snr, acc in r["per_snr"].items():
            rows.append({"dataset": r["dataset"], "model": r["model"], "method": r["method"],
                         "budget": r["budget"] if r["budget"] is not None else "", "seed": r["seed"],
                         "snr": int(snr), "accuracy": float(acc)})
    return pd.DataFrame(rows)


def _fmt_pct(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.2f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The comparison table as GitHub Markdown: accuracy and reductions in percent."""
    header = ["Model", "Method", "Budget", "Seeds", "Acc. (%)", "MACs", "Params",
              "MACs red. (%)", "Params red. (%)", "Acc. drop (pp)", "Drop vs base-ft (pp)"]
    speed_header, speed_cells = latency_markdown_columns(table)
    header += speed_header
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, speed in zip(table.itertuples(index=False), speed_cells):
        acc = f"{100 * row.accuracy:.2f}" + (f" ± {100 * row.accuracy_std:.2f}" if row.seeds > 1 else "")
        budget = "" if row.budget == "" else f"{100 * float(row.budget):.0f}%"
        cells = [row.model, row.method, budget, str(row.seeds), acc, f"{row.macs:,}", f"{row.params:,}",
                 _fmt_pct(row.macs_reduction), _fmt_pct(row.params_reduction), _fmt_pct(row.accuracy_drop),
                 _fmt_pct(row.accuracy_drop_vs_base_ft)] + speed
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_snr(records: list[dict], model: str, out: str | Path) -> None:
    """Accuracy vs SNR of one model, one line per (method, budget), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    long = per_snr_table([r for r in records if r["model"] == model])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if long.empty:
        ax.text(0.5, 0.5, f"no runs of {model}", ha="center", va="center", transform=ax.transAxes)
    else:
        for (method, budget), group in long.groupby(["method", "budget"], sort=False):
            curve = group.groupby("snr")["accuracy"].mean().sort_index()
            label = method if budget == "" else f"{method} ({100 * float(budget):.0f}% MACs cut)"
            ax.plot(curve.index, 100 * curve.values, marker="o", markersize=3, label=label)
        num_classes = len(records[0].get("per_class") or {})
        if num_classes:
            ax.axhline(100.0 / num_classes, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.legend(fontsize=8)
    dataset = records[0]["dataset"]
    ax.set(xlabel="SNR (dB)", ylabel="Test accuracy (%)", title=f"{model} on {dataset}", ylim=(0, 100))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_pareto(records: list[dict], out: str | Path) -> None:
    """Accuracy vs MACs, one panel per model; every (method, budget) mean over seeds, base starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, NullFormatter

    table = comparison_table(records)
    models = list(dict.fromkeys(table["model"]))
    methods = list(dict.fromkeys(table["method"]))
    # One fixed colour and marker per method across panels; FCOS drawn on top, thicker.
    palette = plt.get_cmap("tab20")
    style = {m: (palette(i % 20), "osD^vP<>Xph"[i % 11]) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(models), figsize=(5.6 * len(models), 4.4), dpi=120, squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = table[table["model"] == model]
        for method, group in rows.groupby("method", sort=False):
            group = group.sort_values("macs")
            colour, marker = style[method]
            emphasis = method == "fcos"
            ax.plot(group["macs"] / 1e6, 100 * group["accuracy"], color="black" if emphasis else colour,
                    marker="*" if method == "base" else marker,
                    markersize=14 if method in ("base", "fcos") else 6,
                    linewidth=2.2 if emphasis else 1.0, zorder=3 if emphasis else 2,
                    linestyle="-" if len(group) > 1 else "none", label=method)
        ax.set(xscale="log", xlabel="MACs (millions, log scale)", ylabel="Test accuracy (%)",
               title=f"{model} on {records[0]['dataset']}")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def steps_table(records: list[dict]) -> pd.DataFrame:
    """Intermediate checkpoints of pipeline methods (``method`` = "<method>:<step>-<stage>[.pruned]")."""
    frame = pd.DataFrame([{k: r.get(k) for k in ("dataset", "model", "method", "budget", "seed", "accuracy",
                                                    "macs", "params", "macs_reduction", "params_reduction")}
                          for r in records])
    if frame.empty:
        return frame
    parts = frame["method"].str.split(":", n=1, expand=True).reindex(columns=[0, 1])
    frame.insert(2, "pipeline", parts[0])
    frame["method"] = parts[1].fillna("final")  # the method's own metrics.json
    frame = frame.rename(columns={"method": "checkpoint"})
    return frame.sort_values(["model", "pipeline", "budget", "seed", "checkpoint"], kind="stable",
                             ignore_index=True)


def write_dataset_report(metrics_paths: Iterable[str | Path], csv_path: str | Path,
                         markdown_path: str | Path, figure_paths: Mapping[str, str | Path],
                         pareto_path: str | Path | None = None,
                         step_metrics_paths: Iterable[str | Path] = (),
                         steps_csv_path: str | Path | None = None,
                         latency_paths: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Write the comparison CSV, its Markdown rendering and the figures of one dataset.

    ``figure_paths`` maps model name -> accuracy-vs-SNR PNG path; ``pareto_path`` gets the
    accuracy-vs-MACs figure; ``steps_csv_path`` the table of every intermediate checkpoint of
    the pipeline methods (from ``step_metrics_paths``). ``latency_paths`` (latency JSON files,
    fcos.api.measure_checkpoint_latency) add the latency columns (see join_latency). Returns the
    comparison table.
    """
    records = load_metrics(metrics_paths)
    datasets = sorted({r["dataset"] for r in records})
    if len(datasets) != 1:
        raise DataError(f"a dataset report takes one dataset's metrics, got {', '.join(datasets)}")
    table = comparison_table(records)
    latency_paths = list(latency_paths)
    if latency_paths:
        table = join_latency(table, latency_table(latency_paths))
    with atomic_write(csv_path, "w", encoding="utf-8", newline="") as handle:
        table.to_csv(handle, index=False, float_format="%.6g")
    title = f"# {datasets[0]}: accuracy and cost (test split)\n\n"
    with atomic_write(markdown_path, "w", encoding="utf-8") as handle:
        handle.write(title + markdown_table(table))
    for model, path in figure_paths.items():
        plot_accuracy_vs_snr(records, model, path)
    if pareto_path is not None:
        plot_pareto(records, pareto_path)
    if steps_csv_path is not None:
        step_paths = list(step_metrics_paths)
        steps = steps_table(load_metrics(step_paths)) if step_paths else pd.DataFrame()
        with atomic_write(steps_csv_path, "w", encoding="utf-8", newline="") as handle:
            steps.to_csv(handle, index=False, float_format="%.6g")
    return table


# --- latency columns ----------------------------------------------------------------------------

#: What identifies the model a latency file measured (as in the metrics files).
LATENCY_KEYS = ("dataset", "model", "method", "budget", "seed")


def latency_table(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per latency JSON (fcos.api.measure_checkpoint_latency, with a ``base`` reference).

    Columns: dataset, model, method, budget ("" when None), seed, mac_ratio (base MACs / MACs),
    and per timed batch size b: ``latency_ms_b{b}`` (median of the model), ``throughput_b{b}``
    (examples/s), ``speedup_b{b}`` (median of the per-round ratio base time / model time, both
    measured in the same run), ``cpu_speedup_b{b}`` (the same on process CPU time: robust when
    other jobs hold the cores), ``load_b{b}`` (1-minute load average when that batch size started).
    """
    from .io import read_json

    rows = []
    for path in paths:
        record = read_json(path)
        missing = [k for k in (*LATENCY_KEYS, "mac_ratio", "batches") if k not in record]
        if missing:
            raise DataError(f"{path}: latency file lacks key(s) {', '.join(missing)}")
        row = {k: record[k] for k in LATENCY_KEYS}
        row["budget"] = "" if row["budget"] is None else row["budget"]
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
    return table.merge(measured, on=keys, how="left", validate="one_to_one")


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
