"""Which channels are coupled: the channel groups of each model, written from its wiring.

A :class:`ChannelGroup` is a set of C channels that any channel-reducing pruner must partition
once, for every tensor that holds them:

- ``producers`` write the channels: a conv's or linear layer's output rows (weight rows and
  bias), each with the BatchNorm that normalises them right after, or a channel map's rows (the
  ``mapping`` buffer of ResNet56's pooled shortcut, see fcos.models.resnet56.PoolPadShortcut);
- ``consumers`` read them: a conv's input channels, a linear layer's input features (``block``
  consecutive features per channel when a (C, T) map is flattened channel-major into it, as in
  CNN1D's ``dense``), or a channel map's columns.

``kind`` is ``"stream"`` when several producers add into the channels (a residual stream: every
tensor on it must share one partition) and ``"inner"`` when one layer writes them (inside a
block, or between blocks without a residual add, such as SigNet50's stem output). The
classifier's outputs and the network input are never a group.

Groups per model (names are what the ``skip`` option of channel fusion takes):

- ``cnn1d``: per stack i, ``stacks.i.conv2`` and ``stacks.i.conv4`` (inner: conv2 -> conv3,
  conv4 -> conv5) and ``stacks.i.stream`` (conv1, conv3, conv5 add up; read by conv2, conv4 and
  the next stack's conv1, or by ``dense`` in L/64-step blocks after the last stack); ``dense``
  (its 128 hidden units, read by the classifier).
- ``resnet56``: per block, ``layerS.B.conv1`` (inner: conv1/bn1 -> conv2); per stage,
  ``layerS.stream``: stage 1 is written by the stem and every block's conv2/bn2; stages 2 and 3
  by the opening block's shortcut map rows and every conv2/bn2. A stream is read by the blocks'
  conv1, by the next stage's opening conv1 and shortcut map columns, and finally by ``fc``.
- ``signet50``: ``stem`` (stem conv/bn -> layer1.0's conv1 and projection); per bottleneck,
  ``layerS.B.conv1`` and ``layerS.B.conv2`` (inner); per stage, ``layerS.stream`` (projection
  conv/BN and every conv3/bn3; read by the blocks' conv1, the next stage's conv1 and projection,
  and finally the 1x1-conv head ``fc``).

A block replaced by a parameter-free module (a removed block: identity or a pooling) passes its
channels through, so the stream continues across it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..models.cnn1d import ResidualStack
from ..models.resnet56 import BasicBlock
from ..models.signet50 import Bottleneck


@dataclass(frozen=True)
class Producer:
    """A layer writing the group's channels as its output rows.

    ``module``: dotted name of a Conv1d/2d, Linear or a channel map (a module with a 2-D
    ``mapping`` buffer (C_out, C_in)); ``norm``: dotted name of the BatchNorm right after it on
    the same channels, or None.
    """

    module: str
    norm: str | None = None


@dataclass(frozen=True)
class Segment:
    """Input columns of a consumer that lie before a group's slice of them (a concatenation).

    Written by the group whose first producer is ``source`` (its *current* width counts, so
    the offset follows that group's pruning), or ``channels`` fixed channels (the network
    input, a classifier's outputs) when ``source`` is None; ``block`` features per channel.
    """

    source: str | None
    channels: int
    block: int = 1


@dataclass(frozen=True)
class Consumer:
    """A layer reading the group's channels as its input columns.

    ``module``: dotted name of a Conv1d/2d (groups=1), Linear, LSTM/GRU/RNN (the first layer's
    input weights) or channel map; ``block``: input features per channel, laid out
    channel-major (1 except for a Linear reading a flattened (C, T) map, where it is T);
    ``preceding``: the :class:`Segment` s before the group's slice when the layer reads a
    concatenation (empty: the slice starts at column 0).
    """

    module: str
    block: int = 1
    preceding: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class ChannelGroup:
    """``channels`` coupled channels: one partition for all ``producers`` and ``consumers``."""

    name: str
    kind: str
    channels: int
    producers: tuple[Producer, ...]
    consumers: tuple[Consumer, ...]


class _OpenGroup:
    """A group under construction: producers so far, consumers so far."""

    def __init__(self, name: str):
        self.name = name
        self.producers: list[Producer] = []
        self.consumers: list[Consumer] = []

    def close(self, model: nn.Module) -> ChannelGroup:
        first = model.get_submodule(self.producers[0].module)
        channels = first.mapping.shape[0] if hasattr(first, "mapping") else first.weight.shape[0]
        kind = "stream" if len(self.producers) > 1 else "inner"
        return ChannelGroup(self.name, kind, int(channels), tuple(self.producers),
                            tuple(self.consumers))


def _is_pass_through(module: nn.Module) -> bool:
    # A removed block's replacement (identity, pooling) has no parameters and keeps channels.
    return next(module.parameters(), None) is None


def _blocks(model: nn.Module, stages: list[str], block_type: type) -> list[tuple[str, nn.Module]]:
    """(dotted name, block) of every kept block in depth order; replaced blocks are skipped."""
    found = []
    for stage in stages:
        for index, block in enumerate(model.get_submodule(stage)):
            name = f"{stage}.{index}"
            if isinstance(block, block_type):
                found.append((name, block))
            elif not _is_pass_through(block):
                raise ConfigError(f"channel groups: {name} is a {type(block).__name__}, expected a "
                                  f"{block_type.__name__} or a parameter-free replacement")
    return found


def _cnn1d_groups(model: nn.Module) -> list[ChannelGroup]:
    groups: list[ChannelGroup] = []
    stream: _OpenGroup | None = None  # None: the network input (2 fixed channels)
    for name, _ in _blocks(model, ["stacks"], ResidualStack):
        if stream is not None:
            stream.consumers.append(Consumer(f"{name}.conv1"))
            groups.append(stream.close(model))
        for inner, reader in (("conv2", "conv3"), ("conv4", "conv5")):
            group = _OpenGroup(f"{name}.{inner}")
            group.producers.append(Producer(f"{name}.{inner}"))
            group.consumers.append(Consumer(f"{name}.{reader}"))
            groups.append(group.close(model))
        stream = _OpenGroup(f"{name}.stream")
        stream.producers += [Producer(f"{name}.{conv}") for conv in ("conv1", "conv3", "conv5")]
        stream.consumers += [Consumer(f"{name}.{conv}") for conv in ("conv2", "conv4")]
    if stream is not None:
        channels = model.get_submodule(stream.producers[0].module).weight.shape[0]
        steps, remainder = divmod(model.dense.in_features, channels)
        if remainder:
            raise ConfigError(f"channel groups: dense has {model.dense.in_features} inputs, not a "
                              f"multiple of the last stack's {channels} channels")
        stream.consumers.append(Consumer("dense", block=steps))
        groups.append(stream.close(model))
    hidden = _OpenGroup("dense")
    hidden.producers.append(Producer("dense"))
    hidden.consumers.append(Consumer("classifier"))
    groups.append(hidden.close(model))
    return groups


def _residual_groups(model: nn.Module, stages: list[str], block_type: type, *, first_stream: str,
                     shortcut: str, shortcut_norm: str | None, inner: tuple[tuple[str, str], ...],
                     last: tuple[str, str], head: str) -> list[ChannelGroup]:
    """The groups of a residual network: one stream per stage, opened by the stem (named
    ``first_stream``) or by a block's ``shortcut`` projection (with its ``shortcut_norm``),
    written by every block's ``last`` (conv, norm) pair and read by each block's conv1, the
    shortcut and finally ``head``; per block, one inner group per (producer, reader) in
    ``inner`` (the producer's norm is ``bn`` + its digit)."""
    groups: list[ChannelGroup] = []
    stream = _OpenGroup(first_stream)
    stream.producers.append(Producer("stem.conv", "stem.bn"))
    for name, block in _blocks(model, stages, block_type):
        stage = name.split(".")[0]
        stream.consumers.append(Consumer(f"{name}.conv1"))
        if block.downsample is not None:
            stream.consumers.append(Consumer(f"{name}.{shortcut}"))
            groups.append(stream.close(model))
            stream = _OpenGroup(f"{stage}.stream")
            norm = f"{name}.{shortcut_norm}" if shortcut_norm else None
            stream.producers.append(Producer(f"{name}.{shortcut}", norm))
        for producer, reader in inner:
            group = _OpenGroup(f"{name}.{producer}")
            group.producers.append(Producer(f"{name}.{producer}", f"{name}.bn{producer[-1]}"))
            group.consumers.append(Consumer(f"{name}.{reader}"))
            groups.append(group.close(model))
        stream.producers.append(Producer(f"{name}.{last[0]}", f"{name}.{last[1]}"))
    stream.consumers.append(Consumer(head))
    groups.append(stream.close(model))
    return groups


def _resnet56_groups(model: nn.Module) -> list[ChannelGroup]:
    for name, block in _blocks(model, ["layer1", "layer2", "layer3"], BasicBlock):
        if block.downsample is not None and getattr(block.downsample, "mapping", None) is None:
            raise ConfigError(f"channel groups: {name}.downsample has no channel map")
    return _residual_groups(model, ["layer1", "layer2", "layer3"], BasicBlock,
                            first_stream="layer1.stream", shortcut="downsample", shortcut_norm=None,
                            inner=(("conv1", "conv2"),), last=("conv2", "bn2"), head="fc")


def _signet50_groups(model: nn.Module) -> list[ChannelGroup]:
    return _residual_groups(model, ["layer1", "layer2", "layer3", "layer4"], Bottleneck,
                            first_stream="stem", shortcut="downsample.0",
                            shortcut_norm="downsample.1",
                            inner=(("conv1", "conv2"), ("conv2", "conv3")), last=("conv3", "bn3"),
                            head="fc")


_BUILDERS = {"cnn1d": _cnn1d_groups, "resnet56": _resnet56_groups, "signet50": _signet50_groups}


def channel_groups(model: nn.Module, model_name: str | None) -> list[ChannelGroup]:
    """The channel groups of ``model`` (built as ``model_name``), in depth order.

    Channel counts are read from the model as it is, so an already narrowed model works too.
    ``model_name`` None (a user's network, not from the registry): the groups are found from
    its dataflow on I/Q frames of ``model.length`` samples (fcos.prune.dependency.channels;
    the same set of groups as the descriptions above for the built-in models, in another order). Raises ConfigError
    for a model name without a wiring description, or for a network the analysis refuses.
    """
    if model_name is None:
        from .dependency.channels import example_frames, traced_channel_groups

        length = getattr(model, "length", None)
        if not isinstance(length, int):
            raise ConfigError("channel groups: a model without a registry name needs its input "
                              "length (model.length, set by fcos.prune.prune_model)")
        return traced_channel_groups(model, example_frames(length))
    if model_name not in _BUILDERS:
        raise ConfigError(f"channel groups: no wiring description for model {model_name!r}; "
                          f"expected one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[model_name](model)
