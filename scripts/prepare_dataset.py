"""Snakemake step: prepare one dataset (synthesise or load, split, write HDF5)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - this checkout's fcos library
from fcos.data import prepare_dataset
from fcos.runlog import logging_to

with logging_to(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    prepare_dataset(snakemake.wildcards.dataset, out=snakemake.output[0], progress=True,  # noqa: F821
                    **snakemake.params.options)  # noqa: F821
