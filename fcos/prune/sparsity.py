"""Network slimming's sparsity phase: training with an L1 penalty on every BatchNorm scale, so that
unneeded channels' scales go to zero before they are ranked (fcos.prune.importance)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..batches import as_source, batches
from ..device import autocast, effective_precision, grad_scaler, loader_settings
from ..errors import ConfigError

BATCH_NORM = nn.modules.batchnorm._BatchNorm


def train_tensors(data: Any) -> tuple[Any, torch.Tensor]:
    """(signals to ``gather`` batches from: a tensor, or the file view of a large split, labels)."""
    x, y, _ = data.split("train")
    if len(y) == 0:
        raise ConfigError("the train split is empty")
    return as_source(x), torch.from_numpy(np.asarray(y, dtype=np.int64))


def sparsity_training(model: nn.Module, data: Any, *, epochs: int, penalty: float, lr: float,
                      batch_size: int, max_batches: int | None, seed: int, device: torch.device,
                      mixed_precision: str = "off", loader_workers: int | None = None,
                      progress: bool = False) -> list[dict[str, float]]:
    """Network slimming's sparsity phase, in place: train mode, Adam(lr), loss = cross-entropy
    + ``penalty`` x sum of |gamma| over every affine BatchNorm of ``model``.

    ``epochs`` passes over the train split (seeded shuffling; ``max_batches`` caps the steps
    per epoch). On ``device``, like training (fcos.train): the forward pass in
    ``mixed_precision`` on CUDA (fp16 with loss scaling; float32 on a CPU), batches read ahead by
    ``loader_workers`` threads. The model ends in eval mode on its original device. Returns per
    epoch: mean loss, mean cross-entropy and the final sum of |gamma|.
    """
    xs, ys = train_tensors(data)
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORM) and m.affine]
    original = next(model.parameters()).device
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    precision = effective_precision(device, mixed_precision)
    scaler = grad_scaler(device, precision)
    workers, pin = loader_settings(device, loader_workers)
    shuffle = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(ys) / batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    history = []
    with torch.random.fork_rng(devices=[]):  # dropout masks seeded, the caller's RNG untouched
        torch.manual_seed(seed)
        for epoch in tqdm(range(epochs), desc="sparsity training", disable=not progress,
                          leave=False):
            order = torch.randperm(len(ys), generator=shuffle)
            loss_sum = cross_entropy_sum = 0.0
            stream = batches(xs, ys, batch_size, device, order=order, steps=steps, workers=workers,
                             pin_memory=pin)
            for step, (xb, yb) in enumerate(stream):
                with autocast(device, precision):
                    logits = model(xb)
                cross_entropy = F.cross_entropy(logits.float(), yb)
                loss = cross_entropy + penalty * sum(norm.weight.abs().sum() for norm in norms)
                if not torch.isfinite(loss):
                    raise ConfigError(f"slimming: sparsity training diverged at epoch {epoch + 1} "
                                      f"step {step + 1}; lower lr (now {lr}) or sparsity_lambda")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # a pass-through unless fp16 on CUDA
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.item()
                cross_entropy_sum += cross_entropy.item()
            with torch.no_grad():
                gamma_l1 = float(sum(norm.weight.abs().sum() for norm in norms))
            history.append({"epoch": epoch + 1, "loss": loss_sum / steps,
                            "cross_entropy": cross_entropy_sum / steps, "gamma_l1": gamma_l1})
    optimizer.zero_grad(set_to_none=True)
    model.to(original).eval()
    return history
