"""MACs of a model as a function of its channel groups' widths, for the channel-pruning budget
search: selecting channels changes widths only, so the MACs are a fixed bilinear function of
them, calibrated with one forward pass (:class:`WidthCostModel`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..metrics import macs_and_params, rnn_macs
from .groups import ChannelGroup
from .modes import eval_mode

CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Linear)


class WidthCostModel:
    """MACs of a model (inputs (1, 2, ``length``)) as a function of its groups' widths.

    Selecting channels changes widths only. A conv costs output positions x kernel elements x
    C_out x C_in and a linear layer tokens x C_out x C_in: ``a x C_out x C_in`` with ``a`` fixed
    by the input length, measured once with forward hooks. C_out is the width of the group the
    layer writes, C_in the width of the group it reads (times ``block`` for a linear layer
    reading a flattened map), other widths stay. What the counter prices otherwise (modules
    with ``count_macs``: SigNet50's S2M, ResNet56's shortcut map, which selection keeps a free
    0/1 routing map) is taken as constant: the difference between the counter's total and the
    conv/linear terms. A layer reading several groups (a concatenation) has one input slice
    per group; an LSTM/GRU's first-layer input products scale with its input width, the rest
    of its cost is constant. ``macs(widths)`` for widths in ``groups`` order.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup], length: int):
        self.base_macs, _ = macs_and_params(model, length)
        writes = {p.module: index for index, group in enumerate(groups) for p in group.producers}
        reads: dict[str, list[tuple[int, int]]] = {}  # module -> [(group, block)], one per slice
        for index, group in enumerate(groups):
            for c in group.consumers:
                reads.setdefault(c.module, []).append((index, c.block))
        own_counter = [name for name, module in model.named_modules()
                       if callable(getattr(module, "count_macs", None))]
        layers = {name: module for name, module in model.named_modules()
                  if isinstance(module, CONV_OR_LINEAR + (nn.RNNBase,))
                  and not any(name.startswith(root + ".") for root in own_counter)}
        macs = _layer_macs(model, layers, length)
        widths = [group.channels for group in groups]
        self._terms = []  # (a, out group or -1, out width, [(in group, block)], in width)
        variable = 0
        for name, module in layers.items():
            if isinstance(module, nn.RNNBase):
                # only the first layer's input products depend on the input width
                in_width, out_width, out_group = module.input_size, 1, -1
                term_macs = rnn_input_macs(module, macs[name])
            else:
                out_width, in_width = module.weight.shape[0], module.weight.shape[1]
                out_group = writes.get(name, -1)
                term_macs = macs[name]
            self._terms.append((term_macs // (out_width * in_width), out_group, out_width,
                                reads.get(name, []), in_width))
            variable += term_macs
        self._widths = widths
        self._constant = self.base_macs - variable

    def macs(self, widths: Sequence[int]) -> int:
        total = self._constant
        for a, out_group, out_width, slices, in_width in self._terms:
            out_now = out_width if out_group < 0 else int(widths[out_group])
            in_now = in_width + sum((int(widths[g]) - self._widths[g]) * block
                                    for g, block in slices)
            total += a * out_now * in_now
        return int(total)


def rnn_input_macs(module: nn.RNNBase, total: int) -> int:
    """The part of an RNN's MACs ``total`` spent on its first layer's inputs (see
    fcos.metrics.rnn_macs): per step and direction gates x hidden x input_size."""
    from ..metrics import _GATES

    gates, directions = _GATES[type(module)], 2 if module.bidirectional else 1
    recurrent = (getattr(module, "proj_size", 0) or 0) or module.hidden_size
    per_step = 0
    for layer in range(module.num_layers):
        layer_inputs = module.input_size if layer == 0 else recurrent * directions
        per_step += directions * gates * module.hidden_size * (layer_inputs + recurrent)
        if getattr(module, "proj_size", 0):
            per_step += directions * module.hidden_size * module.proj_size
    steps = total // per_step
    return steps * directions * gates * module.hidden_size * module.input_size


def _layer_macs(model: nn.Module, layers: Mapping[str, nn.Module], length: int) -> dict[str, int]:
    """MACs of each conv/linear layer in ``layers`` for one zero input (1, 2, length)."""
    found: dict[str, int] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            if isinstance(module, nn.RNNBase):
                found[name] = found.get(name, 0) + rnn_macs(module, inputs, output)
                return
            per_output = module.weight[0].numel() if not isinstance(module, nn.Linear) \
                else module.weight.shape[1]
            found[name] = found.get(name, 0) + output.numel() * per_output
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers.items()]
    first = next(model.parameters())
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 2, length, device=first.device, dtype=first.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return {name: found.get(name, 0) for name in layers}
