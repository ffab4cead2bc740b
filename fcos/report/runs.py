"""Reading metrics JSON files into one table of runs (one row per dataset x model x method x
budget x seed).

Input: the metrics JSON written by ``fcos evaluate`` (fcos.train.evaluate_checkpoint plus the
pipeline's method, budget and seed), carrying at least ``dataset``, ``model``, ``method``,
``seed``, ``accuracy``, ``per_snr``, ``macs`` and ``params``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import DataError

REQUIRED_KEYS = ("dataset", "model", "method", "seed", "accuracy", "per_snr", "macs", "params")
#: A run whose achieved MAC reduction is further than this from its budget is flagged.
OFF_TARGET = 0.02
UNBUDGETED = "none"


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
        if not isinstance(record, dict):
            raise DataError(f"{path}: expected a JSON object of metrics")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise DataError(f"{path}: metrics file lacks key(s) {', '.join(missing)}")
        record.setdefault("budget", None)
        records.append(record)
    if not records:
        raise DataError("no metrics files to report on")
    return records


def budget_key(budget: float | None) -> str:
    """The budget as the workflow spells it in paths (``0.5``), or ``none``."""
    return UNBUDGETED if budget is None or (isinstance(budget, float) and math.isnan(budget)) else f"{float(budget):g}"


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: identifiers, family, accuracy (all and high SNR), cost and its
    reductions against the base model, the recovery epochs used, and the off-target flag.

    Reductions come from the record (measured against the base architecture by
    ``evaluate_checkpoint``); records without them are measured against the mean cost of the
    ``base`` runs of the same dataset and model.
    """
    from ..prune.chains import method_family

    rows = []
    for r in records:
        method = str(r["method"])
        family = r.get("family")
        if family is None:
            try:
                family = method_family(method)
            except Exception:  # a name outside chains.yaml (intermediate step, user method)
                family = "other"
        recovery = r.get("recovery") or {}
        rows.append({
            "dataset": r["dataset"], "model": r["model"], "method": method, "family": family,
            "budget": np.nan if r.get("budget") is None else float(r["budget"]),
            "budget_key": budget_key(r.get("budget")), "seed": int(r["seed"]),
            "accuracy": float(r["accuracy"]), "n_test": int(r.get("n_test") or 0),
            "accuracy_high_snr": np.nan if r.get("accuracy_high_snr") is None else float(r["accuracy_high_snr"]),
            "macs": int(r["macs"]), "params": int(r["params"]),
            "macs_reduction": r.get("macs_reduction", np.nan),
            "params_reduction": r.get("params_reduction", np.nan),
            "recovery_epochs": recovery.get("epochs", np.nan) if method != "base" else 0,
            "recovery_budget_epochs": recovery.get("budget_epochs", np.nan),
        })
    frame = pd.DataFrame(rows)
    base = frame[frame["method"] == "base"].groupby(["dataset", "model"])[["macs", "params"]].mean()
    for column in ("macs", "params"):
        missing = frame[f"{column}_reduction"].isna()
        if missing.any():
            keys = list(zip(frame.loc[missing, "dataset"], frame.loc[missing, "model"]))
            reference = [base.loc[key, column] if key in base.index else np.nan for key in keys]
            frame.loc[missing, f"{column}_reduction"] = 1.0 - frame.loc[missing, column] / np.array(reference)
        frame[f"{column}_reduction"] = frame[f"{column}_reduction"].astype(float)
    frame["off_target"] = (frame["budget"].notna()
                           & ((frame["macs_reduction"] - frame["budget"]).abs() > OFF_TARGET))
    return frame
