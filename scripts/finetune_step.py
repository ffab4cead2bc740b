"""Snakemake step: recovery fine-tuning of a pruned checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
import torch
from fcos.api import finetune_checkpoint
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    finetune_checkpoint(snakemake.input.checkpoint, snakemake.input.data,  # noqa: F821
                        snakemake.output.checkpoint, snakemake.params.train,  # noqa: F821
                        recovery_share=snakemake.params.recovery_share)  # noqa: F821
