"""Channel groups of any network, derived from its dataflow on one example input.

The recording (fcos.prune.dependency.recorder) is replayed op by op, following for every tensor
which of its dimensions holds prunable channels and whose channels they are (its *layout*: the
channel dimension and a list of segments, each a run of channels of one channel space, or
fixed channels, with ``block`` features per channel once a (C, T) map is flattened).
A channel space is opened by every layer that writes new channels; spaces that must share one
partition are merged (union-find). The result has the data structure of fcos.prune.groups.

What is followed
    - Conv1d/Conv2d with groups=1: reads its input channels (consumer: one slice per segment,
      so a concatenation gives slices), writes a new space (producer);
    - depthwise Conv1d/Conv2d (groups = in = out channels): reads and writes the same channels,
      a producer of its input's space;
    - Linear: reads the last dimension (per-channel column blocks after a channel-major flatten),
      writes a new space;
    - BatchNorm1d/2d right after a producer, on its output only: that producer's ``norm``;
    - LSTM/GRU/RNN reading the last dimension: its first layer's input weights are consumer
      slices; its outputs hold no prunable channels (hidden units are not grouped);
    - a channel map (a module with a 2-D ``mapping`` buffer, ResNet56's shortcut): consumer of
      its input, producer of a new space;
    - activations, dropout, pooling, padding, reductions over other dimensions, view/reshape/
      flatten/squeeze/unsqueeze that keep channels channel-major, transpose/permute, indexing
      of other dimensions: the layout is carried along;
    - add/sub/mul/div/maximum/minimum of two tensors with channels: their spaces are merged (a
      residual stream, kind "stream"); a tensor without channels may take part only when it is
      broadcast along the channel dimension;
    - torch.cat along the channel dimension: the segments are concatenated; along another
      dimension: like an addition.

Anything else that touches a tensor holding prunable channels (a matmul or einsum over them, a
channel shuffle, indexing channels, LayerNorm/GroupNorm, BatchNorm after an addition, grouped
convs, a layer called twice, an unknown layer with parameters) raises ConfigError naming the op
and the module it happened in: pruning would otherwise be wrong. Spaces that reach the model's
output (the classifier's classes) are never groups; a layer reading the network input reads
fixed channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ..groups import ChannelGroup, Consumer, Producer, Segment
from .recorder import Op, Recording, record

CONVS = (nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

UNARY = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "gelu", "silu", "silu_", "elu", "elu_", "selu", "selu_", "celu", "leaky_relu",
    "leaky_relu_", "hardswish", "hardswish_", "hardsigmoid", "mish", "softplus", "softsign",
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "clone", "contiguous", "abs", "neg", "__neg__", "exp", "log",
    "sqrt", "square", "clamp", "clamp_", "clip", "float", "double", "half", "to", "detach",
    "type_as", "sin", "cos", "threshold", "threshold_", "logsigmoid", "tanhshrink", "relu_",
    "__pos__", "sign",
}
BINARY = {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
    "__isub__", "rsub", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_",
    "__truediv__", "__rtruediv__", "__itruediv__", "true_divide", "maximum", "minimum",
    "pow", "__pow__", "__rpow__",
}
#: Binary ops that merge two streams into a residual stream (kind "stream").
ADDITIVE = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
            "__rsub__", "__isub__", "rsub"}
RESHAPES = {"view", "reshape", "flatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_",
            "unflatten", "view_as", "reshape_as", "expand_as"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm",
              "prod", "median", "nansum", "nanmean"}
SPATIAL = {"interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle"}
CATS = {"cat", "concat", "concatenate"}
TRANSPOSES = {"transpose", "transpose_", "swapaxes", "swapdims", "permute", "movedim",
              "moveaxis", "t"}


@dataclass(frozen=True)
class _Seg:
    space: int | None  # None: fixed channels
    channels: int
    block: int = 1


@dataclass(frozen=True)
class _Layout:
    dim: int
    segs: tuple[_Seg, ...]

    @property
    def tracked(self) -> list[_Seg]:
        return [seg for seg in self.segs if seg.space is not None]


@dataclass
class _Space:
    channels: int
    producers: list[list] = field(default_factory=list)  # [op index, module, norm or None]
    consumers: list[tuple[int, str, int, tuple[_Seg, ...]]] = field(default_factory=list)
    merged: bool = False
    pinned: bool = False


def _where(op: Op) -> str:
    return f"in {op.context}" if op.context else "in the model's forward"


class _Analysis:
    def __init__(self, model: nn.Module, recording: Recording):
        self.model = model
        self.recording = recording
        self.layouts: dict[int, _Layout] = {}
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.fresh: dict[int, list] = {}  # tensor id -> its producer's entry [op, module, norm]
        self.uses: dict[int, int] = {}
        self.norm_checks: list[tuple[int, str, str]] = []  # (tensor id, norm, producer)
        self.module_calls: dict[str, int] = {}

    # --- spaces ---------------------------------------------------------------------------
    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def new_space(self, channels: int) -> int:
        self.spaces.append(_Space(channels))
        self.parent.append(len(self.parent))
        return len(self.spaces) - 1

    def union(self, a: int, b: int, additive: bool) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            if additive:
                self.spaces[a].merged = True
            return
        keep, gone = (a, b) if a < b else (b, a)
        target, source = self.spaces[keep], self.spaces[gone]
        target.producers += source.producers
        target.consumers += source.consumers
        target.merged = target.merged or source.merged or additive
        target.pinned = target.pinned or source.pinned
        self.parent[gone] = keep

    # --- layouts --------------------------------------------------------------------------
    def layout(self, tensor: torch.Tensor) -> _Layout | None:
        return self.layouts.get(id(tensor))

    def set_layout(self, tensor: torch.Tensor, layout: _Layout | None) -> None:
        if layout is None:
            self.layouts.pop(id(tensor), None)
        else:
            self.layouts[id(tensor)] = layout

    # --- the replay -----------------------------------------------------------------------
    def run(self) -> None:
        for op in self.recording.ops:
            for tensor in {id(t): t for t in op.inputs}.values():
                self.uses[id(tensor)] = self.uses.get(id(tensor), 0) + 1
            tracked = [t for t in op.inputs if self.layout(t) is not None]
            if op.kind == "module":
                self.module_op(op, tracked)
            elif tracked:
                self.function_op(op, tracked)
            else:
                for out in op.outputs:
                    # an op without channel inputs writing into a tracked tensor in place
                    if self.layout(out) is not None and op.name.endswith("_"):
                        self.refuse(op, "writes in place into a tensor holding prunable channels")
        for tensor in self.recording.outputs:
            layout = self.layout(tensor)
            for seg in (layout.tracked if layout else []):
                self.spaces[self.find(seg.space)].pinned = True
        for tensor_id, norm, producer in self.norm_checks:
            if self.uses.get(tensor_id, 0) != 1:
                raise ConfigError(f"channel groups: the output of {producer} is used besides "
                                  f"its BatchNorm {norm}; fusing the pair would change that "
                                  f"other use")

    def refuse(self, op: Op, why: str) -> None:
        what = f"layer {op.name} ({type(op.module).__name__})" if op.kind == "module" \
            else f"{op.name} {_where(op)}"
        raise ConfigError(f"channel groups: cannot prune through {what}: {why}")

    # --- modules --------------------------------------------------------------------------
    def module_op(self, op: Op, tracked: list[torch.Tensor]) -> None:
        module = op.module
        if op.name in self.module_calls and (tracked or isinstance(module, (*CONVS, nn.Linear))):
            self.refuse(op, "the layer is called more than once (shared weights)")
        self.module_calls[op.name] = op.index
        data = op.inputs[0] if op.inputs else None
        layout = None if data is None else self.layout(data)
        if tracked and (data is None or layout is None):
            self.refuse(op, "prunable channels reach it in an argument other than its input")
        out = op.outputs[0] if op.outputs else None
        mapping = getattr(module, "mapping", None)
        if isinstance(module, CONVS):
            self.conv(op, module, layout, out)
        elif isinstance(module, nn.Linear):
            if layout is not None:
                if layout.dim != data.dim() - 1:
                    self.refuse(op, "its input's channels are not in the last dimension")
                self.consume(op, layout)
            self.produce(op, out, dim=out.dim() - 1)
        elif isinstance(module, NORMS):
            self.norm(op, module, data, layout, out)
        elif isinstance(module, nn.RNNBase):
            if layout is not None:
                if layout.dim != data.dim() - 1 or any(seg.block != 1 for seg in layout.segs):
                    self.refuse(op, "its input's channels are not the features of the last "
                                    "dimension")
                self.consume(op, layout)
        elif isinstance(mapping, torch.Tensor) and mapping.dim() == 2:
            if layout is not None:
                self.check_dim(op, layout, 1, block=True)
                self.consume(op, layout)
            self.produce(op, out, dim=1)
        elif tracked:
            self.refuse(op, "a layer with its own parameters that channel pruning does not "
                            "know how to narrow")

    def check_dim(self, op: Op, layout: _Layout, dim: int, block: bool = False) -> None:
        if layout.dim != dim:
            self.refuse(op, f"its input's channels are in dimension {layout.dim}, not {dim}")
        if block and any(seg.block != 1 for seg in layout.segs):
            self.refuse(op, "its input is a flattened channel map")

    def conv(self, op: Op, module: nn.Module, layout: _Layout | None, out: torch.Tensor) -> None:
        if module.groups == 1:
            if layout is not None:
                self.check_dim(op, layout, 1, block=True)
                self.consume(op, layout)
            self.produce(op, out, dim=1)
            return
        if not module.groups == module.in_channels == module.out_channels:
            self.refuse(op, f"grouped conv (groups={module.groups}, {module.in_channels} -> "
                            f"{module.out_channels} channels); only depthwise convs "
                            f"(groups = in = out channels) and groups=1 are supported")
        if layout is None:
            return  # depthwise on fixed channels: its outputs are fixed too
        self.check_dim(op, layout, 1, block=True)
        if len(layout.segs) != 1 or layout.segs[0].space is None:
            self.refuse(op, "a depthwise conv reading a concatenation")
        entry = [op.index, op.name, None]
        self.spaces[self.find(layout.segs[0].space)].producers.append(entry)
        self.set_layout(out, layout)
        self.fresh[id(out)] = entry

    def produce(self, op: Op, out: torch.Tensor, dim: int) -> None:
        space = self.new_space(int(out.shape[dim]))
        entry = [op.index, op.name, None]
        self.spaces[space].producers.append(entry)
        self.set_layout(out, _Layout(dim, (_Seg(space, int(out.shape[dim])),)))
        self.fresh[id(out)] = entry

    def consume(self, op: Op, layout: _Layout) -> None:
        for index, seg in enumerate(layout.segs):
            if seg.space is not None:
                space = self.find(seg.space)
                self.spaces[space].consumers.append((op.index, op.name, seg.block,
                                                     layout.segs[:index]))

    def norm(self, op: Op, module: nn.Module, data, layout: _Layout | None, out) -> None:
        if layout is None:
            return
        if not (module.affine and module.track_running_stats):
            self.refuse(op, "a BatchNorm without affine parameters or running statistics")
        self.check_dim(op, layout, 1, block=True)
        entry = self.fresh.get(id(data))
        if entry is None:
            self.refuse(op, "it normalises channels that no single layer writes right before "
                            "it (after an addition, concatenation or activation)")
        if entry[2] is not None:
            self.refuse(op, f"{entry[1]} already has the BatchNorm {entry[2]}")
        entry[2] = op.name
        self.norm_checks.append((id(data), op.name, entry[1]))
        self.set_layout(out, layout)

    # --- functions ------------------------------------------------------------------------
    def function_op(self, op: Op, tracked: list[torch.Tensor]) -> None:
        name = op.name
        if not op.outputs:
            if name == "__setitem__":
                self.refuse(op, "in-place assignment into a tensor holding prunable channels")
            return
        first = tracked[0]
        layout = self.layout(first)
        if name in UNARY and len({id(t) for t in tracked}) == 1 and len(op.inputs) == 1:
            for out in op.outputs:
                if out.shape != first.shape:
                    self.refuse(op, "changes the shape")
                self.set_layout(out, layout)
        elif name in BINARY or name in UNARY:
            self.elementwise(op, additive=name in ADDITIVE)
        elif "pool" in name or name in SPATIAL:
            self.check_dim(op, layout, 1)
            for out in op.outputs:
                if out.dim() == first.dim():
                    self.set_layout(out, layout)
        elif name == "pad":
            pad = op.args[1] if len(op.args) > 1 else op.kwargs.get("pad")
            padded = len(pad) // 2
            position = first.dim() - 1 - layout.dim
            if position < padded and (pad[2 * position] or pad[2 * position + 1]):
                self.refuse(op, "pads the channel dimension")
            self.set_layout(op.outputs[0], layout)
        elif name in RESHAPES:
            self.reshape(op, first, layout)
        elif name in TRANSPOSES:
            self.transpose(op, first, layout)
        elif name in REDUCTIONS:
            self.reduction(op, first, layout)
        elif name in CATS:
            self.cat(op)
        elif name in ("softmax", "log_softmax"):
            dim = op.args[1] if len(op.args) > 1 else op.kwargs.get("dim")
            if dim is None or dim % first.dim() == layout.dim:
                self.refuse(op, "mixes the channels (softmax over them)")
            self.set_layout(op.outputs[0], layout)
        elif name == "__getitem__":
            self.getitem(op, first, layout)
        else:
            self.refuse(op, "an operation on prunable channels that the channel analysis cannot "
                            "follow (it may mix channels)")

    def elementwise(self, op: Op, additive: bool) -> None:
        out = op.outputs[0]
        ndim = out.dim()
        reference: _Layout | None = None
        for tensor in op.inputs:
            layout = self.layout(tensor)
            if layout is None:
                continue
            aligned = _Layout(layout.dim - tensor.dim() + ndim, layout.segs)
            if reference is None:
                reference = aligned
                continue
            if aligned.dim != reference.dim:
                self.refuse(op, "combines channels that lie in different dimensions")
            self.merge(op, reference, aligned, additive)
        for tensor in op.inputs:
            if self.layout(tensor) is None:
                position = reference.dim - ndim + tensor.dim()
                if position >= 0 and tensor.shape[position] != 1:
                    self.refuse(op, "combines prunable channels with a tensor of fixed "
                                    "per-channel values")
        for out in op.outputs:
            self.set_layout(out, reference)

    def merge(self, op: Op, a: _Layout, b: _Layout, additive: bool) -> None:
        if [(s.channels, s.block, s.space is None) for s in a.segs] != \
                [(s.channels, s.block, s.space is None) for s in b.segs]:
            self.refuse(op, "combines channels whose groupings differ (e.g. a concatenation "
                            "with a single layer's output)")
        for x, y in zip(a.segs, b.segs):
            if x.space is not None:
                self.union(x.space, y.space, additive)

    def reshape(self, op: Op, source: torch.Tensor, layout: _Layout) -> None:
        out = op.outputs[0]
        before = math.prod(source.shape[:layout.dim])
        found = None
        for j in range(out.dim()):
            if math.prod(out.shape[:j]) != before:
                continue
            for end in range(layout.dim + 1, source.dim() + 1):
                if math.prod(source.shape[layout.dim:end]) == out.shape[j]:
                    found = (j, math.prod(source.shape[layout.dim + 1:end]))
                    break
            if found:
                break
        if found is None:
            self.refuse(op, f"reshapes {tuple(source.shape)} -> {tuple(out.shape)} splitting or "
                            f"reordering the channels (dimension {layout.dim})")
        j, factor = found
        segs = tuple(_Seg(s.space, s.channels, s.block * factor) for s in layout.segs)
        self.set_layout(out, _Layout(j, segs))

    def transpose(self, op: Op, source: torch.Tensor, layout: _Layout) -> None:
        ndim, d = source.dim(), layout.dim
        args = [a for a in op.args[1:]]
        name = op.name
        if name in ("transpose", "transpose_", "swapaxes", "swapdims", "t"):
            a, b = (0, 1) if name == "t" else (
                args[0] if args else op.kwargs.get("dim0"), args[1] if len(args) > 1
                else op.kwargs.get("dim1"))
            a, b = a % ndim, b % ndim
            new = b if d == a else a if d == b else d
        elif name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            dims = [x % ndim for x in (dims or op.kwargs.get("dims"))]
            new = dims.index(d)
        else:  # movedim
            src, dst = args[0], args[1]
            order = [i for i in range(ndim)]
            src = [src] if isinstance(src, int) else list(src)
            dst = [dst] if isinstance(dst, int) else list(dst)
            src, dst = [s % ndim for s in src], [t % ndim for t in dst]
            rest = [i for i in order if i not in src]
            result = [None] * ndim
            for s, t in zip(src, dst):
                result[t] = s
            fill = iter(rest)
            result = [next(fill) if r is None else r for r in result]
            new = result.index(d)
        self.set_layout(op.outputs[0], _Layout(new, layout.segs))

    def reduction(self, op: Op, source: torch.Tensor, layout: _Layout) -> None:
        ndim = source.dim()
        dim = op.args[1] if len(op.args) > 1 else op.kwargs.get("dim")
        if isinstance(dim, torch.Tensor):
            self.elementwise(op, additive=False)  # max(x, y), min(x, y)
            return
        if dim is None:
            self.refuse(op, "reduces over every dimension, channels included")
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [x % ndim for x in dims]
        if layout.dim in dims:
            self.refuse(op, "reduces over the channels (mixes them)")
        keep = op.args[2] if len(op.args) > 2 else op.kwargs.get("keepdim", False)
        new = layout.dim if keep else layout.dim - sum(1 for x in dims if x < layout.dim)
        for out in op.outputs:
            self.set_layout(out, _Layout(new, layout.segs))

    def cat(self, op: Op) -> None:
        tensors = list(op.args[0]) if op.args else list(op.kwargs.get("tensors"))
        dim = op.args[1] if len(op.args) > 1 else op.kwargs.get("dim", 0)
        ndim = tensors[0].dim()
        dim %= ndim
        layouts = [self.layout(t) for t in tensors]
        dims = {layout.dim for layout in layouts if layout is not None}
        if len(dims) != 1:
            self.refuse(op, "concatenates tensors whose channels lie in different dimensions")
        channel_dim = dims.pop()
        if dim == channel_dim:
            segs = []
            for tensor, layout in zip(tensors, layouts):
                segs += layout.segs if layout is not None else [_Seg(None, int(tensor.shape[dim]))]
            self.set_layout(op.outputs[0], _Layout(channel_dim, tuple(segs)))
            return
        if any(layout is None for layout in layouts):
            self.refuse(op, "concatenates prunable channels with fixed ones along another "
                            "dimension")
        for layout in layouts[1:]:
            self.merge(op, layouts[0], layout, additive=False)
        self.set_layout(op.outputs[0], layouts[0])

    def getitem(self, op: Op, source: torch.Tensor, layout: _Layout) -> None:
        index = op.args[1]
        index = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, (torch.Tensor, list)) for i in index):
            self.refuse(op, "advanced indexing of a tensor holding prunable channels")
        explicit = sum(1 for i in index if i is not None and i is not Ellipsis)
        expanded: list[Any] = []
        for item in index:
            if item is Ellipsis:
                expanded += [slice(None)] * (source.dim() - explicit)
            else:
                expanded.append(item)
        position, new = 0, 0
        result = None
        for item in expanded:
            if item is None:
                new += 1
                continue
            if position == layout.dim:
                if not (isinstance(item, slice) and item == slice(None)):
                    self.refuse(op, "indexes the channels")
                result = new
            if isinstance(item, slice):
                new += 1
            position += 1
        if result is None:  # channel dimension after the indexed ones
            result = new + (layout.dim - position)
        self.set_layout(op.outputs[0], _Layout(result, layout.segs))

    # --- the groups -----------------------------------------------------------------------
    def groups(self) -> list[ChannelGroup]:
        roots = sorted({self.find(i) for i in range(len(self.spaces))},
                       key=lambda r: min(p[0] for p in self.spaces[r].producers))
        first_producer = {}
        for root in roots:
            space = self.spaces[root]
            if not space.pinned:
                first_producer[root] = min(space.producers, key=lambda p: p[0])[1]

        def segment(seg: _Seg) -> Segment:
            if seg.space is None:
                return Segment(None, seg.channels, seg.block)
            return Segment(first_producer.get(self.find(seg.space)), seg.channels, seg.block)

        groups, names = [], set()
        for root in roots:
            space = self.spaces[root]
            if space.pinned:
                continue
            producers = sorted(space.producers, key=lambda p: p[0])
            consumers = sorted(space.consumers, key=lambda c: c[0])
            modules = [p[1] for p in producers]
            kind = "stream" if space.merged else "inner"
            # a stream is named after its layers' common prefix; the layer opening it (a stem,
            # a shortcut) often lies outside the blocks adding into it, so it may be left out
            prefix = _common_prefix(modules) or _common_prefix(modules[1:]) or modules[0]
            name = modules[0] if kind == "inner" else f"{prefix}.stream"
            base, count = name, 1
            while name in names:
                count += 1
                name = f"{base}#{count}"
            names.add(name)
            groups.append(ChannelGroup(
                name, kind, space.channels,
                tuple(Producer(module, norm) for _, module, norm in producers),
                tuple(Consumer(module, block, tuple(segment(s) for s in before))
                      for _, module, block, before in consumers)))
        return groups


def _common_prefix(names: Sequence[str]) -> str:
    if not names:
        return ""
    parts = [name.split(".") for name in names]
    common = []
    for pieces in zip(*parts):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    if len(common) == min(len(p) for p in parts):  # a name is the prefix itself
        common = common[:-1]
    return ".".join(common)


def example_frames(length: int) -> torch.Tensor:
    """The input the analysis runs on: zeros (2, 2, length), I/Q frames of the datasets."""
    return torch.zeros(2, 2, int(length))


def traced_channel_groups(model: nn.Module, example_input: torch.Tensor) -> list[ChannelGroup]:
    """The channel groups of ``model`` found from its dataflow on ``example_input``.

    Same structure and conventions as fcos.prune.groups.channel_groups (depth order of the
    first producers; an inner group is named after its producer, a stream after the longest
    common module prefix of its producers plus ".stream"). Raises ConfigError, naming the op
    or layer, for anything the analysis cannot follow (see the module docstring).
    """
    first = next(model.parameters(), None)
    if first is not None:
        example_input = example_input.to(device=first.device, dtype=first.dtype)
    recording = record(model, example_input)
    analysis = _Analysis(model, recording)
    analysis.run()
    return analysis.groups()
