# fcos-amr: datasets x models x methods x seeds, from data preparation to the comparison report.
# Usage: snakemake --cores 8 --use-conda          (conda; every rule names environment.yml)
#        snakemake --cores 2                      (the project's venv, as in the README)
#        snakemake --profile profiles/slurm       (a SLURM cluster)
#        snakemake --configfile config/paper.yaml (the paper's real datasets)
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default applies only when no --configfile is given: Snakemake would otherwise
# merge it under the user's file (e.g. leave a synthetic rml2016 entry in a real-data config).
# `--config key=value` still overrides single keys of whichever file is in use.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Our own check first: its error is one line naming the key (Snakemake's quotes the schema);
# Snakemake's validate then fills the defaults.
sys.path.insert(0, workflow.basedir)  # this checkout's fcos library
from fcos.config_check import refuse_config, schema_problem  # noqa: E402


if (_problem := schema_problem(config, os.path.join(workflow.basedir, "config/schema.yaml"))) is not None:
    refuse_config(_problem)
validate(config, "config/schema.yaml")

include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/prune.smk"
include: "rules/probes.smk"
include: "rules/evaluate.smk"
include: "rules/latency.smk"
include: "rules/report.smk"


rule all:
    input:
        all_report_outputs(),
        all_probe_curves(),
    default_target: True


onsuccess:
    print("\nfcos-amr finished. Tables, figures and metrics:")
    for path in all_report_outputs():
        print(f"  {path}")
    print(f"  per-run metrics and checkpoints: {results('<dataset>', '<model>', 'seed<seed>', '<method>')}")
    print("  browsable report: snakemake --report report.html")
