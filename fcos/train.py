"""Training, prediction and evaluation of AMR classifiers on a prepared dataset.

Two learning-rate schedules (``schedule``):

- ``"step"``, the authors' recipe (paper-notes section 2): Adam lr 1e-3, StepLR(step 10,
  gamma 0.8) stepped once per epoch, batch 128, cross-entropy, plus 1e-4 x L1 norm of all
  parameters for the ResNet models, 30-50 epochs.
- ``"cosine"``: linear warm-up over ``warmup_epochs`` from ``lr / 10`` to ``lr``, then cosine
  annealing to ``lr * final_lr_fraction`` at the end of ``epochs``, stepped every batch. It
  reaches a converged model in far fewer epochs than a step schedule whose learning rate is
  still 0.8^3 = half its start after 30 epochs: the annealed tail removes the optimiser noise
  that keeps a constant-ish learning rate bouncing around the optimum, which is what CPU
  budgets need; the warm-up keeps Adam's first steps from destabilising BatchNorm statistics.

Early stopping (``patience``): training ends when the validation accuracy has not improved by
more than ``min_delta`` over the best so far for ``patience`` consecutive epochs (``epochs`` is
then a maximum). Either way, the best-on-validation checkpoint is kept; unlike the authors, who
kept the best-*test* checkpoint, we select on the validation split and report test accuracy.
Every epoch's train loss, train accuracy, validation loss and accuracy and learning rate go into
the checkpoint's ``train.history`` (the report draws them as training curves).

Runs are resumable: after every epoch the full training state (model, optimizer, scheduler,
RNG of the CPU and of every CUDA device, history, best weights) is written atomically to
``<checkpoint>.resume.pt``; a restarted run with the same fingerprint (model, data hash, config,
sha256 of the starting weights) continues from there, any other starts afresh. On a fixed seed the
CPU run is deterministic, including across a resume.

Devices and data: the device is chosen once per run (``device``, see ``fcos.device``); on CUDA
the forward pass may run in mixed precision (``mixed_precision``) and batches are prefetched by
``loader_workers`` threads into pinned memory. Batches come from the split arrays, or, for a
split larger than the memory limit of ``fcos.data.load_prepared``, are read from the file by row
(``fcos.batches``): the same batches either way, so the same results.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .batches import batches
from .checkpoint import CHECKPOINT_FORMAT, load_model_checkpoint, model_from_checkpoint
from .device import autocast, check_precision, effective_precision, grad_scaler, loader_settings
from .device import resolve_device  # noqa: F401 - re-exported: callers import it from here
from .errors import CheckpointError, ConfigError
from .io import load_checkpoint, save_checkpoint
from .sealing import UnsealedCheckpointError

log = logging.getLogger(__name__)

#: Models trained with the authors' L1 penalty when ``l1_penalty="auto"``.
L1_AUTO = {"resnet56": 1e-4, "signet50": 1e-4}
#: "High SNR" accuracy in the reports: test frames at or above this SNR (dB).
HIGH_SNR_DB = 10
#: Learning-rate schedules (see the module docstring).
SCHEDULES = ("step", "cosine")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training or fine-tuning run.

    Attributes:
        epochs: passes over the training split.
        batch_size: examples per optimisation step.
        lr: Adam learning rate.
        lr_step, lr_gamma: StepLR schedule (multiply lr by gamma every lr_step epochs).
        l1_penalty: coefficient of the L1 norm of all parameters added to the loss, or "auto"
            (1e-4 for ResNet56/SigNet50 as in the authors' code, 0 otherwise).
        weight_decay: Adam weight decay.
        seed: seeds weight init (when the caller builds the model after ``seed_everything``),
            shuffling and dropout.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        eval_batch_size: batch size for validation and prediction.
        max_batches_per_epoch: cap on optimisation steps per epoch (None = whole split); for
            smoke tests and quick ablations.
        schedule: "step" (StepLR, the authors') or "cosine" (warm-up then cosine annealing).
        warmup_epochs: linear warm-up length of the cosine schedule (may be fractional).
        final_lr_fraction: the cosine schedule ends at lr x this.
        patience: early stopping after this many epochs without a validation improvement of
            more than min_delta (None = run all epochs).
        min_delta: improvement (accuracy fraction) that resets the patience counter.
        mixed_precision: "off", "bf16" or "fp16" (with loss scaling) autocast of the forward
            pass; used on CUDA only (a CPU run is float32 whatever this says).
        loader_workers: threads reading batches ahead; None = automatic (4 on CUDA, with
            pinned memory; 0 on a CPU).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    lr_step: int = 10
    lr_gamma: float = 0.8
    l1_penalty: float | str = "auto"
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    max_batches_per_epoch: int | None = None
    schedule: str = "step"
    warmup_epochs: float = 0.0
    final_lr_fraction: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    mixed_precision: str = "off"
    loader_workers: int | None = None

    def validate(self) -> "TrainConfig":
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "lr_step": self.lr_step >= 1,
            "lr_gamma": 0 < self.lr_gamma <= 1,
            "weight_decay": self.weight_decay >= 0,
            "eval_batch_size": self.eval_batch_size >= 1,
            "max_batches_per_epoch": self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
            "warmup_epochs": 0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
            "final_lr_fraction": 0 <= self.final_lr_fraction <= 1,
            "patience": self.patience is None or self.patience >= 1,
            "min_delta": self.min_delta >= 0,
            "loader_workers": self.loader_workers is None or (
                isinstance(self.loader_workers, int) and not isinstance(self.loader_workers, bool)
                and self.loader_workers >= 0),
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"train.{key}={getattr(self, key)!r} is out of range")
        from .data.split import check_seed

        check_seed(self.seed, "train.seed")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        check_precision(self.mixed_precision)
        if isinstance(self.l1_penalty, str):
            if self.l1_penalty != "auto":
                raise ConfigError(f"train.l1_penalty={self.l1_penalty!r}: expected a number >= 0 or 'auto'")
        elif not (self.l1_penalty >= 0):
            raise ConfigError(f"train.l1_penalty={self.l1_penalty!r}: expected a number >= 0 or 'auto'")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown train option(s) {', '.join(unknown)}: expected {', '.join(sorted(known))}")
        return cls(**values).validate()

    def resolved_l1(self, model_name: str) -> float:
        if self.l1_penalty == "auto":
            return L1_AUTO.get(model_name, 0.0)
        return float(self.l1_penalty)


#: cuBLAS's workspace setting under which its kernels are deterministic (NVIDIA's cuBLAS docs,
#: "Results reproducibility"); torch's deterministic mode asks for it on CUDA.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs and ask torch for deterministic kernels.

    Deterministic kernels: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an
    operation without a deterministic kernel warns and runs anyway), cuDNN benchmarking off,
    and ``CUBLAS_WORKSPACE_CONFIG`` set to ``CUBLAS_DETERMINISTIC_WORKSPACE`` unless the
    environment already sets it (read by cuBLAS when it first runs in the process).
    """
    import os
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


