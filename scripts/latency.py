"""Snakemake step: inference latency of a checkpoint, timed interleaved with a reference model."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
from fcos.api import measure_checkpoint_latency
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    measure_checkpoint_latency(snakemake.input.checkpoint, snakemake.output.latency,  # noqa: F821
                               reference=snakemake.input.reference,  # noqa: F821
                               data_path=snakemake.input.data,  # noqa: F821
                               config=snakemake.params.latency,  # noqa: F821
                               extra=snakemake.params.extra, progress=False)  # noqa: F821
