"""Snakemake step: LaCD diagnosis (probe accuracy per block) of a checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
import torch
from fcos.api import diagnose_checkpoint
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    diagnose_checkpoint(snakemake.input.checkpoint, snakemake.input.data, snakemake.output.report,  # noqa: F821
                        options=snakemake.params.options, seed=snakemake.params.seed,  # noqa: F821
                        **snakemake.params.devices)  # noqa: F821