@torch.no_grad()
def predict(model: nn.Module, x, batch_size: int = 512,
            device: torch.device | str = "cpu", progress: bool = False,
            loader_workers: int | None = None) -> np.ndarray:
    """Return predicted class indices, shape (N,), for inputs ``x`` of shape (N, 2, L).

    ``x``: an array, a tensor or a ``SplitRows`` view (read batch by batch, ahead by
    ``loader_workers`` threads: None = automatic, see fcos.device). Runs in float32.
    """
    device = torch.device(device)
    workers, pin = loader_settings(device, loader_workers)
    model.eval()
    out = np.empty(len(x), dtype=np.int64)
    stream = batches(x, None, batch_size, device, workers=workers, pin_memory=pin)
    start = 0
    for xb, _ in tqdm(stream, total=-(-len(x) // batch_size), desc="predict", disable=not progress,
                      leave=False):
        out[start:start + len(xb)] = model(xb).argmax(dim=1).cpu().numpy()
        start += len(xb)
    return out


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int, device: torch.device,
             loader_workers: int | None = None) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict(model, x, batch_size, device, loader_workers=loader_workers) == y).mean())


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x, y: np.ndarray, batch_size: int,
                      device: torch.device, loader_workers: int | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode, float32) on (x (N, 2, L), y (N,));
    ``x`` and ``loader_workers`` as for ``predict``."""
    if len(y) == 0:
        return float("nan"), float("nan")
    model.eval()
    workers, pin = loader_settings(device, loader_workers)
    loss_sum, correct = 0.0, 0
    for xb, target in batches(x, y, batch_size, device, workers=workers, pin_memory=pin):
        logits = model(xb)
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return loss_sum / len(y), correct / len(y)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """(scheduler, per_batch) for ``config.schedule``; see the module docstring."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma), False
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    floor = config.final_lr_fraction

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True


