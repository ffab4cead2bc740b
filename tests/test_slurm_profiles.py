"""profiles/slurm-noaccounting is profiles/slurm plus the settings for sites without accounting."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_noaccounting_profile_is_the_slurm_profile_plus_squeue_status():
    base = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    noacct = yaml.safe_load((ROOT / "profiles" / "slurm-noaccounting" / "config.yaml").read_text())
    extra = {k: v for k, v in noacct.items() if k not in base}
    assert extra == {"slurm-status-command": "squeue", "slurm-no-account": True}
    assert {k: noacct[k] for k in base} == base
