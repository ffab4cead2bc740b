"""One-call entry points shared by the CLI and the Snakemake scripts.

Each function takes file paths and plain values, does one pipeline step, and writes its outputs
atomically. Lower-level building blocks live in fcos.data, fcos.models, fcos.train, fcos.prune.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import write_json


def train_base_model(data_path: str | Path, model_name: str, out: str | Path,
                     train_options: dict[str, Any] | None = None, progress: bool = True) -> dict:
    """Train ``model_name`` from scratch on a prepared dataset; write the best-on-val checkpoint.

    ``train_options`` are TrainConfig fields (unknown keys are refused). The model's initial
    weights are drawn after seeding with ``train_options["seed"]`` (default 0).
    """
    from .data import load_prepared
    from .models import build_model
    from .train import TrainConfig, seed_everything, train_model

    config = TrainConfig.from_dict(dict(train_options or {}))
    data = load_prepared(data_path)
    seed_everything(config.seed)
    model = build_model(model_name, data.num_classes, data.length)
    info = {"name": model_name, "num_classes": data.num_classes, "length": data.length}
    return train_model(model, data, config, out, model_info=info, progress=progress)


def evaluate_to_json(checkpoint: str | Path, data_path: str | Path, out: str | Path,
                     split: str = "test", device: str = "auto", extra: dict | None = None) -> dict:
    """Evaluate a checkpoint on a prepared split and write the metrics JSON (see evaluate_checkpoint)."""
    from .data import load_prepared
    from .train import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, load_prepared(data_path), split=split, device=device)
    metrics.update(extra or {})
    write_json(out, metrics)
    return metrics
