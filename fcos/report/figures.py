"""Figures of the report: accuracy vs MACs (Pareto, with error bars), accuracy vs SNR per budget,
training curves of the base models, the paired FCOS-vs-method differences, and LaCD probe curves.

Every figure is drawn on a ``matplotlib.figure.Figure`` (no global pyplot state) and written
atomically as PNG. Legends name the MAC reduction each model *achieved*, never only a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io import atomic_path
from .runs import runs_frame

MARKERS = "osD^vP<>Xph"


def _save(fig, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def _styles(methods: list[str]) -> dict[str, tuple[Any, str]]:
    """One fixed colour and marker per method, the same in every panel and figure."""
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    return {m: (palette(i % 20), MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def plot_pareto(table: pd.DataFrame, out: str | Path) -> None:
    """Accuracy vs achieved MACs, one panel per model: every (method, budget) at its mean over
    seeds with a 95% t-interval error bar; base starred, base-ft as a diamond; FCOS emphasised."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    models = list(dict.fromkeys(table["model"]))
    style = _styles(list(dict.fromkeys(table["method"])))
    fig = Figure(figsize=(5.8 * max(1, len(models)), 4.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, model in zip(axes, models):
        rows = table[table["model"] == model]
        for method, group in rows.groupby("method", sort=False):
            group = group.sort_values("macs")
            colour, marker = style[method]
            emphasis = method == "fcos"
            yerr = 100 * group["accuracy_ci95"].fillna(0.0).to_numpy()
            ax.errorbar(group["macs"] / 1e6, 100 * group["accuracy"], yerr=yerr,
                        color="black" if emphasis else colour,
                        marker={"base": "*", "base-ft": "D"}.get(method, marker),
                        markersize=13 if method in ("base", "fcos") else 5,
                        linewidth=2.2 if emphasis else 1.0, capsize=3, zorder=3 if emphasis else 2,
                        linestyle="-" if len(group) > 1 else "none", label=method)
        ax.set(xscale="log", xlabel="MACs of the final model (millions, log scale)",
               ylabel="Test accuracy (%)", title=f"{model} on {rows['dataset'].iloc[0]}")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    seeds = int(table["seeds"].max()) if len(table) else 0
    fig.suptitle(f"Accuracy vs achieved MACs (mean of {seeds} seed(s); bars: 95% t interval)", fontsize=10)
    _save(fig, out)


def plot_accuracy_vs_snr(records: list[dict], model: str, out: str | Path) -> None:
    """Accuracy vs SNR of one model: one panel per budget, one line per method (mean over seeds),
    labelled with the MAC reduction it achieved; base and base-ft in every panel."""
    from matplotlib.figure import Figure

    rows = []
    for r in records:
        if r["model"] != model:
            continue
        for snr, acc in r["per_snr"].items():
            rows.append({"method": r["method"], "budget": r.get("budget"), "seed": r["seed"],
                         "snr": int(snr), "accuracy": float(acc)})
    long = pd.DataFrame(rows)
    runs = runs_frame([r for r in records if r["model"] == model]) if rows else pd.DataFrame()
    budgets = sorted({b for b in long["budget"].dropna()}) if not long.empty else []
    panels = budgets or [None]
    fig = Figure(figsize=(5.4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    if long.empty:
        axes[0].text(0.5, 0.5, f"no runs of {model}", ha="center", va="center", transform=axes[0].transAxes)
    style = _styles(list(dict.fromkeys(long["method"]))) if not long.empty else {}
    achieved = (runs.groupby(["method", "budget_key"])["macs_reduction"].mean() if not runs.empty else None)
    for ax, budget in zip(axes, panels):
        if long.empty:
            break
        chosen = long[long["budget"].isna() | (long["budget"] == budget)]
        for (method, run_budget), group in chosen.groupby(["method", chosen["budget"].fillna(-1)], sort=False):
            curve = group.groupby("snr")["accuracy"].mean().sort_index()
            key = "none" if run_budget == -1 else f"{float(run_budget):g}"
            reduction = achieved.get((method, key), np.nan)
            label = method if method == "base" else f"{method} (−{100 * reduction:.1f}% MACs)"
            colour, marker = style[method]
            ax.plot(curve.index, 100 * curve.values, marker=marker, markersize=3, color=colour,
                    linewidth=2 if method == "fcos" else 1, label=label)
        num_classes = len(records[0].get("per_class") or {})
        if num_classes:
            ax.axhline(100.0 / num_classes, color="grey", linestyle=":", linewidth=1, label="chance")
        title = f"{model}" + ("" if budget is None else f", target {100 * budget:.0f}% fewer MACs")
        ax.set(xlabel="SNR (dB)", ylabel="Test accuracy (%)", title=title, ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=1)
    _save(fig, out)


def plot_training_curves(records: list[dict], out: str | Path) -> None:
    """Base models' training curves: per model, train loss and validation accuracy by epoch,
    one line per seed, the selected (best-on-validation) epoch marked."""
    from matplotlib.figure import Figure

    bases = [r for r in records if r["method"] == "base" and r.get("train_history")]
    models = list(dict.fromkeys(r["model"] for r in bases)) or ["(none)"]
    fig = Figure(figsize=(10, 3.4 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 2, squeeze=False)
    for row, model in enumerate(models):
        loss_ax, acc_ax = axes[row]
        runs = sorted((r for r in bases if r["model"] == model), key=lambda r: r["seed"])
        for index, run in enumerate(runs):
            history = run["train_history"]
            epochs = [h["epoch"] for h in history]
            colour = f"C{index}"
            loss_ax.plot(epochs, [h["loss"] for h in history], color=colour, label=f"seed {run['seed']}")
            if all("val_loss" in h for h in history):
                loss_ax.plot(epochs, [h["val_loss"] for h in history], color=colour, linestyle="--")
            accuracy = [100 * h["val_accuracy"] for h in history]
            acc_ax.plot(epochs, accuracy, color=colour, label=f"seed {run['seed']}")
            best = int(np.nanargmax(accuracy)) if accuracy else None
            if best is not None:
                acc_ax.plot(epochs[best], accuracy[best], "o", color=colour, markersize=6)
        loss_ax.set(xlabel="epoch", ylabel="loss (train solid, val dashed)", title=f"{model}: loss")
        acc_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{model}: validation accuracy "
                                                                            "(dot: selected epoch)")
        for ax in (loss_ax, acc_ax):
            ax.grid(alpha=0.3)
            if runs:
                ax.legend(fontsize=8)
        if not runs:
            loss_ax.text(0.5, 0.5, "no base training history", ha="center", transform=loss_ax.transAxes)
    _save(fig, out)


def plot_verdicts(verdicts: pd.DataFrame, out: str | Path) -> None:
    """FCOS minus each method (accuracy points, paired by seed) with its 95% interval, one panel
    per model, rows grouped by budget; right of the zero line = FCOS better."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(verdicts["model"])) if not verdicts.empty else ["(none)"]
    height = max(3.0, 0.22 * (len(verdicts) / max(1, len(models))) + 1.5)
    fig = Figure(figsize=(6.2 * len(models), height), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    colours = {"better": "tab:green", "worse": "tab:red"}
    for ax, model in zip(axes, models):
        rows = verdicts[verdicts["model"] == model] if not verdicts.empty else verdicts
        if rows.empty:
            ax.text(0.5, 0.5, "no paired comparison", ha="center", transform=ax.transAxes)
            continue
        labels = [f"{100 * b:.0f}%: {m} ({100 * r:.1f}%)" for b, m, r in
                  zip(rows["budget"], rows["method"], rows["method_macs_reduction"])]
        y = np.arange(len(rows))[::-1]
        diff = 100 * rows["difference"].to_numpy()
        low = 100 * rows["ci_low"].to_numpy()
        high = 100 * rows["ci_high"].to_numpy()
        err = np.vstack([diff - low, high - diff])
        err = np.where(np.isnan(err), 0.0, err)
        for yi, d, e0, e1, v in zip(y, diff, err[0], err[1], rows["verdict"]):
            ax.errorbar(d, yi, xerr=[[e0], [e1]], fmt="o", color=colours.get(v, "tab:grey"), capsize=3)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        reference = rows["reference"].iloc[0]
        ax.set(xlabel=f"{reference} − method (accuracy points; 95% t interval over seeds)",
               title=f"{model}: {reference} vs each method (achieved MAC reduction in brackets)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3, axis="x")
    _save(fig, out)
def plot_probe_curve(reports: Mapping[str, Mapping[str, Any]], out_png: str | Path, *,
                     title: str | None = None) -> None:
    """Probe accuracy by depth, one line per LaCD report (e.g. {"base": r0, "after stage 1": r1}).

    The reports must come from one model (same probe points). x: probe point (stem, then blocks
    in depth order). Blocks removed by the report's selection (``report["selection"]["removed"]``,
    else its collapsed blocks) are marked with a cross, collapsed but kept blocks with an open
    circle; unprobed (earlier removed) blocks leave a gap. A dotted line per report shows the model's own
    validation accuracy; a grey dashed line chance. Written atomically as PNG (Agg).
    """
    from matplotlib.figure import Figure

    if not reports:
        raise ConfigError("plot_probe_curve: no reports to plot")
    first = next(iter(reports.values()))
    names = [p["name"] for p in first["points"]]
    if any([p["name"] for p in report["points"]] != names for report in reports.values()):
        raise ConfigError("plot_probe_curve: the reports probe different points (different models?)")
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    labelled: set[str] = set()  # one legend entry per marker kind, only if it occurs

    def legend_label(text: str, used: bool) -> str | None:
        if not used or text in labelled:
            return None
        labelled.add(text)
        return text

    for index, (label, report) in enumerate(reports.items()):
        color = f"C{index}"
        points = report["points"]
        xs = list(range(len(points)))
        ys = [np.nan if p["accuracy"] is None else p["accuracy"] for p in points]
        ax.plot(xs, ys, "-o", color=color, markersize=3, label=label)
        removed = set((report.get("selection") or {}).get("removed", report.get("collapsed", [])))
        gone = [i for i, p in enumerate(points) if p["name"] in removed]
        kept = [i for i, p in enumerate(points) if p["collapsed"] and p["name"] not in removed]
        ax.plot(gone, [ys[i] for i in gone], "x", color="red", markersize=8, mew=2,
                label=legend_label("removed", bool(gone)))
        ax.plot(kept, [ys[i] for i in kept], "o", mfc="none", color="black", markersize=8,
                label=legend_label("collapsed, kept", bool(kept)))
        if report.get("model_accuracy") is not None:
            ax.axhline(report["model_accuracy"], color=color, linestyle=":", linewidth=1)
    ax.axhline(first["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_xlabel("probe point (depth order)")
    ax.set_ylabel("linear-probe val accuracy")
    ax.set_title(title or f"LaCD probes ({first['config']['pooling']} features)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out_png)
