"""Write the report of one dataset (tables, verdicts, figures) from its final metrics JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..errors import DataError
from ..io import atomic_write
from . import figures, render
from .runs import load_metrics
from .latency import join_latency, latency_table
from .tables import comparison_table, paired_verdicts, steps_table


def _write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False, float_format="%.6g")


def _write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_dataset_report(metrics_paths: Iterable[str | Path], *, csv: str | Path, markdown: str | Path,
                         latex: str | Path | None = None, verdicts_csv: str | Path | None = None,
                         verdicts_markdown: str | Path | None = None, pareto: str | Path | None = None,
                         verdicts_figure: str | Path | None = None, curves: str | Path | None = None,
                         snr_figures: Mapping[str, str | Path] | None = None,
                         step_metrics_paths: Iterable[str | Path] = (), steps_csv: str | Path | None = None,
                         latency_paths: Iterable[str | Path] = (), reference: str = "fcos") -> pd.DataFrame:
    """Write the report of one dataset from its final metrics JSON files; returns the table.

    ``csv``/``markdown``/``latex``: the comparison table; ``verdicts_*``: ``reference`` against
    every other method at each budget, paired by seed; ``pareto``: accuracy vs MACs with error
    bars; ``curves``: the base models' training curves; ``snr_figures``: {model: PNG} accuracy vs
    SNR; ``steps_csv``: every intermediate checkpoint (from ``step_metrics_paths``);
    ``latency_paths`` (latency JSON files, fcos.api.measure_checkpoint_latency) add latency,
    throughput and measured speedup columns (fcos.report.latency). Outputs given as None are
    not written.
    """
    records = load_metrics(metrics_paths)
    datasets = sorted({r["dataset"] for r in records})
    if len(datasets) != 1:
        raise DataError(f"a dataset report takes one dataset's metrics, got {', '.join(datasets)}")
    table = comparison_table(records)
    latency_paths = list(latency_paths)
    if latency_paths:
        table = join_latency(table, latency_table(latency_paths))
    verdicts = paired_verdicts(records, reference)
    _write_csv(csv, table)
    _write_text(markdown, f"# {datasets[0]}: accuracy and cost (test split)\n\n" + render.markdown_table(table))
    if latex is not None:
        _write_text(latex, render.latex_table(table))
    if verdicts_csv is not None:
        _write_csv(verdicts_csv, verdicts)
    if verdicts_markdown is not None:
        _write_text(verdicts_markdown, f"# {datasets[0]}: paired comparison\n\n" + render.verdicts_markdown(verdicts))
    if pareto is not None:
        figures.plot_pareto(table, pareto)
    if verdicts_figure is not None:
        figures.plot_verdicts(verdicts, verdicts_figure)
    if curves is not None:
        figures.plot_training_curves(records, curves)
    for model, path in (snr_figures or {}).items():
        figures.plot_accuracy_vs_snr(records, model, path)
    if steps_csv is not None:
        step_paths = list(step_metrics_paths)
        _write_csv(steps_csv, steps_table(load_metrics(step_paths)) if step_paths else pd.DataFrame())
    return table


