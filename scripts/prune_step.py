"""Snakemake step: one pruning step of a method's chain (not yet fine-tuned)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
import torch
from fcos.api import prune_checkpoint
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    prune_checkpoint(snakemake.input.parent, snakemake.input.data, snakemake.wildcards.pruner,  # noqa: F821
                     snakemake.output.checkpoint, snakemake.output.record,  # noqa: F821
                     budget=snakemake.params.budget, seed=snakemake.params.seed,  # noqa: F821
                     options=snakemake.params.options, **snakemake.params.devices)  # noqa: F821
