"""Snakemake step: evaluate a checkpoint on the test split and write metrics JSON."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
import torch
from fcos.api import evaluate_to_json
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    evaluate_to_json(snakemake.input.checkpoint, snakemake.input.data,  # noqa: F821
                     snakemake.output.metrics, device=snakemake.params.device,  # noqa: F821
                     extra=snakemake.params.extra)  # noqa: F821
