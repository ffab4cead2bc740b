"""The comparison tables: one row per (dataset, model, method, budget) aggregated over seeds,
the paired verdicts of FCOS against every other method at each budget, and the table of
intermediate checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import runs_frame
from .stats import mean_interval, sampling_standard_error, verdict

FAMILY_ORDER = {"reference": 0, "channel": 1, "layer": 2, "fcos": 3, "other": 4}
KEYS = ["dataset", "model", "method", "budget_key"]


def _paired_drop(runs: pd.DataFrame, reference: str) -> pd.Series:
    """Per run: accuracy of ``reference`` (same dataset, model, seed) minus the run's; NaN without one."""
    ref = runs[runs["method"] == reference].groupby(["dataset", "model", "seed"])["accuracy"].mean()
    keys = list(zip(runs["dataset"], runs["model"], runs["seed"]))
    return pd.Series([ref.get(key, np.nan) for key in keys], index=runs.index) - runs["accuracy"]


def comparison_table(records: list[dict]) -> pd.DataFrame:
    """One row per (dataset, model, method, budget) over seeds.

    Columns: dataset, model, family, method, budget (target MAC reduction, NaN if none), seeds,
    accuracy (mean), accuracy_std, accuracy_ci95 (half-width of the 95% t interval),
    accuracy_test_se (binomial standard error of one accuracy on the test split: the part of the
    spread that more test frames would remove; NaN when the records lack ``n_test``),
    accuracy_high_snr (mean, frames >= 10 dB), drop_vs_base and drop_vs_base_ft (mean over seeds
    of the paired difference to the ``base`` / ``base-ft`` run of the same seed; NaN without
    one), macs, params (means), macs_reduction (achieved, mean) with its min and max over seeds,
    params_reduction, recovery_epochs (mean and max of the epochs trained after the base model),
    off_target (some seed's achieved reduction is more than 2 points from the budget).
    """
    runs = runs_frame(records)
    runs["drop_vs_base"] = _paired_drop(runs, "base")
    runs["drop_vs_base_ft"] = _paired_drop(runs, "base-ft")
    rows = []
    for key, group in runs.groupby(KEYS, sort=False):
        mean, std, half = mean_interval(group["accuracy"].tolist())
        first = group.iloc[0]
        rows.append({
            "dataset": key[0], "model": key[1], "family": first["family"], "method": key[2],
            "budget": first["budget"], "seeds": int(group["seed"].nunique()),
            "accuracy": mean, "accuracy_std": std, "accuracy_ci95": half,
            "accuracy_test_se": sampling_standard_error(mean, int(group["n_test"].min())),
            "accuracy_high_snr": float(group["accuracy_high_snr"].mean()),
            "drop_vs_base": float(group["drop_vs_base"].mean()),
            "drop_vs_base_ft": float(group["drop_vs_base_ft"].mean()),
            "macs": int(round(group["macs"].mean())), "params": int(round(group["params"].mean())),
            "macs_reduction": float(group["macs_reduction"].mean()),
            "macs_reduction_min": float(group["macs_reduction"].min()),
            "macs_reduction_max": float(group["macs_reduction"].max()),
            "params_reduction": float(group["params_reduction"].mean()),
            "recovery_epochs": float(group["recovery_epochs"].mean()),
            "recovery_epochs_max": float(group["recovery_epochs"].max()),
            "off_target": bool(group["off_target"].any()),
        })
    table = pd.DataFrame(rows)
    table["_family"] = table["family"].map(FAMILY_ORDER).fillna(len(FAMILY_ORDER))
    table["_budget"] = table["budget"].fillna(-1.0)
    table = table.sort_values(["dataset", "model", "_budget", "_family", "method"], kind="stable")
    return table.drop(columns=["_family", "_budget"]).reset_index(drop=True)


def paired_verdicts(records: list[dict], reference: str = "fcos") -> pd.DataFrame:
    """FCOS (``reference``) against every other method at the same budget, paired by seed.

    One row per (dataset, model, budget, other method): seeds paired, the two mean accuracies,
    difference = reference - other (mean over seeds), its 95% t interval (ci_low, ci_high), the
    two achieved MAC reductions and ``verdict``: better / worse when the interval excludes 0,
    else not distinguishable (one seed: no interval).
    """
    runs = runs_frame(records)
    rows = []
    mine = runs[runs["method"] == reference]
    for (dataset, model, budget), own in mine.groupby(["dataset", "model", "budget_key"], sort=False):
        others = runs[(runs["dataset"] == dataset) & (runs["model"] == model) & (runs["budget_key"] == budget)
                      & (runs["method"] != reference)]
        own_by_seed = own.set_index("seed")
        for method, other in others.groupby("method", sort=False):
            other_by_seed = other.set_index("seed")
            seeds = sorted(set(own_by_seed.index) & set(other_by_seed.index))
            if not seeds:
                continue
            differences = [float(own_by_seed.loc[s, "accuracy"] - other_by_seed.loc[s, "accuracy"]) for s in seeds]
            mean, _, half = mean_interval(differences)
            low, high = mean - half, mean + half
            rows.append({
                "dataset": dataset, "model": model, "budget": own["budget"].iloc[0],
                "method": method, "family": other["family"].iloc[0], "seeds": len(seeds),
                "reference": reference,
                "reference_accuracy": float(own_by_seed.loc[seeds, "accuracy"].mean()),
                "method_accuracy": float(other_by_seed.loc[seeds, "accuracy"].mean()),
                "difference": mean, "ci_low": low, "ci_high": high,
                "reference_macs_reduction": float(own_by_seed.loc[seeds, "macs_reduction"].mean()),
                "method_macs_reduction": float(other_by_seed.loc[seeds, "macs_reduction"].mean()),
                "verdict": verdict(low, high, len(seeds)),
            })
    columns = ["dataset", "model", "budget", "method", "family", "seeds", "reference", "reference_accuracy",
               "method_accuracy", "difference", "ci_low", "ci_high", "reference_macs_reduction",
               "method_macs_reduction", "verdict"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame["_family"] = frame["family"].map(FAMILY_ORDER).fillna(len(FAMILY_ORDER))
    frame = frame.sort_values(["dataset", "model", "budget", "_family", "method"], kind="stable")
    return frame.drop(columns="_family").reset_index(drop=True)


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
