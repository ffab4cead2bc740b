"""Checkpoint payloads and rebuilding a model from one.

A checkpoint never pickles a model object. It stores the base builder's arguments
(``model``: name, num_classes, length; for a user's network also ``builder``: its file,
function, arguments and the file's SHA-256), a JSON-like ``architecture`` record of the surgery applied
to the base architecture (empty for a base model), and the state dict. Rebuilding = build the base
model, replay the architecture record (fcos.prune.surgery), load the state dict; everything loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import CheckpointError
from .io import load_checkpoint

CHECKPOINT_FORMAT = "fcos-checkpoint/1"


def base_model(info: dict, where: str = "checkpoint") -> nn.Module:
    """The unpruned model a checkpoint's ``model`` entry describes: a registry model
    (name, num_classes, length), or a user's network when the entry has a ``builder`` record
    (fcos.models.user_builder: the file is checked against its recorded SHA-256)."""
    from .models import build_model

    if not isinstance(info, dict) or not {"name", "num_classes", "length"} <= set(info):
        raise CheckpointError(f"{where}: missing 'model' entry with name, num_classes and length")
    if info.get("builder") is not None:
        from .models.user_builder import build_from_record

        return build_from_record(info["builder"], where)
    return build_model(info["name"], int(info["num_classes"]), int(info["length"]))


def is_user_model(info: dict) -> bool:
    """True when a checkpoint's ``model`` entry names a user's builder, not a registry model."""
    return isinstance(info, dict) and info.get("builder") is not None


def model_from_checkpoint(checkpoint: dict | str | Path) -> nn.Module:
    """Return the model stored in a checkpoint (a payload dict or a path), in eval mode on CPU."""
    from .prune.surgery import apply_architecture

    payload = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    where = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    model = base_model(payload.get("model"), where)
    model = apply_architecture(model, payload.get("architecture") or {}, payload["state_dict"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{where}: state dict does not fit the recorded architecture ({first})") from None
    return model.eval()


def merge_architecture(parent: dict, step: dict) -> dict:
    """Compose the architecture record of a pruning step applied on top of ``parent``'s.

    Removed blocks accumulate; ``resized`` stays on once any step narrowed a layer. The widths
    themselves are not recorded: they are read from the final state dict at rebuild time.
    """
    merged = dict(parent or {})
    removed = dict(merged.get("removed_blocks") or {})
    removed.update(step.get("removed_blocks") or {})
    if removed:
        merged["removed_blocks"] = removed
    if parent.get("resized") or step.get("resized"):
        merged["resized"] = True
    for key, value in step.items():
        if key not in ("removed_blocks", "resized"):
            merged[key] = value
    return merged