def early_stop_epoch(history: list[dict], patience: int | None, min_delta: float) -> int | None:
    """The epoch (1-based) after which early stopping ends a run with ``history``, else None.

    Stop when ``patience`` consecutive epochs brought no validation accuracy above the best so
    far by more than ``min_delta``.
    """
    if patience is None:
        return None
    best, waited = -math.inf, 0
    for record in history:
        value = record["val_accuracy"]
        if math.isnan(value):
            continue
        if value > best + min_delta:
            best, waited = value, 0
        else:
            waited += 1
            if waited >= patience:
                return record["epoch"]
    return None


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 of a model's weights: every state-dict entry's name, dtype, shape and bytes, in
    state-dict order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _fingerprint(model_info: dict, dataset_hash: str, config: TrainConfig, start_weights: str) -> dict:
    """What a resume file must match to be continued rather than ignored: the run's model,
    data, config and starting weights (a resume left by another starting model is not used)."""
    return {"model": model_info, "dataset_sha256": dataset_hash, "config": dataclasses.asdict(config),
            "start_weights_sha256": start_weights}


def _mismatch(found: object, expected: dict) -> str:
    """Which parts of a resume file's fingerprint differ from this run's, in words."""
    if not isinstance(found, dict):
        return "it has no fingerprint"
    names = {"model": "model", "dataset_sha256": "dataset", "config": "training config",
             "start_weights_sha256": "starting weights"}
    differ = [names[key] for key in expected if found.get(key) != expected[key]]
    return f"its {', '.join(differ)} differ from this run's"


