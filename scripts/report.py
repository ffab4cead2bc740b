"""Snakemake step: comparison table and accuracy-vs-SNR figures for one dataset."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
from fcos.report import write_dataset_report
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    write_dataset_report(snakemake.input.metrics, csv_path=snakemake.output.csv,  # noqa: F821
                         markdown_path=snakemake.output.markdown,  # noqa: F821
                         figure_paths=dict(zip(snakemake.params.models, snakemake.output.figures)),  # noqa: F821
                         pareto_path=snakemake.output.pareto,  # noqa: F821
                         step_metrics_paths=snakemake.input.step_metrics,  # noqa: F821
                         steps_csv_path=snakemake.output.steps,  # noqa: F821
                         latency_paths=snakemake.input.latency)  # noqa: F821
