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

import torch
from torch import nn

from .errors import CheckpointError, FcosError
from .io import load_checkpoint

CHECKPOINT_FORMAT = "fcos-checkpoint/1"
#: Largest input length and class count a checkpoint may record (64x the largest dataset's;
#: bounds the memory a model built from an edited record can take).
MAX_LENGTH = 1 << 16
MAX_CLASSES = 1 << 16
_HEX = set("0123456789abcdef")


def _fail(where: str, key: str, found, expected: str) -> None:
    shown = repr(found) if len(repr(found)) <= 60 else f"a {type(found).__name__}"
    raise CheckpointError(f"{where}: {key} is {shown} (expected {expected})")


def _check_int(where: str, key: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(where, key, value, f"an integer in {low}..{high}")
    return value


def validate_model_payload(payload: dict, where: str, require_dataset: bool = True) -> dict:
    """Check the entries of a model checkpoint's payload; return it, or raise a one-line
    CheckpointError naming ``where`` and the entry.

    Checked: ``state_dict`` (str -> tensor), ``model`` (a registered name, num_classes in
    2..MAX_CLASSES, length in 1..MAX_LENGTH), ``architecture`` (a dict; its keys are checked on
    rebuild), ``dataset`` (name, 64-hex sha256, one class name per output, the model's length;
    required when ``require_dataset``), ``train`` and ``extra`` (dicts; ``extra.recovery`` and
    ``extra.prune_steps`` of the shapes the pipeline writes), ``format``.
    """
    from .models import MODELS

    if not isinstance(payload, dict):
        _fail(where, "payload", payload, "a dict")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        _fail(where, "state_dict", state, "a dict of parameter name -> tensor")
    if "format" in payload and payload["format"] != CHECKPOINT_FORMAT:
        _fail(where, "format", payload["format"], repr(CHECKPOINT_FORMAT))
    info = payload.get("model")
    if not isinstance(info, dict) or not {"name", "num_classes", "length"} <= set(info):
        _fail(where, "model", info, "a dict with name, num_classes and length")
    if is_user_model(info):
        if not isinstance(info["name"], str) or not isinstance(info["builder"], dict):
            _fail(where, "model.builder", info["builder"], "a builder record (file, function, args, sha256)")
    elif not isinstance(info["name"], str) or info["name"] not in MODELS:
        _fail(where, "model.name", info["name"], f"one of {', '.join(sorted(MODELS))}")
    classes = _check_int(where, "model.num_classes", info["num_classes"], 2, MAX_CLASSES)
    length = _check_int(where, "model.length", info["length"], 1, MAX_LENGTH)
    architecture = payload.get("architecture")
    if architecture is not None and not isinstance(architecture, dict):
        _fail(where, "architecture", architecture, "a dict (the surgery record)")
    removed = (architecture or {}).get("removed_blocks")
    if removed is not None and not (isinstance(removed, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in removed.items())):
        _fail(where, "architecture.removed_blocks", removed, "a dict of block name -> replacement")
    for key in ("train", "extra"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            _fail(where, key, payload[key], "a dict")
    extra = payload.get("extra") or {}
    recovery = extra.get("recovery")
    if recovery is not None and not (isinstance(recovery, dict) and isinstance(recovery.get("steps"), list)
                                     and not isinstance(recovery.get("epochs"), bool)
                                     and isinstance(recovery.get("epochs"), int) and recovery["epochs"] >= 0):
        _fail(where, "extra.recovery", recovery, "a dict with epochs (int >= 0) and steps (a list)")
    steps = extra.get("prune_steps")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, dict) for s in steps)):
        _fail(where, "extra.prune_steps", steps, "a list of step records")
    dataset = payload.get("dataset")
    if dataset is None and not require_dataset:
        return payload
    if not isinstance(dataset, dict):
        _fail(where, "dataset", dataset, "a dict with name, sha256, classes and length")
    if not isinstance(dataset.get("name"), str):
        _fail(where, "dataset.name", dataset.get("name"), "a dataset name")
    sha = dataset.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX):
        _fail(where, "dataset.sha256", sha, "64 hexadecimal digits")
    names = dataset.get("classes")
    if not (isinstance(names, list) and all(isinstance(c, str) for c in names)) or len(names) != classes:
        _fail(where, "dataset.classes", names, f"a list of {classes} class names, one per model output")
    if dataset.get("length") != length or isinstance(dataset.get("length"), bool):
        _fail(where, "dataset.length", dataset.get("length"), f"the model's length {length}")
    return payload


def load_model_checkpoint(path: str | Path) -> dict:
    """Load a model checkpoint file (fcos.io.load_checkpoint: seal verified) and validate its
    entries (validate_model_payload)."""
    return validate_model_payload(load_checkpoint(path), str(path))


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
    """Return the model stored in a checkpoint (a payload dict or a path), in eval mode on CPU.

    A path is loaded with load_model_checkpoint; a dict is validated with validate_model_payload
    (its ``dataset`` entry may be absent). A user's network is rebuilt with its recorded builder
    (base_model). Raises a one-line CheckpointError for any entry the model cannot be rebuilt from.
    """
    from .prune.surgery import apply_architecture

    if isinstance(checkpoint, dict):
        where = "checkpoint"
        payload = validate_model_payload(checkpoint, where, require_dataset=False)
    else:
        where = str(checkpoint)
        payload = load_model_checkpoint(checkpoint)
    info = payload["model"]
    try:
        model = base_model(info, where)
    except CheckpointError:
        raise
    except FcosError as err:
        raise CheckpointError(f"{where}: model entry {info}: {err}") from None
    try:
        model = apply_architecture(model, payload.get("architecture") or {}, payload["state_dict"])
        model.load_state_dict(payload["state_dict"])
    except FcosError as err:
        raise CheckpointError(f"{where}: {err}") from None
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
        # an edited state dict can fail the rebuild in many places; all mean the same thing
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{where}: state dict does not fit the recorded architecture "
                              f"({type(err).__name__}: {first[:200]})") from None
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