def _rng_state() -> dict:
    """The torch random states to save with a resume file: CPU, and every CUDA device's."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
    cuda = state.get("cuda_rng")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("resume file saved %d CUDA random states, this machine has %d devices: "
                        "the CUDA random state is not restored", len(cuda), torch.cuda.device_count())


def resume_path_for(checkpoint_path: str | Path) -> Path:
    p = Path(checkpoint_path)
    return p.with_name(p.name + ".resume.pt")


def train_model(
    model: nn.Module,
    data,
    config: TrainConfig,
    checkpoint_path: str | Path,
    *,
    model_info: dict,
    architecture: dict | None = None,
    extra: dict | None = None,
    progress: bool = True,
    recovery: dict | None = None,
) -> dict:
    """Train ``model`` on ``data`` (a PreparedDataset) and write the best-on-val checkpoint.

    Args:
        model: an ``nn.Module`` taking (B, 2, L) and returning (B, num_classes) logits.
        data: PreparedDataset with "train" and "val" splits.
        config: TrainConfig.
        checkpoint_path: final checkpoint (written atomically once training ends).
        model_info: {"name", "num_classes", "length"}: how to rebuild the base architecture.
        architecture: surgery record for pruned models (empty/None for a base model).
        extra: JSON-like values stored under "extra" in the checkpoint (e.g. pruning records).
        progress: show tqdm bars.
        recovery: for a recovery fine-tuning, the account of epochs trained since the base model
            ({"epochs", "steps"}); this run's epochs are added to it in ``extra["recovery"]``.

    Returns:
        The "train" section written into the checkpoint: config, history, best epoch and
        validation accuracy, samples/s.
    """
    config.validate()
    checkpoint_path = Path(checkpoint_path)
    device = resolve_device(config.device)
    l1 = config.resolved_l1(model_info["name"])
    dataset_hash = data.manifest["sha256"]["overall"]
    fingerprint = _fingerprint(model_info, dataset_hash, config, state_dict_sha256(model))

    x_train, y_train, _ = data.split("train")
    x_val, y_val, _ = data.split("val")
    if len(y_train) == 0:
        raise ConfigError(f"{data.path}: the train split is empty")
    yt = torch.from_numpy(y_train.astype(np.int64))
    precision = effective_precision(device, config.mixed_precision)
    if precision != config.mixed_precision:
        log.warning("train.mixed_precision=%s is used on CUDA only; %s trains in float32",
                    config.mixed_precision, device)
    workers, pin = loader_settings(device, config.loader_workers)

    n = len(yt)
    steps = math.ceil(n / config.batch_size)
    if config.max_batches_per_epoch is not None:
        steps = min(steps, config.max_batches_per_epoch)

    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler, per_batch = _scheduler(optimizer, config, steps)
    scaler = grad_scaler(device, config.mixed_precision)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout masks

    history: list[dict] = []
    best = {"epoch": -1, "val_accuracy": -1.0, "state_dict": None}
    start_epoch = 0
    resume_file = resume_path_for(checkpoint_path)
    state = None
    if resume_file.exists():
        try:
            state = load_checkpoint(resume_file)
        except UnsealedCheckpointError:
            log.warning("ignoring %s: written before checkpoints were sealed; training starts over", resume_file)
    if state is not None:
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("grad_scaler"):
                scaler.load_state_dict(state["grad_scaler"])
            shuffle_gen.set_state(state["shuffle_rng"])
            _restore_rng(state)
            history = list(state["history"])
            best = {"epoch": state["best_epoch"], "val_accuracy": state["best_val_accuracy"],
                    "state_dict": state["best_state_dict"]}
            start_epoch = state["epoch"] + 1
            log.warning("resuming %s from epoch %d (%s)", checkpoint_path, start_epoch, resume_file)
        else:
            log.warning("ignoring %s and starting afresh: %s", resume_file,
                        _mismatch(state.get("fingerprint"), fingerprint))

    stopped = early_stop_epoch(history, config.patience, config.min_delta)
    epochs = tqdm(range(start_epoch, config.epochs), desc=f"train {model_info['name']}",
                  disable=not progress, initial=start_epoch, total=config.epochs)
    for epoch in epochs:
        if stopped is not None:
            break
        model.train()
        order = torch.randperm(n, generator=shuffle_gen)
        loss_sum, correct, seen = 0.0, 0, 0
        tic = time.perf_counter()
        stream = batches(x_train, yt, config.batch_size, device, order=order, steps=steps,
                         workers=workers, pin_memory=pin)
        for step, (xb, yb) in enumerate(stream):
            with autocast(device, precision):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            if l1 > 0:
                loss = loss + l1 * sum(p.abs().sum() for p in model.parameters())
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"training diverged at epoch {epoch + 1} step {step + 1} (loss={loss.item()}): "
                    f"lower train.lr (now {config.lr}) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # a pass-through unless fp16 on CUDA
            scaler.step(optimizer)
            scaler.update()
            if per_batch:
                scheduler.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
        elapsed = time.perf_counter() - tic
        lr_used = optimizer.param_groups[0]["lr"]
        if not per_batch:
            scheduler.step()
        val_loss, val_acc = loss_and_accuracy(model, x_val, y_val, config.eval_batch_size, device,
                                              config.loader_workers)
        record = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_loss": val_loss, "val_accuracy": val_acc,
                  "samples_per_s": seen / elapsed if elapsed > 0 else float("nan"), "lr": lr_used}
        history.append(record)
        stopped = early_stop_epoch(history, config.patience, config.min_delta)
        # An empty val split (tiny debug sets) degrades to keeping the last epoch.
        if best["state_dict"] is None or (val_acc > best["val_accuracy"]) or math.isnan(val_acc):
            best = {"epoch": epoch + 1, "val_accuracy": val_acc,
                    "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        epochs.set_postfix(loss=f"{record['loss']:.3f}", val=f"{val_acc:.3f}",
                           **({"stop": "early"} if stopped is not None else {}))
        save_checkpoint(resume_file, {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "grad_scaler": scaler.state_dict(),
            "shuffle_rng": shuffle_gen.get_state(), **_rng_state(),
            "history": history, "epoch": epoch, "best_epoch": best["epoch"],
            "best_val_accuracy": best["val_accuracy"], "best_state_dict": best["state_dict"],
            "fingerprint": fingerprint,
        })

    train_record = {
        "config": dataclasses.asdict(config),
        "l1_penalty_resolved": l1,
        "device": str(device),
        "mixed_precision": precision,
        "history": history,
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "selection": "best validation accuracy",
        "epochs_run": len(history),
        "stopped_early": stopped is not None and len(history) < config.epochs,
    }
    extra = dict(extra or {})
    if recovery is not None:
        extra["recovery"] = {**recovery, "epochs": int(recovery["epochs"]) + len(history),
                             "steps": list(recovery["steps"]) + [{"step": "finetune", "epochs": len(history)}]}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fcos_version": __version__,
        "state_dict": best["state_dict"],
        "model": dict(model_info),
        "architecture": dict(architecture or {}),
        "dataset": _dataset_info(data),
        "train": train_record,
        "extra": extra,
    }
    save_checkpoint(checkpoint_path, payload)
    resume_file.unlink(missing_ok=True)
    model.load_state_dict(best["state_dict"])
    return train_record


def _dataset_info(data) -> dict:
    m = data.manifest
    return {"name": m["dataset"], "sha256": m["sha256"]["overall"], "classes": list(m["classes"]),
            "length": int(m["length"]), "source": m["source"]}


def check_compatible(payload: dict, data, checkpoint_path: str | Path, allow_other_split: bool = False) -> None:
    """Refuse to use a checkpoint on data of another class list or length, or on another
    prepared file than the one it was trained on (dataset sha256; another split of the same raw
    data would leak its training vectors into the test split) unless ``allow_other_split``, which
    logs a warning instead."""
    info = payload.get("dataset", {})
    m = data.manifest
    if list(info.get("classes", [])) != list(m["classes"]) or int(info.get("length", -1)) != int(m["length"]):
        raise CheckpointError(
            f"{checkpoint_path}: trained on {info.get('name')} (length {info.get('length')}, "
            f"{len(info.get('classes', []))} classes) but {data.path} is {m['dataset']} "
            f"(length {m['length']}, {len(m['classes'])} classes)"
        )
    recorded, actual = info.get("sha256"), m["sha256"]["overall"]
    if recorded is not None and recorded != actual:
        message = (f"{checkpoint_path}: trained on prepared data sha256 {str(recorded)[:12]}... but "
                   f"{data.path} is {actual[:12]}... (another split or preparation: its test vectors "
                   f"may be training vectors of the checkpoint)")
        if not allow_other_split:
            raise CheckpointError(f"{message}; pass --allow-other-split to evaluate anyway")
        log.warning("%s; evaluating anyway (--allow-other-split)", message)


def evaluate_checkpoint(checkpoint_path: str | Path, data, split: str = "test",
                        device: str = "auto", batch_size: int = 512, progress: bool = False,
                        allow_other_split: bool = False, loader_workers: int | None = None) -> dict:
    """Accuracy overall, per SNR and per class, confusion matrix and cost of a checkpoint.

    Returns a JSON-able dict with ``accuracy``, ``accuracy_high_snr`` (frames at >= HIGH_SNR_DB),
    ``per_snr`` (str(snr) -> accuracy), ``per_class``, ``confusion``, ``n_test``, ``macs``,
    ``params``, reductions against the base architecture, ``train_history``, ``recovery``
    (epochs trained after the base model, per step), ``model``, ``dataset``, ``split``,
    ``checkpoint``. Runs on ``device`` in float32 (batches read ahead by ``loader_workers``
    threads, see ``predict``).
    """
    from .checkpoint import base_model
    from .metrics import classification_report, macs_and_params

    payload = load_model_checkpoint(checkpoint_path)
    check_compatible(payload, data, checkpoint_path, allow_other_split=allow_other_split)
    model = model_from_checkpoint(payload)
    dev = resolve_device(device, key="device")
    loader_settings(dev, loader_workers)  # checks the value before any work
    x, y, snr = data.split(split)
    y_pred = predict(model.to(dev), x, batch_size, dev, progress=progress, loader_workers=loader_workers)
    report = classification_report(y, y_pred, snr, list(data.classes))
    high = snr >= HIGH_SNR_DB
    report["accuracy_high_snr"] = float((y_pred[high] == y[high]).mean()) if high.any() else None
    report["high_snr_db"] = HIGH_SNR_DB
    macs, params = macs_and_params(copy.deepcopy(model).cpu(), int(data.length))
    info = payload["model"]
    base_macs, base_params = macs_and_params(base_model(info, str(checkpoint_path)), int(info["length"]))
    report.update({
        "macs": int(macs), "params": int(params),
        "base_macs": int(base_macs), "base_params": int(base_params),
        "macs_reduction": 1.0 - macs / base_macs, "params_reduction": 1.0 - params / base_params,
        "prune_steps": list((payload.get("extra") or {}).get("prune_steps", [])),
        "model": payload["model"]["name"], "dataset": data.manifest["dataset"],
        "dataset_sha256": data.manifest["sha256"]["overall"],
        "split": split, "checkpoint": str(checkpoint_path),
        "best_val_accuracy": payload.get("train", {}).get("best_val_accuracy"),
        # training curve of this checkpoint's own (last) training run, and the epochs every
        # step after the base model trained for (None for a base model)
        "train_history": list((payload.get("train") or {}).get("history", [])),
        "recovery": (payload.get("extra") or {}).get("recovery"),
    })
    return report
