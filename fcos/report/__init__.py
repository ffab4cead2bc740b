"""The comparison report of one dataset: tables (CSV, Markdown, LaTeX), paired verdicts and figures.

Modules: ``runs`` (metrics JSON -> one row per run), ``stats`` (intervals over seeds, verdicts),
``tables`` (aggregation), ``render`` (Markdown/LaTeX), ``figures`` (PNG figures), ``dataset``
(``write_dataset_report``: every file of one dataset's report). Names are imported lazily, so
that the workflow can read ``REPORT_FILES`` without pandas or matplotlib.
"""

from __future__ import annotations

import importlib

#: The files of a dataset report: ``write_dataset_report`` keyword -> file name.
REPORT_FILES = {"csv": "table.csv", "markdown": "table.md", "latex": "table.tex",
                "verdicts_csv": "verdicts.csv", "verdicts_markdown": "verdicts.md",
                "pareto": "pareto.png", "verdicts_figure": "verdicts.png", "curves": "training_curves.png",
                "steps_csv": "steps.csv"}

_EXPORTS = {"write_dataset_report": "dataset", "comparison_table": "tables", "paired_verdicts": "tables",
            "steps_table": "tables", "markdown_table": "render", "latex_table": "render",
            "verdicts_markdown": "render", "load_metrics": "runs", "runs_frame": "runs"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REPORT_FILES", *_EXPORTS]
