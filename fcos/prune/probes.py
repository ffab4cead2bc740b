"""Linear probes on every block's output and the collapse test of LaCD (FCOS stage 2); the
probe report is also what LCP ranks blocks by.

Probe points
    The stem (``model.stem_name``, the reference point a_0) and the output of every block of
    ``model.removable_blocks()`` (depth order). Blocks that an earlier removal already replaced
    are listed but not probed.

Probes
    The network is frozen (eval mode, no gradients). One forward pass over the train split and
    one over the validation split collect every point's output through forward hooks, pooled to
    a vector per example (``pooling``: "gap" global average over the spatial/time dimensions,
    the default, as in Chen & Zhao's linear-classifier-probe pruning; "gmp" global max; "gap+gmp"
    both, concatenated; "flatten" no pooling, memory hungry). The pooled features are cached in
    memory (``max_train`` caps the train examples; when the cache would exceed
    ``cache_limit_bytes``, 4 GiB by default, a smaller train subset is used and the report says
    so). Per point, one softmax-regression probe is fit (on the run's device, in float32) on
    standardised train features (mean/std of the train features) with a small L2 penalty
    and scored on the validation features: accuracy a_k. The default optimiser is full-batch
    L-BFGS from a zero start: the L2-penalised problem is strictly convex, so the probe is
    (up to the iteration cap) the unique optimum and a_k depends on the features, not on
    optimiser noise or a seed. Mini-batch Adam (seeded shuffling) is the alternative for feature
    caches too large for full-batch steps.

Collapse criterion
    Block k is *collapsed* when ``a_k <= max(a_0, ..., a_{k-1}) + epsilon``: its output is not
    more linearly separable than the best earlier point by more than epsilon. The gain
    ``a_k - max(a_0..a_{k-1})`` is reported per block (and ``step_gain = a_k - a_{k-1}``).
    Default ``epsilon=None`` means ``1 / sqrt(n_val)``: an accuracy measured on n examples has
    standard error sqrt(p (1 - p) / n) <= 0.5 / sqrt(n), so 1/sqrt(n) is two worst-case standard
    errors; a smaller gain cannot be told apart from validation-sampling noise at the ~95% level.
    (0.0067 for the 22,000 validation vectors of RML2016.10a with a 10% split; 0.067 for a
    220-vector debug set.) Pass a float to fix it; ``epsilon=0`` flags only non-improving blocks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..batches import batches
from ..device import autocast, check_precision, effective_precision, loader_settings, resolve_device
from ..errors import ConfigError
from ..metrics import macs_and_params
from .blocks import inspect_blocks, shapes_at
from .modes import eval_mode, model_device

POOLINGS = ("gap", "gmp", "gap+gmp", "flatten")

PROBE_OPTIMIZERS = ("lbfgs", "adam")

#: Refuse feature caches above this size unless told otherwise (max_train bounds the cache).
DEFAULT_CACHE_LIMIT_BYTES = 4 * 2**30

_CONSTANT_RELATIVE_STD = 1e-6

#: Options of the "lacd" pruner that go to ``diagnose_collapse``.
DIAGNOSE_OPTIONS = ("pooling", "epsilon", "max_train", "max_val", "batch_size", "probe_optimizer",
                    "probe_steps", "probe_weight_decay", "probe_lr", "probe_batch_size", "device",
                    "mixed_precision", "loader_workers", "cache_limit_bytes")


def pool_features(output: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool a point's output (B, C, *spatial) to (B, d).

    "gap": mean over spatial dims, d = C; "gmp": max, d = C; "gap+gmp": both, d = 2C;
    "flatten": d = C * prod(spatial). A (B, C) output is returned as it is.
    """
    if output.dim() == 2:
        return output
    if pooling == "flatten":
        return output.flatten(1)
    spatial = output.flatten(2)
    if pooling == "gap":
        return spatial.mean(dim=2)
    if pooling == "gmp":
        return spatial.amax(dim=2)
    if pooling == "gap+gmp":
        return torch.cat([spatial.mean(dim=2), spatial.amax(dim=2)], dim=1)
    raise ConfigError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")

