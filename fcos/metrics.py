"""Cost and accuracy metrics: the one MAC/parameter counter and the classification report.

MACs are multiply-accumulates of the conv and linear layers (the quantity the authors' thop
numbers label "FLOPs"; FLOPs in the strict sense are 2 x MACs). BatchNorm, activations, pooling,
residual adds and the bias terms are not counted. An LSTM/GRU/RNN costs, per example and time
step, gates x hidden x (inputs + hidden) per layer and direction (gates 4/3/1; the matrix
products only). A module with its own learnable computation
reports its MACs through a ``count_macs(inputs, output) -> int`` method (SigNet50's S2M
operator does); the counter adds those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Leaf modules with parameters whose cost is deliberately not counted (normalisation layers).
_UNCOUNTED_WITH_PARAMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _conv_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    # weight (C_out, C_in / groups, *kernel): every output element costs C_in/groups * prod(kernel).
    return output.numel() * module.weight[0].numel()


def _linear_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return output.numel() * module.weight.shape[1]


_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def rnn_macs(module: nn.RNNBase, inputs: tuple, output) -> int:
    """MACs of one LSTM/GRU/RNN call: batch x steps x sum over layers and directions of
    gates x hidden x (layer inputs + recurrent width); an LSTM projection adds hidden x proj."""
    data = inputs[0]
    if isinstance(data, nn.utils.rnn.PackedSequence):
        raise TypeError("macs_and_params cannot cost an RNN on a PackedSequence")
    if data.dim() == 2:  # unbatched (T, F)
        batch, steps = 1, data.shape[0]
    else:
        batch, steps = (data.shape[0], data.shape[1]) if module.batch_first else \
            (data.shape[1], data.shape[0])
    gates = _GATES[type(module)]
    directions = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0) or 0
    recurrent = proj or module.hidden_size
    per_step = 0
    for layer in range(module.num_layers):
        layer_inputs = module.input_size if layer == 0 else recurrent * directions
        per_direction = gates * module.hidden_size * (layer_inputs + recurrent)
        if proj:
            per_direction += module.hidden_size * proj
        per_step += directions * per_direction
    return int(batch * steps * per_step)


def _counting_rule(module: nn.Module):
    if callable(getattr(module, "count_macs", None)):
        return lambda m, inputs, output: int(m.count_macs(inputs, output))
    if isinstance(module, _CONV):
        return _conv_macs
    if isinstance(module, nn.Linear):
        return _linear_macs
    if type(module) in _GATES:
        return rnn_macs
    return None


def macs_and_params(model: nn.Module, length: int, channels: int = 2) -> tuple[int, int]:
    """Count (MACs, params) of ``model`` for one input of shape (1, channels, length).

    MACs: Conv1d/2d/3d contribute out_elements * (in_channels / groups) * prod(kernel_size),
    Linear out_elements * in_features, and a module with ``count_macs(inputs, output)`` what that
    returns (its children are then not visited separately). Counting uses forward hooks in eval
    mode under ``no_grad`` on a zero input created on the model's device; the hooks are removed
    and every module's train/eval flag is restored afterwards, and no random numbers are drawn.
    Params: numel of all parameters (trainable or frozen), shared tensors once.

    Raises TypeError if a leaf module with parameters has no counting rule (e.g. an Embedding), so
    that a new layer type cannot silently be costed at zero.
    """
    macs = sum(macs_by_module(model, length, channels).values())
    params = sum(p.numel() for p in model.parameters())
    return int(macs), int(params)


def macs_by_module(model: nn.Module, length: int, channels: int = 2) -> dict[str, int]:
    """MACs of each module that has a counting rule (dotted name -> MACs for one input), as
    macs_and_params counts them (0 where the rule says so); the values sum to its total."""
    counted_roots: list[str] = []
    rules = {}
    for name, module in model.named_modules():
        if any(name.startswith(root + ".") for root in counted_roots):
            continue
        rule = _counting_rule(module)
        if rule is not None:
            rules[name] = (module, rule)
            if hasattr(module, "count_macs"):
                counted_roots.append(name)
        elif (next(module.parameters(recurse=False), None) is not None
              and not isinstance(module, _UNCOUNTED_WITH_PARAMS)):
            raise TypeError(f"macs_and_params has no rule for {type(module).__name__} "
                            f"at {name or '<model>'}")

    totals: dict[str, int] = {}

    def make_hook(name, rule):
        def hook(module, inputs, output):
            totals[name] = totals.get(name, 0) + int(rule(module, inputs, output))
        return hook

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = {module: module.training for module in model.modules()}
    handles = [module.register_forward_hook(make_hook(name, rule)) for name, (module, rule) in rules.items()]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, length, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return totals


def classification_report(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                          snr: Sequence[int] | np.ndarray,
                          class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy overall, per SNR and per class, and the confusion matrix.

    Args:
        y_true, y_pred: integer labels in [0, len(class_names)), shape (N,).
        snr: SNR in dB of each example, shape (N,).
        class_names: names in label order.

    Returns a JSON-able dict: ``accuracy`` (float), ``per_snr`` ({str(snr): accuracy}, ascending
    SNR), ``per_class`` ({name: accuracy}, i.e. recall; None for a class absent from y_true),
    ``confusion`` (list of lists of int, rows = true class, columns = predicted class),
    ``n_test`` (int, N).

    Raises ValueError if the arrays are not 1-D of one common non-zero length or a label is out
    of range.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    snr = np.asarray(snr)
    num_classes = len(class_names)
    if y_true.ndim != 1 or y_pred.ndim != 1 or snr.ndim != 1:
        raise ValueError(f"y_true, y_pred and snr must be 1-D, got shapes {y_true.shape}, "
                         f"{y_pred.shape}, {snr.shape}")
    if not len(y_true) == len(y_pred) == len(snr):
        raise ValueError(f"y_true, y_pred and snr differ in length: {len(y_true)}, "
                         f"{len(y_pred)}, {len(snr)}")
    if len(y_true) == 0:
        raise ValueError("classification_report needs at least one example")
    for label, values in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{label} must hold integer labels, got dtype {values.dtype}")
        if values.min() < 0 or values.max() >= num_classes:
            raise ValueError(f"{label} has labels outside [0, {num_classes}) "
                             f"(min {values.min()}, max {values.max()})")

    correct = y_true == y_pred
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_snr = {str(int(value)): float(correct[snr == value].mean()) for value in np.unique(snr)}
    per_class = {}
    for index, name in enumerate(class_names):
        members = y_true == index
        per_class[str(name)] = float(correct[members].mean()) if members.any() else None
    return {
        "accuracy": float(correct.mean()),
        "per_snr": per_snr,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "n_test": int(len(y_true)),
    }
