"""One-call entry points shared by the CLI and the Snakemake scripts.

Each function takes file paths and plain values, does one pipeline step, and writes its outputs
atomically. Lower-level building blocks live in fcos.data, fcos.models, fcos.train, fcos.prune.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .io import check_output_path, write_json


def train_base_model(data_path: str | Path, model_name: str, out: str | Path,
                     train_options: dict[str, Any] | None = None, progress: bool = True,
                     builder: Any = None, max_in_memory_mb: float | None = None) -> dict:
    """Train ``model_name`` from scratch on a prepared dataset; write the best-on-val checkpoint.

    ``train_options`` are TrainConfig fields (unknown keys are refused). The model's initial
    weights are drawn after seeding with ``train_options["seed"]`` (default 0).
    ``builder`` (a fcos.models.user_builder.UserBuilder): train the user's network it builds
    instead of a registry model (``model_name`` is then only its label); the checkpoint records
    the builder (file, function, arguments, file SHA-256) so every later step rebuilds it.
    The device settings are ``train_options``' device, mixed_precision and loader_workers;
    ``max_in_memory_mb`` (default: ``FCOS_MAX_IN_MEMORY_MB``) is fcos.data.load_prepared's.
    """
    from .data import load_prepared
    from .models import build_model
    from .train import TrainConfig, resolve_device, seed_everything, train_model

    check_output_path(out, data_path)
    config = TrainConfig.from_dict(dict(train_options or {}))
    resolve_device(config.device)  # a missing CUDA device is refused before any work
    data = load_prepared(data_path, max_in_memory_mb)
    seed_everything(config.seed)
    info = {"name": model_name, "num_classes": data.num_classes, "length": data.length}
    if builder is None:
        model = build_model(model_name, data.num_classes, data.length)
    else:
        model, info["builder"] = user_base_model(builder, data.num_classes, data.length)
    return train_model(model, data, config, out, model_info=info, progress=progress)


def user_base_model(builder: Any, num_classes: int, length: int):
    """(model, builder record) of a user's builder for ``num_classes`` and frames of ``length``:
    the builder gets num_classes/length where it takes them; ConfigError (one line) when the
    model does not map (B, 2, length) frames to (B, num_classes) logits."""
    import torch

    from .errors import ConfigError
    from .models.user_builder import build_user_model, builder_record, complete_args

    builder = complete_args(builder, num_classes, length)
    model = build_user_model(builder)
    try:
        with torch.no_grad():
            shape = tuple(model.eval()(torch.zeros(2, 2, length)).shape)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(f"{builder.spec}: the model does not run on (B, 2, {length}) I/Q frames "
                          f"({type(err).__name__}: {first})") from None
    if shape != (2, num_classes):
        raise ConfigError(f"{builder.spec}: the model outputs {shape} for 2 frames, expected "
                          f"(2, {num_classes}) logits")
    return model.train(), builder_record(builder)


def evaluate_to_json(checkpoint: str | Path, data_path: str | Path, out: str | Path,
                     split: str = "test", device: str = "auto", extra: dict | None = None,
                     allow_other_split: bool = False, loader_workers: int | None = None,
                     max_in_memory_mb: float | None = None) -> dict:
    """Evaluate a checkpoint on a prepared split and write the metrics JSON (see evaluate_checkpoint).

    A checkpoint trained on another prepared file (another split of the same raw data, whose
    test set may overlap the checkpoint's training set) is refused unless ``allow_other_split``,
    which evaluates with a warning. ``device``, ``loader_workers``: where it runs (float32);
    ``max_in_memory_mb`` as for train_base_model."""
    from .data import load_prepared
    from .device import check_workers, resolve_device
    from .train import evaluate_checkpoint

    check_output_path(out, checkpoint, data_path)
    resolve_device(device, key="device")
    check_workers(loader_workers, "loader_workers")
    metrics = evaluate_checkpoint(checkpoint, load_prepared(data_path, max_in_memory_mb), split=split,
                                  device=device, allow_other_split=allow_other_split,
                                  loader_workers=loader_workers)
    metrics.update(extra or {})
    write_json(out, metrics)
    return metrics


def prune_checkpoint(checkpoint: str | Path, data_path: str | Path | None, pruner: str, out: str | Path,
                     record_out: str | Path, *, budget: float | None = None, seed: int = 0,
                     options: dict[str, Any] | None = None, progress: bool = True,
                     builder: Any = None, device: str = "auto", mixed_precision: str = "off",
                     loader_workers: int | None = None, max_in_memory_mb: float | None = None) -> dict:
    """Apply pruner ``pruner`` to a checkpoint's model; write the pruned checkpoint.

    A user's network (a checkpoint whose model entry records a builder, see train_base_model)
    is pruned through prune_model without a registry name: its channel groups, blocks and stem
    are traced. ``builder`` (a UserBuilder) rebuilds the checkpoint's model with that builder
    instead of the recorded one (a moved or edited builder file); its record replaces the old.

    ``budget`` is the MAC reduction the pruned model should have against the *base* model the
    chain started from (so a later step of a chain lands the final model on the budget); the
    pruner receives the equivalent reduction of its own input (``budget_vs_input`` in the record).
    ``data_path`` (a prepared dataset) is needed by data-driven methods (LaCD, layer baselines,
    slimming, Taylor); data-free ones accept None.

    The pruned checkpoint keeps the parent's model/dataset entries, composes the architecture
    record (fcos.checkpoint.merge_architecture), appends this step to ``extra["prune_steps"]``
    and adds any training the pruner did (``training_epochs``) to ``extra["recovery"]``. It is
    not fine-tuned (see finetune_checkpoint). ``record_out`` gets the pruner's JSON record plus
    MACs/params before and after. Returns that record.

    ``device``, ``mixed_precision``, ``loader_workers``: the run's device settings (the
    training's, fcos.device), used by every pruner that runs the model on data unless its
    ``options`` set them (see fcos.prune.base.prune_model); checked before any work.
    ``max_in_memory_mb`` as for train_base_model.
    """
    import copy

    import torch

    from .checkpoint import CHECKPOINT_FORMAT, base_model, is_user_model, load_model_checkpoint, \
        merge_architecture, model_from_checkpoint
    from .data import load_prepared
    from .io import save_checkpoint
    from .metrics import macs_and_params
    from .prune import prune_model
    from .prune.base import check_budget
    from .train import check_compatible, seed_everything

    from .data.split import check_seed
    from .device import check_device_settings

    check_output_path(out, checkpoint, data_path)
    check_output_path(record_out, checkpoint, data_path, out)
    budget = check_budget(budget)
    seed = check_seed(seed)
    check_device_settings(device, mixed_precision, loader_workers)
    payload = load_model_checkpoint(checkpoint)
    if builder is not None:
        info = dict(payload.get("model") or {})
        _, info["builder"] = user_base_model(builder, int(info["num_classes"]), int(info["length"]))
        payload = {**payload, "model": info}
    data = None
    if data_path is not None:  # data-free methods (fcos-stage1, l1, fpgm, random) need none
        data = load_prepared(data_path, max_in_memory_mb)
        check_compatible(payload, data, checkpoint)
    model = model_from_checkpoint(payload)
    info = payload["model"]
    length = int(info["length"])
    macs_before, params_before = macs_and_params(copy.deepcopy(model), length)
    base_macs, _ = macs_and_params(base_model(info, str(checkpoint)), length)
    budget_vs_input = None if budget is None else max(0.0, 1.0 - (1.0 - budget) * base_macs / macs_before)
    seed_everything(seed)
    user = is_user_model(info)  # a user's network: no registry name, its dataflow is traced
    result = prune_model(pruner, model, model_name=None if user else info["name"],
                         budget=budget_vs_input, data=data, seed=seed, options=options,
                         progress=progress, device=device, mixed_precision=mixed_precision,
                         loader_workers=loader_workers,
                         example_input=torch.zeros(2, 2, length) if user and data is None else None)
    macs_after, params_after = macs_and_params(copy.deepcopy(result.model), length)
    training_epochs = int(result.record.get("training_epochs", 0))
    record = {
        "pruner": pruner, "budget": budget, "budget_vs_input": budget_vs_input, "seed": seed,
        "options": dict(options or {}), "parent": str(checkpoint),
        "base_macs": int(base_macs), "macs_before": int(macs_before), "macs_after": int(macs_after),
        "params_before": int(params_before), "params_after": int(params_after),
        "macs_reduction_vs_base": 1.0 - macs_after / base_macs,
        "training_epochs": training_epochs,
        "details": result.record,
    }
    extra = dict(payload.get("extra") or {})
    extra["prune_steps"] = list(extra.get("prune_steps", [])) + [
        {k: v for k, v in record.items() if k != "details"}]
    extra["recovery"] = _recovery_after(extra.get("recovery"), f"prune:{pruner}", training_epochs)
    pruned = {
        "format": CHECKPOINT_FORMAT,
        "fcos_version": payload.get("fcos_version"),
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "model": dict(payload["model"]),
        "architecture": merge_architecture(payload.get("architecture") or {}, result.architecture),
        "dataset": dict(payload["dataset"]),
        "train": dict(payload.get("train") or {}),
        "extra": extra,
    }
    # The checkpoint first: a record never describes a checkpoint that was not written.
    save_checkpoint(out, pruned)
    write_json(record_out, record)
    return record


def seal_checkpoint(checkpoint: str | Path, out: str | Path) -> dict:
    """Write a sealed copy (fcos.sealing) of a checkpoint written before checkpoints carried a
    checksum, after checking its structure and, for a model checkpoint, that the model rebuilds
    from it. A sealed input is verified first (a damaged file is never re-sealed). Returns
    {"checkpoint", "out", "was_sealed", "kind"}."""
    from .checkpoint import model_from_checkpoint, validate_model_payload
    from .io import load_checkpoint, save_checkpoint

    check_output_path(out, checkpoint)
    payload = load_checkpoint(checkpoint, require_seal=False)
    kind = "resume state" if "fingerprint" in payload else "model"
    if kind == "model":
        model_from_checkpoint(validate_model_payload(payload, str(checkpoint)))
    save_checkpoint(out, payload)
    return {"checkpoint": str(checkpoint), "out": str(out), "was_sealed": "checksum" in payload, "kind": kind}


def _recovery_after(recovery: dict | None, step: str, epochs: int) -> dict:
    """The recovery account (epochs trained since the base model, per step) after one more step."""
    recovery = dict(recovery or {"epochs": 0, "steps": []})
    return {**recovery, "epochs": int(recovery["epochs"]) + int(epochs),
            "steps": list(recovery["steps"]) + [{"step": step, "epochs": int(epochs)}]}


def recovery_epochs_allowed(budget_epochs: int, used: int, share: float = 1.0) -> int:
    """Epochs the next fine-tuning may run: ``share`` of the recovery budget minus what was used."""
    return max(0, int(math.floor(budget_epochs * share + 1e-9)) - int(used))


def finetune_checkpoint(checkpoint: str | Path, data_path: str | Path, out: str | Path,
                        train_options: dict[str, Any] | None = None, progress: bool = True,
                        recovery_share: float = 1.0, max_in_memory_mb: float | None = None) -> dict:
    """Fine-tune (recover) a pruned checkpoint with TrainConfig ``train_options``; best-on-val.

    ``train_options["epochs"]`` is the *recovery budget*: the epochs a method may train after the
    base model, over all its steps. This fine-tuning runs at most ``recovery_share`` of it minus
    the epochs already used by earlier steps (the checkpoint's ``extra["recovery"]``, which
    counts earlier fine-tunings and any training a pruner did itself); early stopping may
    end it sooner, and the next step gets what is left. With nothing left, the checkpoint is
    written unchanged (zero epochs recorded). Returns the train record. Device settings and
    ``max_in_memory_mb`` as for train_base_model.
    """
    import dataclasses

    from .checkpoint import load_model_checkpoint, model_from_checkpoint
    from .data import load_prepared
    from .io import save_checkpoint
    from .train import TrainConfig, check_compatible, resolve_device, seed_everything, train_model

    check_output_path(out, checkpoint, data_path)
    config = TrainConfig.from_dict(dict(train_options or {}))
    resolve_device(config.device)  # a missing CUDA device is refused before any work
    payload = load_model_checkpoint(checkpoint)
    data = load_prepared(data_path, max_in_memory_mb)
    check_compatible(payload, data, checkpoint)
    extra = dict(payload.get("extra") or {})
    recovery = dict(extra.get("recovery") or {"epochs": 0, "steps": []})
    recovery["budget_epochs"] = config.epochs
    allowed = recovery_epochs_allowed(config.epochs, recovery["epochs"], recovery_share)
    if allowed == 0:
        extra["recovery"] = _recovery_after(recovery, "finetune", 0)
        record = {"config": dataclasses.asdict(config), "history": [], "epochs_run": 0,
                  "stopped_early": False,
                  "note": "recovery budget already used by earlier steps: not fine-tuned"}
        save_checkpoint(out, {**payload, "train": record, "extra": extra})
        return record
    config = dataclasses.replace(config, epochs=allowed,
                                 warmup_epochs=min(config.warmup_epochs, allowed / 2)).validate()
    seed_everything(config.seed)
    model = model_from_checkpoint(payload).train()
    return train_model(model, data, config, out, model_info=payload["model"],
                       architecture=payload.get("architecture"), extra=extra,
                       progress=progress, recovery=recovery)


def diagnose_checkpoint(checkpoint: str | Path, data_path: str | Path, out: str | Path,
                        options: dict[str, Any] | None = None, seed: int = 0, progress: bool = True,
                        device: str = "auto", mixed_precision: str = "off",
                        loader_workers: int | None = None, max_in_memory_mb: float | None = None) -> dict:
    """LaCD diagnosis (probe accuracy per block, collapsed blocks) of a checkpoint, to JSON.

    ``options`` may hold any lacd option; only the diagnosis ones are used here.
    ``device``, ``mixed_precision``, ``loader_workers``: the run's device settings, used unless
    ``options`` set them (as in prune_checkpoint); ``max_in_memory_mb`` as for train_base_model.
    """
    from .checkpoint import is_user_model, load_model_checkpoint, model_from_checkpoint
    from .data import load_prepared
    from .device import check_device_settings
    from .prune.probes import DIAGNOSE_OPTIONS, diagnose_collapse
    from .train import check_compatible, seed_everything

    check_output_path(out, checkpoint, data_path)
    check_device_settings(device, mixed_precision, loader_workers)
    payload = load_model_checkpoint(checkpoint)
    data = load_prepared(data_path, max_in_memory_mb)
    check_compatible(payload, data, checkpoint)
    run = {"device": device, "mixed_precision": mixed_precision, "loader_workers": loader_workers}
    chosen = {**run, **{k: v for k, v in (options or {}).items() if k in DIAGNOSE_OPTIONS}}
    seed_everything(seed)  # deterministic kernels asked for, as in the pruning steps
    model = model_from_checkpoint(payload)
    if is_user_model(payload["model"]):  # a user's network: its blocks and stem are traced
        from .prune.user_model import prepared_user_model

        model = prepared_user_model(model, pruner="lacd", data=data)
    report = diagnose_collapse(model, data, seed=seed, progress=progress, **chosen)
    report["checkpoint"] = str(checkpoint)
    write_json(out, report)
    return report


def plot_probe_curves(reports: dict[str, str | Path], out: str | Path, title: str | None = None) -> None:
    """Probe-accuracy-by-depth figure from LaCD reports: {label: JSON path}.

    A path may hold a bare diagnosis (diagnose_checkpoint) or a pruning-step record whose
    ``details`` is the LaCD report (prune_checkpoint with pruner "lacd").
    """
    from .io import read_json
    from .report.figures import plot_probe_curve

    check_output_path(out, *reports.values())
    loaded = {}
    for label, path in reports.items():
        report = read_json(path)
        loaded[label] = report.get("details", report)
    plot_probe_curve(loaded, out, title=title)


def export_checkpoint(checkpoint: str | Path, data_path: str | Path, fmt: str, out: str | Path, *,
                      atol: float | None = None, check_examples: int = 256, split: str = "test") -> dict:
    """Export a checkpoint's model to ONNX or TorchScript (fcos.export), checked on real inputs.

    The file is kept only if its outputs equal the PyTorch model's within ``atol`` (default
    fcos.export.DEFAULT_ATOL) on the first ``check_examples`` examples of ``split`` of the
    prepared dataset (and on the first one alone); else ExportError and nothing is written.
    Returns the check record (atol, max_abs_diff, batch sizes, runtime) plus ``out`` and ``format``.
    """
    import torch

    from . import __version__
    from .checkpoint import load_model_checkpoint, model_from_checkpoint
    from .data import load_prepared
    from .errors import DataError
    from .export import DEFAULT_ATOL, INPUT_NAME, OUTPUT_NAME, export_checked
    from .train import check_compatible

    check_output_path(out, checkpoint, data_path)
    payload = load_model_checkpoint(checkpoint)
    data = load_prepared(data_path)
    check_compatible(payload, data, checkpoint)
    x, _, _ = data.split(split)
    if len(x) < 2:
        raise DataError(f"{data_path}: split {split!r} has {len(x)} example(s); the export check needs >= 2")
    info = payload["model"]
    description = {
        "model": dict(info), "classes": list(data.classes),
        "architecture": dict(payload.get("architecture") or {}),
        "dataset": {"name": data.manifest["dataset"], "sha256": data.manifest["sha256"]["overall"]},
        "input": {"name": INPUT_NAME, "shape": ["batch", 2, int(info["length"])], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", int(info["num_classes"])]},
        "checkpoint": str(checkpoint), "fcos_version": __version__,
    }
    inputs = torch.from_numpy(x[:check_examples].astype("float32"))
    record = export_checked(model_from_checkpoint(payload), fmt, out, inputs, description=description,
                            atol=DEFAULT_ATOL if atol is None else atol)
    return {"out": str(out), "format": fmt, **record}


def measure_checkpoint_latency(checkpoint: str | Path, out: str | Path, *, reference: str | Path | None = None,
                               data_path: str | Path | None = None, exported: tuple = (),
                               config: dict[str, Any] | None = None, split: str = "test",
                               extra: dict | None = None, progress: bool = True) -> dict:
    """Inference latency of a checkpoint's model (fcos.latency harness), to JSON.

    Runners, timed interleaved: ``model`` (the checkpoint, PyTorch eager), ``base`` (the
    ``reference`` checkpoint, e.g. the unpruned model: every runner's speedup is measured
    against it in the same run) and one per ``exported`` file (named by its runtime). Inputs:
    the first examples of ``split`` of ``data_path`` when given, else seeded standard normal.
    ``config``: fcos.latency.LatencyConfig fields. The JSON holds the harness record plus
    ``dataset``, ``model``, ``checkpoint``, ``reference_checkpoint``, ``macs``,
    ``reference_macs``, ``mac_ratio`` (reference MACs / MACs) and ``extra``'s keys.
    """
    import torch

    from .checkpoint import load_model_checkpoint, model_from_checkpoint
    from .data import load_prepared
    from .latency import LatencyConfig, exported_runner, measure_latency, torch_runner
    from .metrics import macs_and_params
    from .train import check_compatible

    check_output_path(out, checkpoint, reference, data_path, *exported)
    settings = LatencyConfig.from_dict(config)
    payload = load_model_checkpoint(checkpoint)
    length = int(payload["model"]["length"])
    runners = {}
    reference_macs = None
    if reference is not None:
        base_payload = load_model_checkpoint(reference)
        if base_payload["model"]["length"] != length or \
                base_payload["model"]["num_classes"] != payload["model"]["num_classes"]:
            from .errors import CheckpointError

            raise CheckpointError(f"{reference}: reference model takes other inputs or outputs than "
                                  f"{checkpoint} (model entries {base_payload['model']} vs {payload['model']})")
        base = model_from_checkpoint(base_payload)
        reference_macs, _ = macs_and_params(base, length)
        runners["base"] = torch_runner(base, settings.device)
    model = model_from_checkpoint(payload)
    macs, _ = macs_and_params(model, length)
    runners["model"] = torch_runner(model, settings.device)
    for path in exported:
        runner = exported_runner(path, threads=settings.threads, device=settings.device)
        name = runner.runtime if runner.runtime not in runners else f"{runner.runtime}:{Path(path).name}"
        runners[name] = runner
    count = max(settings.batch_sizes)
    if data_path is not None:
        data = load_prepared(data_path)
        check_compatible(payload, data, checkpoint)
        inputs = torch.from_numpy(data.split(split)[0][:count].astype("float32"))
        source = f"{split} split of {data_path}"
    else:
        inputs = torch.randn(count, 2, length, generator=torch.Generator().manual_seed(0))
        source = "seeded standard normal"
    result = measure_latency(runners, inputs, settings, reference="base" if reference is not None else None,
                             progress=progress)
    record = {
        "dataset": (payload.get("dataset") or {}).get("name"), "model": payload["model"]["name"],
        **(extra or {}),
        "checkpoint": str(checkpoint), "reference_checkpoint": None if reference is None else str(reference),
        "macs": int(macs), "reference_macs": None if reference_macs is None else int(reference_macs),
        "mac_ratio": None if reference_macs is None else reference_macs / macs,
        "inputs": source, **result,
    }
    write_json(out, record)
    return record