def collect_features(model: nn.Module, x: np.ndarray, points: Sequence[str], *, pooling: str,
                     batch_size: int, device: torch.device, mixed_precision: str = "off",
                     loader_workers: int | None = None, progress: bool = False,
                     desc: str = "features") -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """One frozen forward pass over ``x`` (N, 2, L), pooling the output of each module in ``points``.

    Returns ({point: float32 CPU tensor (N, d_point)}, the model's predicted classes (N,) int64).
    The model must already be on ``device`` and in eval mode. The forward pass runs in
    ``mixed_precision`` on CUDA (fcos.device.autocast; float32 on a CPU), batches are read
    ahead by ``loader_workers`` threads (fcos.device.loader_settings); the pooled features are
    cached in float32 on the CPU.
    """
    n = len(x)
    features: dict[str, torch.Tensor] = {}
    cursor = [0, 0]  # [start, stop] of the batch being run

    def make_hook(name):
        def hook(module, inputs, output):
            pooled = pool_features(output.float(), pooling).cpu()  # pooled in float32 under autocast too
            if name not in features:  # allocate once the width is known: no list-then-concat copy
                features[name] = torch.empty(n, pooled.shape[1], dtype=torch.float32)
            features[name][cursor[0]:cursor[1]] = pooled
        return hook

    handles = [model.get_submodule(name).register_forward_hook(make_hook(name)) for name in points]
    predictions = np.empty(n, dtype=np.int64)
    workers, pin = loader_settings(device, loader_workers)
    stream = batches(x, None, batch_size, device, workers=workers, pin_memory=pin)
    try:
        with torch.no_grad():
            start = 0
            for batch, _ in tqdm(stream, total=-(-n // batch_size), desc=desc, disable=not progress, leave=False):
                cursor[:] = [start, start + len(batch)]
                with autocast(device, mixed_precision):
                    logits = model(batch)
                predictions[start:start + len(batch)] = logits.argmax(dim=1).cpu().numpy()
                start += len(batch)
    finally:
        for handle in handles:
            handle.remove()
    return features, predictions

@dataclass
class LinearProbe:
    """Softmax regression on standardised features: logits = ((f - mean) / scale) @ weight + bias.

    Shapes: mean, scale (d,); weight (d, K); bias (K,).
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, K), on the probe's device."""
        features = features.to(self.weight.device)
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        if len(labels) == 0:
            return float("nan")
        predicted = self.logits(features).argmax(dim=1)
        return float((predicted == labels.to(predicted.device)).double().mean())

def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     optimizer: str = "lbfgs", steps: int = 100, weight_decay: float = 1e-3,
                     lr: float = 1e-2, batch_size: int = 1024, seed: int = 0,
                     device: torch.device | None = None) -> LinearProbe:
    """Fit a softmax-regression probe on ``features`` (N, d) float32 and ``labels`` (N,) int64.

    ``device``: where the fit runs, in float32 (None: the features' device); the probe's tensors
    live there. The same data give the same probe on a CPU whatever device it was cached from.

    Loss: mean cross-entropy + weight_decay / 2 * ||weight||^2, weights start at zero.
    ``optimizer="lbfgs"``: full batch, ``steps`` L-BFGS iterations with strong-Wolfe line search
    (deterministic, no seed needed). ``optimizer="adam"``: ``steps`` epochs of mini-batches of
    ``batch_size`` in an order drawn from ``seed``, learning rate ``lr``.
    """
    if optimizer not in PROBE_OPTIMIZERS:
        raise ConfigError(f"probe_optimizer={optimizer!r}: expected one of {', '.join(PROBE_OPTIMIZERS)}")
    if steps < 1:
        raise ConfigError(f"probe_steps={steps!r}: expected an integer >= 1")
    if device is not None:
        features, labels = features.to(device), labels.to(device)
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    constant = (std == 0) | (std <= _CONSTANT_RELATIVE_STD * mean.abs())
    scale = torch.where(constant, torch.ones_like(std), std)
    z = (features - mean) / scale
    z[:, constant] = 0.0
    weight = torch.zeros(z.shape[1], num_classes, device=z.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=z.device, requires_grad=True)

    def loss_of(inputs, targets):
        return F.cross_entropy(inputs @ weight + bias, targets) + 0.5 * weight_decay * weight.pow(2).sum()

    with torch.enable_grad():
        if optimizer == "lbfgs":
            solver = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=10,
                                       tolerance_grad=1e-7, tolerance_change=1e-10,
                                       line_search_fn="strong_wolfe")

            def closure():
                solver.zero_grad()
                loss = loss_of(z, labels)
                loss.backward()
                return loss

            solver.step(closure)
        else:
            solver = torch.optim.Adam([weight, bias], lr=lr)
            generator = torch.Generator().manual_seed(seed)  # on the CPU: the same order anywhere
            for _ in range(steps):
                order = torch.randperm(len(labels), generator=generator).to(z.device)
                for start in range(0, len(labels), batch_size):
                    idx = order[start:start + batch_size]
                    solver.zero_grad()
                    loss_of(z[idx], labels[idx]).backward()
                    solver.step()
    return LinearProbe(mean, scale, weight.detach(), bias.detach())

