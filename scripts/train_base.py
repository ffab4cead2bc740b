"""Snakemake step: train a base model and write its best-on-validation checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
import torch
from fcos.api import train_base_model
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    train_base_model(snakemake.input.data, snakemake.wildcards.model,  # noqa: F821
                     snakemake.output.checkpoint, snakemake.params.train,  # noqa: F821
                     builder=snakemake.params.builder)  # noqa: F821
