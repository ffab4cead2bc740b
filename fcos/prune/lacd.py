"""FCOS stage 2, LaCD (Layer Collapse Diagnosis): find blocks that add no linearly decodable
information and remove them. The probes, the block removal and the budgeted selection defined
here are shared with the layer-pruning baselines in ``fcos.prune.layer``.

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
    so). Per point, one softmax-regression probe is
    fit on standardised train features (mean/std of the train features) with a small L2 penalty
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

Which blocks can be removed, and what takes their place (``inspect_blocks``)
    - a block whose output shape equals its input shape becomes ``nn.Identity`` ("identity"):
      ResNet56's 25 non-stage-opening basic blocks (``layer1.0`` included: 16 -> 16, stride 1)
      and SigNet50's 12 non-stage-opening bottlenecks. Decided from shapes, so it still holds
      after channel pruning/fusion (a stage shares one width along its residual stream);
    - every CNN1D residual stack (all six) is reduced to what it is when its two residual units
      add zero: its own trained 1x1 entry conv, ReLU, and its max-pool by 2
      (``surgery.StackProjection``, "stack-projection1d"/"stack-projection2d"). Every CNN1D
      stack halves the length and may change the width (stage-1 fusion gives each stack its own
      width), so neither an identity nor a bare pool fits; this bridge keeps the stack's width
      change and downsampling with weights already trained (32 x 32 = 1,024 parameters and about
      8% of a 1-D stack's MACs), and the time length reaching the flatten + ``dense`` layer stays
      L/64, so the trained dense weights stay valid. (The authors instead inserted an adaptive
      pooling before the dense layer, which changes what the dense layer sees.) A stack whose
      residual units add zero (second conv of each unit zero) computes exactly this;
    - every other block changes width or resolution and is kept (never removed): ResNet56's
      ``layer2.0`` / ``layer3.0`` and SigNet50's four stage-opening bottlenecks. Keeping them is
      the authors-compatible, parameter-free choice (their parameter-free ResNet56 shortcut has
      no trained projection to keep, and a new one would start untrained). Kept blocks are still
      probed and may be reported as collapsed (``collapsed_kept``).

Selection modes (``select_*`` functions and the "lacd" method)
    - epsilon mode (budget None): remove every removable collapsed block;
    - ``num_blocks=k``: remove the k removable blocks of lowest gain (budgeted comparisons);
    - MAC budget (budget float): rule "exact" (default) searches every subset of the removable
      blocks (``fcos.prune.block_selection``) for one whose saving meets the target within the
      channel methods' tolerance (1 point), sparing the highest-gain blocks, else the subset
      closest to it; greedy alternatives walk the blocks from lowest gain upwards and take each
      one that brings the saving closer to the target (rule "closest") or every one until the
      target is met (rule "reach"). The achieved reduction, its gap to the target and an
      ``off_target`` flag (gap above 2 points) are reported: block granularity can make a
      budget reachable only approximately.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import merge_architecture
from ..errors import ConfigError
from ..metrics import macs_and_params
from . import surgery
from .base import PruneResult, register_method

POOLINGS = ("gap", "gmp", "gap+gmp", "flatten")
PROBE_OPTIMIZERS = ("lbfgs", "adam")
BUDGET_RULES = ("exact", "closest", "reach")
#: A block selection whose achieved reduction is further than this from the budget is flagged.
OFF_TARGET = 0.02
IDENTITY = "identity"
#: Replacement kinds of a removed CNN1D residual stack (1-D stacks, and the 2-D first one).
STACK_PROJECTION = {False: "stack-projection1d", True: "stack-projection2d"}
#: Refuse feature caches above this size unless told otherwise (max_train bounds the cache).
DEFAULT_CACHE_LIMIT_BYTES = 4 * 2**30
# Features whose train std is below this fraction of their |mean| are treated as constant, so that
# float rounding noise on a constant is not blown up to unit variance by the standardisation.
_CONSTANT_RELATIVE_STD = 1e-6


# ------------------------------------------------------------------------------------ blocks


@dataclass(frozen=True)
class BlockInfo:
    """What removal means for one block of ``model.removable_blocks()``.

    Attributes:
        name: dotted module name.
        input_shape, output_shape: shapes for one example, e.g. (1, 16, 2, 128).
        replacement: the ``surgery.REPLACEMENTS`` kind removal puts in its place, or None when
            the block changes width/resolution and is kept.
        reason: one line saying why it is kept or how it is removed.
        macs, params: the block's cost for one example (the one MAC counter); for a block
            removed earlier, the cost of its stand-in.
        saved_macs, saved_params: what removing it saves (its cost minus its stand-in's); 0 when
            it is kept or removed already.
        removed: True when an earlier removal already replaced it.
    """

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    replacement: str | None
    reason: str
    macs: int
    params: int
    saved_macs: int
    saved_params: int
    removed: bool

    @property
    def removable(self) -> bool:
        return self.replacement is not None and not self.removed


def replacement_for(block: nn.Module, input_shape: Sequence[int],
                    output_shape: Sequence[int]) -> tuple[str | None, str]:
    """(replacement kind or None, reason) for ``block`` mapping ``input_shape`` to ``output_shape``
    (the rules of the module docstring)."""
    from ..models.cnn1d import ResidualStack

    shapes = f"{tuple(input_shape)[1:]} -> {tuple(output_shape)[1:]}"
    if isinstance(block, ResidualStack):
        return (STACK_PROJECTION[block.planar],
                f"CNN1D stack {shapes}: reduced to its 1x1 entry conv, ReLU and max-pool")
    if tuple(input_shape) == tuple(output_shape):
        return IDENTITY, f"same shape {shapes}: replaced by the identity"
    return None, f"changes shape {shapes}: kept"


def _new_replacement(kind: str) -> nn.Module:
    # A factory may initialise weights (StackProjection's conv); that must not move the caller's
    # RNG stream, so that pruning leaves seeded fine-tuning unchanged.
    with torch.random.fork_rng(devices=[]):
        return surgery.REPLACEMENTS[kind]()


def stand_in_for(block: nn.Module, kind: str) -> nn.Module:
    """The module that takes ``block``'s place when it is removed as ``kind``."""
    stand_in = _new_replacement(kind)
    if isinstance(stand_in, surgery.StackProjection):
        stand_in.conv = copy.deepcopy(block.conv1)  # trained weights at the stack's own widths
    return stand_in.train(block.training)


def replacement_kind_of(module: nn.Module) -> str | None:
    """The REPLACEMENTS kind ``module`` is an instance of (an already removed block), else None."""
    for kind in surgery.REPLACEMENTS:
        probe = _new_replacement(kind)
        if type(module) is type(probe) and module.extra_repr() == probe.extra_repr():
            return kind
    return None


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _shapes_at(model: nn.Module, names: Sequence[str], length: int) -> dict[str, tuple[tuple, tuple]]:
    """{name: (input shape, output shape)} for one zero input (1, 2, length); eval mode, no grad."""
    shapes: dict[str, tuple[tuple, tuple]] = {}

    def make_hook(name):
        def hook(module, inputs, output):
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
        return hook

    handles = [model.get_submodule(name).register_forward_hook(make_hook(name)) for name in names]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 2, length, device=_model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return shapes


class _FixedInput(nn.Module):
    """Runs ``block`` on a zero tensor of ``shape`` whatever it is given: lets the one MAC counter
    (which feeds a (1, channels, length) input) cost a block that expects another shape."""

    def __init__(self, block: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.block = block
        self.shape = shape

    def forward(self, ignored: torch.Tensor) -> torch.Tensor:
        return self.block(torch.zeros(self.shape, device=ignored.device, dtype=ignored.dtype))


def block_cost(block: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(MACs, params) of ``block`` for one input of ``input_shape``, by fcos.metrics' counter."""
    return macs_and_params(_FixedInput(block, input_shape), length=1, channels=1)


def inspect_blocks(model: nn.Module, length: int | None = None) -> list[BlockInfo]:
    """Describe every block of ``model.removable_blocks()`` (depth order): shapes, cost, and
    whether and how it can be removed (see the module docstring). ``length`` defaults to
    ``model.length``."""
    length = int(length if length is not None else model.length)
    names = list(model.removable_blocks())
    shapes = _shapes_at(model, names, length)
    infos = []
    for name in names:
        module = model.get_submodule(name)
        in_shape, out_shape = shapes[name]
        macs, params = block_cost(module, in_shape)
        removed_kind = replacement_kind_of(module)
        if removed_kind is not None:
            infos.append(BlockInfo(name, in_shape, out_shape, removed_kind, "removed earlier",
                                   macs, params, 0, 0, True))
            continue
        kind, reason = replacement_for(module, in_shape, out_shape)
        saved_macs, saved_params = 0, 0
        if kind is not None:
            stand_in_macs, stand_in_params = block_cost(stand_in_for(module, kind), in_shape)
            saved_macs, saved_params = macs - stand_in_macs, params - stand_in_params
        infos.append(BlockInfo(name, in_shape, out_shape, kind, reason, macs, params,
                               saved_macs, saved_params, False))
    return infos


def remove_blocks(model: nn.Module, blocks: Iterable[str], *, length: int | None = None) -> tuple[nn.Module, dict]:
    """Replace ``blocks`` of ``model`` in place by their stand-ins (see ``inspect_blocks``).

    Returns ``(model, {"removed_blocks": {name: kind}})``; the record is what
    ``fcos.prune.surgery.apply_architecture`` replays, so ``model_from_checkpoint`` rebuilds the
    model from it and the state dict. Raises ConfigError for a name that is not a removable
    block (unknown, shape-changing, or removed already).
    """
    blocks = list(dict.fromkeys(blocks))
    if not blocks:
        return model, {"removed_blocks": {}}
    infos = {info.name: info for info in inspect_blocks(model, length)}
    removed = {}
    for name in blocks:
        info = infos.get(name)
        if info is None:
            raise ConfigError(f"remove_blocks: {name!r} is not a block of this model; "
                              f"blocks: {', '.join(infos)}")
        if not info.removable:
            raise ConfigError(f"remove_blocks: block {name!r} cannot be removed ({info.reason})")
        removed[name] = info.replacement
    for name, kind in removed.items():
        surgery.replace_module(model, name, stand_in_for(model.get_submodule(name), kind))
    return model, {"removed_blocks": removed}


def prior_architecture(model: nn.Module, model_name: str, num_classes: int, length: int) -> dict[str, Any]:
    """Infer the architecture record of ``model`` relative to the base builder's model.

    Blocks already replaced by a REPLACEMENTS stand-in go to ``removed_blocks``; any state
    tensor whose shape differs from the freshly built base model's sets ``resized``. Used when
    the caller does not pass the input model's record (option ``architecture``).
    """
    from ..models import build_model

    record: dict[str, Any] = {}
    removed = {}
    for name in model.removable_blocks():
        kind = replacement_kind_of(model.get_submodule(name))
        if kind is not None:
            removed[name] = kind
    if removed:
        record["removed_blocks"] = removed
    with torch.random.fork_rng(devices=[]):  # building the reference must not move the caller's RNG
        base = build_model(model_name, num_classes, length)
    base_shapes = {key: tuple(value.shape) for key, value in base.state_dict().items()}
    if any(key in base_shapes and tuple(value.shape) != base_shapes[key]
           for key, value in model.state_dict().items()):
        record["resized"] = True
    return record


# ---------------------------------------------------------------------------------- features


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
                     batch_size: int, device: torch.device, progress: bool = False,
                     desc: str = "features") -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """One frozen forward pass over ``x`` (N, 2, L), pooling the output of each module in ``points``.

    Returns ({point: float32 CPU tensor (N, d_point)}, the model's predicted classes (N,) int64).
    The model must already be on ``device`` and in eval mode.
    """
    n = len(x)
    features: dict[str, torch.Tensor] = {}
    cursor = [0, 0]  # [start, stop] of the batch being run

    def make_hook(name):
        def hook(module, inputs, output):
            pooled = pool_features(output, pooling).float().cpu()
            if name not in features:  # allocate once the width is known: no list-then-concat copy
                features[name] = torch.empty(n, pooled.shape[1], dtype=torch.float32)
            features[name][cursor[0]:cursor[1]] = pooled
        return hook

    handles = [model.get_submodule(name).register_forward_hook(make_hook(name)) for name in points]
    predictions = np.empty(n, dtype=np.int64)
    try:
        with torch.no_grad():
            for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
                batch = torch.as_tensor(np.ascontiguousarray(x[start:start + batch_size]),
                                        dtype=torch.float32).to(device)
                cursor[:] = [start, start + len(batch)]
                predictions[start:start + len(batch)] = model(batch).argmax(dim=1).cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
    return features, predictions


# ------------------------------------------------------------------------------------ probes


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
        """(N, d) -> (N, K)."""
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        if len(labels) == 0:
            return float("nan")
        return float((self.logits(features).argmax(dim=1) == labels).double().mean())


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                     optimizer: str = "lbfgs", steps: int = 100, weight_decay: float = 1e-3,
                     lr: float = 1e-2, batch_size: int = 1024, seed: int = 0) -> LinearProbe:
    """Fit a softmax-regression probe on ``features`` (N, d) float32 and ``labels`` (N,) int64.

    Loss: mean cross-entropy + weight_decay / 2 * ||weight||^2, weights start at zero.
    ``optimizer="lbfgs"``: full batch, ``steps`` L-BFGS iterations with strong-Wolfe line search
    (deterministic, no seed needed). ``optimizer="adam"``: ``steps`` epochs of mini-batches of
    ``batch_size`` in an order drawn from ``seed``, learning rate ``lr``.
    """
    if optimizer not in PROBE_OPTIMIZERS:
        raise ConfigError(f"probe_optimizer={optimizer!r}: expected one of {', '.join(PROBE_OPTIMIZERS)}")
    if steps < 1:
        raise ConfigError(f"probe_steps={steps!r}: expected an integer >= 1")
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    constant = (std == 0) | (std <= _CONSTANT_RELATIVE_STD * mean.abs())
    scale = torch.where(constant, torch.ones_like(std), std)
    z = (features - mean) / scale
    z[:, constant] = 0.0
    weight = torch.zeros(z.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)

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
            generator = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                order = torch.randperm(len(labels), generator=generator)
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
        device: "auto" (CUDA when present), "cpu" or "cuda[:N]" for the forward passes; the
            probes are fit on the CPU.
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
    from ..train import resolve_device

    tic = time.perf_counter()
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
    if epsilon is not None and not (isinstance(epsilon, (int, float)) and epsilon >= 0):
        raise ConfigError(f"epsilon={epsilon!r}: expected a number >= 0 or None (1/sqrt(n_val))")
    if probe_optimizer not in PROBE_OPTIMIZERS:
        raise ConfigError(f"probe_optimizer={probe_optimizer!r}: expected one of {', '.join(PROBE_OPTIMIZERS)}")
    length = int(getattr(data, "length", None) or model.length)
    run_device = resolve_device(device)

    infos = inspect_blocks(model, length)
    stem = model.stem_name
    probed = [stem] + [info.name for info in infos if not info.removed]
    shapes = _shapes_at(model, probed, length)
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

    original_device = _model_device(model)
    modes = {module: module.training for module in model.modules()}
    try:
        model.to(run_device).eval()
        train_features, _ = collect_features(model, x_train, probed, pooling=pooling, batch_size=batch_size,
                                             device=run_device, progress=progress, desc="LaCD train features")
        val_features, val_predictions = collect_features(model, x_val, probed, pooling=pooling,
                                                         batch_size=batch_size, device=run_device,
                                                         progress=progress, desc="LaCD val features")
    finally:
        model.to(original_device)
        for module, training in modes.items():
            module.training = training
    features_s = time.perf_counter() - tic

    y_train_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
    accuracies: dict[str, tuple[float, float]] = {}
    for name in tqdm(probed, desc="LaCD probes", disable=not progress, leave=False):
        probe = fit_linear_probe(train_features[name], y_train_t, num_classes, optimizer=probe_optimizer,
                                 steps=probe_steps, weight_decay=probe_weight_decay, lr=probe_lr,
                                 batch_size=probe_batch_size, seed=seed)
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
                   "probe_lr": probe_lr, "probe_batch_size": probe_batch_size, "device": str(run_device)},
        "time_s": {"features": features_s, "probes": probes_s, "total": time.perf_counter() - tic},
    }