def collapse_gains(accuracies: Sequence[float | None]) -> tuple[list[float | None], list[float | None]]:
    """(gain over the best earlier point, gain over the previous probed point) per point.

    ``accuracies[0]`` is the reference (stem) and gets None for both; None entries (blocks not
    probed) get None and are skipped when taking the best/previous earlier accuracy.
    """
    gains: list[float | None] = [None]
    steps: list[float | None] = [None]
    best = previous = accuracies[0]
    for accuracy in accuracies[1:]:
        if accuracy is None:
            gains.append(None)
            steps.append(None)
            continue
        gains.append(accuracy - best)
        steps.append(accuracy - previous)
        best, previous = max(best, accuracy), accuracy
    return gains, steps

def default_epsilon(n_val: int) -> float:
    """1 / sqrt(n_val): two worst-case standard errors of an accuracy on n_val examples."""
    return 1.0 / math.sqrt(max(int(n_val), 1))

def _subset(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted random indices of ``cap`` of ``n`` rows, or None for all rows."""
    if cap is None or cap >= n:
        return None
    if cap < 1:
        raise ConfigError(f"subset size {cap!r}: expected an integer >= 1 or None")
    return np.sort(rng.choice(n, size=int(cap), replace=False))

def diagnose_collapse(model: nn.Module, data, *, pooling: str = "gap", epsilon: float | None = None,
                      max_train: int | None = None, max_val: int | None = None, seed: int = 0,
                      batch_size: int = 512, probe_optimizer: str = "lbfgs", probe_steps: int = 100,
                      probe_weight_decay: float = 1e-3, probe_lr: float = 1e-2,
                      probe_batch_size: int = 1024, device: str = "auto",
                      mixed_precision: str = "off", loader_workers: int | None = None,
                      cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
                      progress: bool = False) -> dict[str, Any]:
    """Probe the stem and every block of ``model`` and flag the collapsed blocks.

    Args:
        model: a model with ``removable_blocks()`` and ``stem_name``; left unchanged (its device
            and train/eval flags are restored).
        data: a PreparedDataset (anything with ``.split(name) -> (x (N, 2, L), y (N,), snr)``
            and ``.length``).
        pooling: how a point's output becomes a vector (see ``pool_features``).
        epsilon: collapse margin on probe accuracy (fraction); None = ``1/sqrt(n_val)``.
        max_train, max_val: caps on the train/val examples used (seeded random subsets).
        seed: draws the subsets and the Adam probe's batch order.
        batch_size: examples per forward batch.
        probe_optimizer, probe_steps, probe_weight_decay, probe_lr, probe_batch_size: see
            ``fit_linear_probe`` (lr and batch size are used by Adam only).
        device: "auto" (CUDA when present), "cpu" or "cuda[:N]": where the forward passes run
            and the probes are fit (the feature cache stays in CPU memory).
        mixed_precision: "off", "bf16" or "fp16" for the forward passes on CUDA (the probes are
            fit in float32; a CPU runs float32 throughout).
        loader_workers: threads reading batches ahead (None: automatic, fcos.device).
        cache_limit_bytes: bound on the cached pooled features (4 bytes x examples x the
            summed feature widths); when the train examples asked for do not fit, a smaller
            seeded train subset is used and ``train_capped_by_memory`` is set.

    Returns a JSON-able report: ``points`` (list, stem first, then blocks in depth order, each
    {name, kind "stem"|"block", accuracy, train_accuracy, gain, step_gain, collapsed, removable,
    replacement, reason, macs, params, saved_macs, saved_params, features (d),
    removed_earlier}), ``collapsed`` (removable collapsed blocks, depth order),
    ``collapsed_kept`` (collapsed but shape-changing),
    ``epsilon``, ``epsilon_rule``, ``chance``, ``model_accuracy`` (the model's own val accuracy),
    ``n_train``, ``n_val``, ``train_capped_by_memory``, ``num_classes``, ``length``, ``macs``,
    ``params``, ``config``, and
    ``time_s`` {features, probes, total}.
    """
    tic = time.perf_counter()
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
    if epsilon is not None and not (isinstance(epsilon, (int, float)) and epsilon >= 0):
        raise ConfigError(f"epsilon={epsilon!r}: expected a number >= 0 or None (1/sqrt(n_val))")
    if probe_optimizer not in PROBE_OPTIMIZERS:
        raise ConfigError(f"probe_optimizer={probe_optimizer!r}: expected one of {', '.join(PROBE_OPTIMIZERS)}")
    length = int(getattr(data, "length", None) or model.length)
    run_device = resolve_device(device, key="device")
    precision = effective_precision(run_device, check_precision(mixed_precision, "mixed_precision"))
    loader_settings(run_device, loader_workers)  # checks the value before any work

    infos = inspect_blocks(model, length)
    stem = model.stem_name
    probed = [stem] + [info.name for info in infos if not info.removed]
    shapes = shapes_at(model, probed, length)
    widths = {name: int(pool_features(torch.zeros(shapes[name][1]), pooling).shape[1]) for name in probed}

    x_train, y_train, _ = data.split("train")
    x_val, y_val, _ = data.split("val")
    n_val = len(y_val) if max_val is None else min(len(y_val), int(max_val))
    # The cache holds every point's pooled features of every example used: if the requested
    # examples do not fit, fewer train examples are used (recorded), never fewer val examples.
    bytes_per_example = 4 * sum(widths.values())
    train_fit = cache_limit_bytes // bytes_per_example - n_val
    if train_fit < 1:
        raise ConfigError(f"LaCD feature cache: {n_val} val examples alone exceed "
                          f"{cache_limit_bytes / 2**30:.1f} GiB; set max_val or use pooling 'gap'")
    train_cap = len(y_train) if max_train is None else min(len(y_train), int(max_train))
    memory_capped = train_fit < train_cap
    rng = np.random.default_rng(seed)
    train_rows = _subset(len(y_train), min(train_cap, train_fit), rng)
    val_rows = _subset(len(y_val), max_val, rng)
    if train_rows is not None:
        x_train, y_train = x_train[train_rows], y_train[train_rows]
    if val_rows is not None:
        x_val, y_val = x_val[val_rows], y_val[val_rows]
    if len(y_train) == 0 or len(y_val) == 0:
        raise ConfigError("diagnose_collapse needs non-empty train and val splits")
    num_classes = int(getattr(data, "num_classes", 0) or int(max(y_train.max(), y_val.max())) + 1)

    original_device = model_device(model)
    try:
        with eval_mode(model.to(run_device)):
            compute = {"device": run_device, "mixed_precision": precision, "loader_workers": loader_workers}
            train_features, _ = collect_features(model, x_train, probed, pooling=pooling, batch_size=batch_size,
                                                 progress=progress, desc="LaCD train features", **compute)
            val_features, val_predictions = collect_features(model, x_val, probed, pooling=pooling,
                                                             batch_size=batch_size, progress=progress,
                                                             desc="LaCD val features", **compute)
    finally:
        model.to(original_device)
    features_s = time.perf_counter() - tic

    y_train_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
    accuracies: dict[str, tuple[float, float]] = {}
    for name in tqdm(probed, desc="LaCD probes", disable=not progress, leave=False):
        probe = fit_linear_probe(train_features[name], y_train_t, num_classes, optimizer=probe_optimizer,
                                 steps=probe_steps, weight_decay=probe_weight_decay, lr=probe_lr,
                                 batch_size=probe_batch_size, seed=seed, device=run_device)
        accuracies[name] = (probe.accuracy(val_features[name], y_val_t),
                            probe.accuracy(train_features[name], y_train_t))
        del train_features[name], val_features[name]  # free each point's cache once probed
    probes_s = time.perf_counter() - tic - features_s

    eps = default_epsilon(len(y_val)) if epsilon is None else float(epsilon)
    ordered = [stem] + [info.name for info in infos]
    gains, step_gains = collapse_gains([accuracies[name][0] if name in accuracies else None for name in ordered])
    points = [{"name": stem, "kind": "stem", "accuracy": accuracies[stem][0],
               "train_accuracy": accuracies[stem][1], "gain": None, "step_gain": None,
               "collapsed": False, "removable": False, "replacement": None,
               "reason": "reference point", "macs": None, "params": None,
               "saved_macs": None, "saved_params": None,
               "features": widths[stem], "removed_earlier": False}]
    for info, gain, step_gain in zip(infos, gains[1:], step_gains[1:]):
        accuracy, train_accuracy = accuracies.get(info.name, (None, None))
        points.append({
            "name": info.name, "kind": "block", "accuracy": accuracy, "train_accuracy": train_accuracy,
            "gain": gain, "step_gain": step_gain,
            "collapsed": gain is not None and gain <= eps,
            "removable": info.removable, "replacement": info.replacement, "reason": info.reason,
            "macs": info.macs, "params": info.params, "saved_macs": info.saved_macs,
            "saved_params": info.saved_params, "features": widths.get(info.name),
            "removed_earlier": info.removed,
        })
    macs, params = macs_and_params(model, length)
    return {
        "points": points,
        "collapsed": [p["name"] for p in points if p["collapsed"] and p["removable"]],
        "collapsed_kept": [p["name"] for p in points if p["collapsed"] and not p["removable"]],
        "epsilon": eps,
        "epsilon_rule": "1/sqrt(n_val)" if epsilon is None else "given",
        "chance": 1.0 / num_classes,
        "model_accuracy": float((val_predictions == y_val).mean()),
        "n_train": int(len(y_train)), "n_val": int(len(y_val)), "num_classes": num_classes,
        "train_capped_by_memory": bool(memory_capped),
        "length": length, "macs": int(macs), "params": int(params),
        "config": {"pooling": pooling, "epsilon": epsilon, "max_train": max_train, "max_val": max_val,
                   "seed": seed, "batch_size": batch_size, "probe_optimizer": probe_optimizer,
                   "probe_steps": probe_steps, "probe_weight_decay": probe_weight_decay,
                   "probe_lr": probe_lr, "probe_batch_size": probe_batch_size, "device": str(run_device),
                   "mixed_precision": precision},
        "time_s": {"features": features_s, "probes": probes_s, "total": time.perf_counter() - tic},
    }
