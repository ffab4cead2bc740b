"""Snakemake step: comparison tables, paired verdicts and figures for one dataset."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
from fcos.report import write_dataset_report
from fcos.runlog import logging_to

output = snakemake.output  # noqa: F821 - injected by Snakemake
with logging_to(snakemake.log[0]):  # noqa: F821
    write_dataset_report(
        snakemake.input.metrics, csv=output.csv, markdown=output.markdown, latex=output.latex,  # noqa: F821
        verdicts_csv=output.verdicts_csv, verdicts_markdown=output.verdicts_markdown,
        pareto=output.pareto, verdicts_figure=output.verdicts_figure, curves=output.curves,
        snr_figures=dict(zip(snakemake.params.models, output.snr_figures)),  # noqa: F821
        step_metrics_paths=snakemake.input.step_metrics, steps_csv=output.steps_csv,  # noqa: F821
        latency_paths=snakemake.input.latency)  # noqa: F821