# --------------------------------------------------------------------------------- selection


def rank_by_score(report: Mapping[str, Any], score: str = "gain") -> list[str]:
    """Removable blocks of a LaCD report, lowest ``score`` ("gain" or "step_gain") first; ties
    keep depth order."""
    if score not in ("gain", "step_gain"):
        raise ConfigError(f"score={score!r}: expected 'gain' or 'step_gain'")
    candidates = [p for p in report["points"] if p["kind"] == "block" and p["removable"]]
    return [p["name"] for p in sorted(candidates, key=lambda p: p[score])]


def lowest_gain_blocks(report: Mapping[str, Any], count: int, score: str = "gain") -> list[str]:
    """The ``count`` removable blocks of lowest gain (all of them when fewer exist)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"num_blocks={count!r}: expected an integer >= 0")
    return rank_by_score(report, score)[:count]


def select_for_budget(ranking: Sequence[str], savings: Mapping[str, int], target_saving: float,
                      rule: str = "exact", tolerance: float = 0.0) -> list[str]:
    """Blocks to remove, in ranking order (first = first to go), for a MAC saving of ``target_saving``.

    Rule "exact": the exact subset search of ``fcos.prune.block_selection`` (window
    ``[target, target + tolerance]`` MACs, most important blocks spared). Greedy rules walk
    ``ranking``: "closest" takes a block when the total saving gets closer to the target (a tie
    counts as closer when it meets the target), so a block that would overshoot by more than it
    helps is skipped and later, smaller ones are tried; "reach" takes blocks until the target is
    met (or the ranking is exhausted).
    """
    if rule not in BUDGET_RULES:
        raise ConfigError(f"budget_rule={rule!r}: expected one of {', '.join(BUDGET_RULES)}")
    if rule == "exact":
        from .block_selection import select_subset

        return select_subset(ranking, savings, target_saving, tolerance)[0]
    chosen, saved = [], 0
    for name in ranking:
        if rule == "reach":
            if saved >= target_saving:
                break
            chosen.append(name)
            saved += savings[name]
            continue
        after = saved + savings[name]
        if abs(after - target_saving) < abs(saved - target_saving) or (
                abs(after - target_saving) == abs(saved - target_saving) and after >= target_saving > saved):
            chosen.append(name)
            saved = after
    return chosen


def budget_target(macs_now: int, budget: float, reference_macs: int | None = None) -> float:
    """MACs to save so that the model costs (1 - budget) x reference (default: its own MACs)."""
    reference = macs_now if reference_macs is None else int(reference_macs)
    return max(0.0, macs_now - (1.0 - budget) * reference)


def remove_and_summarise(model: nn.Module, blocks: Sequence[str], *, length: int,
                         budget: float | None = None, reference_macs: int | None = None,
                         rule: str | None = None) -> tuple[nn.Module, dict, dict]:
    """Remove ``blocks`` and measure the result with the one MAC counter.

    Returns (model, removal record, summary) where summary has ``removed`` (depth order),
    ``macs_before``/``macs_after``, ``params_before``/``params_after``, ``reference_macs``,
    ``achieved_reduction`` (1 - macs_after / reference) and, when a budget was given,
    ``budget``, ``budget_rule`` and ``gap`` (achieved - budget).
    """
    macs_before, params_before = macs_and_params(model, length)
    order = {name: i for i, name in enumerate(model.removable_blocks())}
    blocks = sorted(blocks, key=order.__getitem__)
    model, removal = remove_blocks(model, blocks, length=length)
    macs_after, params_after = macs_and_params(model, length)
    reference = macs_before if reference_macs is None else int(reference_macs)
    summary = {"removed": blocks, "macs_before": macs_before, "macs_after": macs_after,
               "params_before": params_before, "params_after": params_after,
               "reference_macs": reference, "achieved_reduction": 1.0 - macs_after / reference}
    if budget is not None:
        gap = summary["achieved_reduction"] - budget
        summary.update({"budget": budget, "budget_rule": rule, "gap": gap,
                        "off_target": bool(abs(gap) > OFF_TARGET)})
    return model, removal, summary


def prune_ranked_to_budget(model: nn.Module, ranking: Sequence[str], *, length: int, budget: float,
                           rule: str = "exact",
                           reference_macs: int | None = None) -> tuple[nn.Module, dict, dict]:
    """Remove blocks of ``ranking`` (first = first to go) to meet a MAC-reduction ``budget``.

    The budget is a fraction of ``reference_macs`` (default: the model's MACs now); see
    ``select_for_budget`` for the rule. Returns what ``remove_and_summarise`` returns.
    """
    infos = {info.name: info for info in inspect_blocks(model, length)}
    bad = [name for name in ranking if name not in infos or not infos[name].removable]
    if bad:
        raise ConfigError(f"ranking names blocks that cannot be removed: {', '.join(bad)}")
    from .budget import BUDGET_TOLERANCE

    macs_now, _ = macs_and_params(model, length)
    target = budget_target(macs_now, budget, reference_macs)
    reference = macs_now if reference_macs is None else int(reference_macs)
    chosen = select_for_budget(ranking, {name: infos[name].saved_macs for name in ranking}, target, rule,
                               tolerance=BUDGET_TOLERANCE * reference)
    return remove_and_summarise(model, chosen, length=length, budget=budget,
                                reference_macs=reference_macs, rule=rule)


# ------------------------------------------------------------------------------------ method

#: Options of the "lacd" method that go to ``diagnose_collapse``.
DIAGNOSE_OPTIONS = ("pooling", "epsilon", "max_train", "max_val", "batch_size", "probe_optimizer",
                    "probe_steps", "probe_weight_decay", "probe_lr", "probe_batch_size", "device",
                    "cache_limit_bytes")
#: Options every block-removing method understands.
REMOVAL_OPTIONS = ("budget_rule", "reference_macs", "architecture")


def check_options(method: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ConfigError naming the unknown keys of ``options``."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for pruning method {method}; "
                          f"valid options: {', '.join(known)}")


def input_architecture(model: nn.Module, model_name: str, data, options: Mapping[str, Any]) -> dict:
    """The record of the model handed to a method: ``options["architecture"]`` when given,
    else inferred (see ``prior_architecture``)."""
    if options.get("architecture") is not None:
        return dict(options["architecture"])
    length = int(getattr(data, "length", None) or model.length)
    num_classes = getattr(data, "num_classes", None) or _output_classes(model, length)
    return prior_architecture(model, model_name, int(num_classes), length)


def _output_classes(model: nn.Module, length: int) -> int:
    modes = {module: module.training for module in model.modules()}
    try:
        with torch.no_grad():
            return int(model.eval()(torch.zeros(1, 2, length, device=_model_device(model))).shape[1])
    finally:
        for module, training in modes.items():
            module.training = training


@register_method("lacd")
def lacd(model: nn.Module, *, model_name: str, budget: float | None, data: Any, seed: int,
         options: dict[str, Any], progress: bool) -> PruneResult:
    """FCOS stage 2. budget None: remove the collapsed blocks (epsilon criterion); option
    ``num_blocks=k``: remove the k lowest-gain blocks; budget float: remove lowest-gain blocks
    to that MAC reduction. The input model is not modified. ``record`` is the LaCD report plus
    ``selection`` (mode and the ``remove_and_summarise`` summary)."""
    check_options("lacd", options, DIAGNOSE_OPTIONS + REMOVAL_OPTIONS + ("num_blocks",))
    if data is None:
        raise ConfigError("pruning method lacd needs the prepared dataset (probes train on it)")
    num_blocks = options.get("num_blocks")
    if num_blocks is not None and budget is not None:
        raise ConfigError("lacd: give either a MAC budget or num_blocks, not both")
    previous = input_architecture(model, model_name, data, options)
    model = copy.deepcopy(model)
    length = int(data.length)
    report = diagnose_collapse(model, data, seed=seed, progress=progress,
                               **{k: options[k] for k in DIAGNOSE_OPTIONS if k in options})
    rule = options.get("budget_rule", "exact")
    if budget is not None:
        mode = "budget"
        model, removal, summary = prune_ranked_to_budget(
            model, rank_by_score(report), length=length, budget=budget, rule=rule,
            reference_macs=options.get("reference_macs"))
    else:
        mode = "num_blocks" if num_blocks is not None else "epsilon"
        chosen = report["collapsed"] if num_blocks is None else lowest_gain_blocks(report, num_blocks)
        model, removal, summary = remove_and_summarise(model, chosen, length=length,
                                                       reference_macs=options.get("reference_macs"))
    report["selection"] = {"mode": mode, "num_blocks": num_blocks, **summary}
    return PruneResult(model, merge_architecture(previous, removal), record=report)
