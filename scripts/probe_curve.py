"""Snakemake step: probe-accuracy-by-depth figure from LaCD reports."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
from fcos.api import plot_probe_curves
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    labels = snakemake.params.labels  # noqa: F821
    plot_probe_curves({labels[0]: snakemake.input.base, labels[1]: snakemake.input.lacd},  # noqa: F821
                      snakemake.output.figure, title=snakemake.params.title)  # noqa: F821
