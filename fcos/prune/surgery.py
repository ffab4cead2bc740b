"""Shared model-editing helpers, written once for every pruner.

A pruned model is the base builder's model plus an ``architecture`` record:

``{"removed_blocks": {dotted_name: replacement}, "resized": true}``

* ``removed_blocks`` maps a block's dotted name to what replaces it: ``"identity"``, or
  ``"stack-projection1d"`` / ``"stack-projection2d"`` (:class:`StackProjection`: what a removed
  CNN1D residual stack leaves behind, its 1x1 entry conv and its pooling; see fcos.prune.blocks).
* ``resized`` means layers narrower than the base model's are to be re-created from the shapes
  found in the state dict (channel pruning and channel fusion only change widths, so the shapes
  are a complete description of the new widths). Besides conv/linear/BN layers, any module with a
  ``resize_like(shapes)`` method is told the shapes of its own state-dict entries and adapts
  itself (ResNet56's shortcut channel map does).

Channel-reducing pruners edit a model with one primitive, :func:`reduce_channels`: it replaces
the C channels of one coupled channel group (fcos.prune.groups) by K new ones, either fusing each
cluster of channels into one ("fuse", FCOS stage 1) or keeping one representative per cluster
("select", channel-pruning baselines, where every kept channel is its own cluster).
"""

from __future__ import annotations

import functools
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.cnn1d import WIDTH as CNN1D_WIDTH
from .groups import ChannelGroup


class StackProjection(nn.Module):
    """What a removed CNN1D residual stack leaves: its 1x1 entry conv, ReLU, max-pool by 2.

    This is exactly the stack's output when its two residual units add zero, so it keeps the
    stack's change of width and its halving of the length (the flattened size reaching the
    dense layer stays the same). 1-D: (B, C_in, n) -> (B, C_out, n // 2); ``planar`` (the
    first, 2-D stack): (B, C_in, 2, n) -> (B, C_out, n // 2), the 2x2 pool collapsing the I/Q
    height. Built at the base widths (1 or 32 in, 32 out); the removing pruner copies the
    stack's own ``conv1`` into ``conv``, and a ``resized`` record restores other widths.
    """

    def __init__(self, planar: bool = False):
        super().__init__()
        self.planar = planar
        conv = nn.Conv2d if planar else nn.Conv1d
        self.conv = conv(1 if planar else CNN1D_WIDTH, CNN1D_WIDTH, kernel_size=1, bias=False)
        self.pool = (nn.MaxPool2d if planar else nn.MaxPool1d)(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return x.squeeze(2) if self.planar else x

    def extra_repr(self) -> str:
        return f"planar={self.planar}"


REPLACEMENTS = {
    "identity": nn.Identity,
    "stack-projection1d": StackProjection,
    "stack-projection2d": functools.partial(StackProjection, planar=True),
}


def get_submodule_parent(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """Return (parent module, attribute name) of the submodule at ``dotted``."""
    parent_name, _, child = dotted.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        parent.get_submodule(child)
    except AttributeError:
        raise CheckpointError(f"architecture names a module {dotted!r} that the model does not have") from None
    return parent, child


def replace_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    """Put ``new`` in place of the submodule at ``dotted`` (works inside nn.Sequential too)."""
    parent, child = get_submodule_parent(model, dotted)
    setattr(parent, child, new)


def resized_like(module: nn.Module, weight_shape: torch.Size) -> nn.Module:
    """A fresh layer of the same kind and hyper-parameters as ``module`` with new channel counts."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        out_ch, in_per_group = weight_shape[0], weight_shape[1]
        groups = module.groups
        if is_depthwise(module):  # one filter per channel: as many groups as channels
            groups = out_ch
        return type(module)(in_per_group * groups, out_ch, module.kernel_size, stride=module.stride,
                            padding=module.padding, dilation=module.dilation, groups=groups,
                            bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, nn.Linear):
        return nn.Linear(weight_shape[1], weight_shape[0], bias=module.bias is not None)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(module)(weight_shape[0], eps=module.eps, momentum=module.momentum,
                            affine=module.affine, track_running_stats=module.track_running_stats)
    raise CheckpointError(f"cannot resize a {type(module).__name__}")


def is_depthwise(module: nn.Module) -> bool:
    """A depthwise conv: groups = input channels = output channels (> 1)."""
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def resized_rnn(module: nn.RNNBase, input_size: int) -> nn.RNNBase:
    """A fresh LSTM/GRU/RNN like ``module`` reading ``input_size`` features (same device/dtype)."""
    kwargs = dict(hidden_size=module.hidden_size, num_layers=module.num_layers, bias=module.bias,
                  batch_first=module.batch_first, dropout=module.dropout,
                  bidirectional=module.bidirectional)
    if isinstance(module, nn.LSTM):
        kwargs["proj_size"] = module.proj_size
    if type(module) is nn.RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    first = next(module.parameters())
    with torch.random.fork_rng(devices=[]):  # every weight is overwritten by the caller
        new = type(module)(input_size, **kwargs).to(device=first.device, dtype=first.dtype)
    return new.train(module.training)


def resize_to_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Re-create every conv/linear/BN layer whose weight shape differs from ``state_dict``.

    A module with a ``resize_like(shapes)`` method instead gets ``{local key: shape}`` of its own
    (non-nested) state-dict entries and resizes itself.
    """
    for name, module in list(model.named_modules()):
        if callable(getattr(module, "resize_like", None)):
            prefix = f"{name}." if name else ""
            module.resize_like({key[len(prefix):]: value.shape for key, value in state_dict.items()
                                if key.startswith(prefix) and "." not in key[len(prefix):]})
            continue
        if isinstance(module, nn.RNNBase):
            key = f"{name}.weight_ih_l0" if name else "weight_ih_l0"
            if key in state_dict and state_dict[key].shape[1] != module.input_size:
                replace_module(model, name, resized_rnn(module, int(state_dict[key].shape[1])))
            continue
        if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        key = f"{name}.weight" if name else "weight"
        if key not in state_dict:
            key = f"{name}.running_mean"
            if key not in state_dict:
                continue
        shape = state_dict[key].shape
        current = module.weight.shape if getattr(module, "weight", None) is not None else module.running_mean.shape
        if tuple(shape) != tuple(current):
            replace_module(model, name, resized_like(module, shape))
    return model


def apply_architecture(model: nn.Module, architecture: Mapping, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Replay an architecture record on a freshly built base model (see module docstring)."""
    unknown = set(architecture) - {"removed_blocks", "resized", "history"}
    if unknown:
        raise CheckpointError(f"architecture record has unknown key(s) {sorted(unknown)}")
    for dotted, kind in (architecture.get("removed_blocks") or {}).items():
        if kind not in REPLACEMENTS:
            raise CheckpointError(f"architecture: block {dotted!r} replaced by unknown {kind!r}; "
                                  f"expected one of {sorted(REPLACEMENTS)}")
        replace_module(model, dotted, REPLACEMENTS[kind]())
    if architecture.get("resized"):
        resize_to_state_dict(model, state_dict)
    return model


# --- reducing the channels of one channel group ------------------------------------------------

CHANNEL_MODES = ("fuse", "select")


def reduce_channels(model: nn.Module, group: ChannelGroup, assign, mode: str = "fuse") -> nn.Module:
    """Replace the ``group.channels`` channels of ``group`` by K new ones, in place.

    Args:
        model: the model the group was described from (fcos.prune.groups.channel_groups); layers
            may already have been narrowed on their other axis by another group.
        group: the coupled channels (producers' output rows, consumers' input columns).
        assign: integer array (C,): ``assign[c] = k`` sends channel c to new channel k, for
            k in 0..K-1, each used at least once; new channels are laid out in k order. In
            "select" mode ``-1`` drops a channel.
        mode: "fuse": new channel k is the fusion of its members (exact when they are identical):
            producers' rows (weight, bias, channel-map rows) are averaged, a following BatchNorm
            is merged so that the eval-mode affine map is the mean of the members' (see
            :func:`_fuse_normalised_rows`), consumers' input slices are summed. "select": new
            channel k is the lowest-index member, copied (rows, BN entries, consumer slice); the
            other members are dropped (what channel pruning does).

    Conv/linear/BN layers are replaced by fresh ones of the new widths (same hyper-parameters,
    device, dtype and requires_grad); channel maps get a new ``mapping`` buffer. Returns
    ``model``. Raises ValueError if ``assign`` or the layer shapes do not fit the group.
    """
    if mode not in CHANNEL_MODES:
        raise ValueError(f"reduce_channels: mode must be one of {CHANNEL_MODES}, got {mode!r}")
    assign = torch.as_tensor(assign)
    members, clusters = _membership(assign, group.channels, mode)
    # offsets of concatenated slices, read before anything is narrowed; the highest slice of a
    # layer goes first so that narrowing it does not move the lower ones
    offsets = [column_offset(model, consumer) for consumer in group.consumers]
    for producer in group.producers:
        _reduce_producer(model, producer.module, producer.norm, members, clusters, mode)
    for offset, consumer in sorted(zip(offsets, group.consumers), key=lambda item: -item[0]):
        _reduce_consumer(model, consumer.module, consumer.block, members, group.channels, offset)
    return model


def current_width(model: nn.Module, producer: str) -> int:
    """Output channels a producer writes now (rows of its weight or channel map)."""
    module = model.get_submodule(producer)
    mapping = getattr(module, "mapping", None)
    return int(mapping.shape[0] if mapping is not None else module.weight.shape[0])


def column_offset(model: nn.Module, consumer) -> int:
    """First input column (feature) of ``consumer``'s slice: the widths now of the segments
    before it (fcos.prune.groups.Segment) times their blocks; 0 without a concatenation."""
    return sum((segment.channels if segment.source is None
                else current_width(model, segment.source)) * segment.block
               for segment in consumer.preceding)


def _membership(assign: torch.Tensor, channels: int, mode: str) -> tuple[torch.Tensor, int]:
    """(members (K, C) float64, K). fuse: 1/|k| at each member of k; select: 1 at its lowest."""
    if assign.dim() != 1 or assign.numel() != channels or assign.is_floating_point():
        raise ValueError(f"reduce_channels: assign must be an integer array of length {channels}, "
                         f"got {assign.dtype} {tuple(assign.shape)}")
    assign = assign.long()
    lowest = -1 if mode == "select" else 0
    if assign.numel() == 0 or assign.min() < lowest or assign.max() < 0:
        raise ValueError(f"reduce_channels: assign values must be cluster ids >= {lowest} "
                         f"with at least one cluster")
    clusters = int(assign.max()) + 1
    kept = assign >= 0
    sizes = torch.bincount(assign[kept], minlength=clusters)
    if (sizes == 0).any():
        raise ValueError(f"reduce_channels: cluster ids must be 0..K-1 without gaps, "
                         f"missing {torch.nonzero(sizes == 0).flatten().tolist()}")
    members = torch.zeros(clusters, channels, dtype=torch.float64)
    index = torch.nonzero(kept).flatten()
    if mode == "fuse":
        members[assign[index], index] = 1.0 / sizes[assign[index]].double()
    else:
        first = torch.full((clusters,), channels, dtype=torch.long)
        first.scatter_reduce_(0, assign[index], index, reduce="amin")
        members[torch.arange(clusters), first] = 1.0
    return members, clusters


def _fresh_like(module: nn.Module, weight_shape: tuple[int, ...],
                tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A new layer like ``module`` with ``weight_shape`` holding ``tensors`` (name -> value)."""
    with torch.device("meta"):  # no initialisation work: every tensor is set below
        new = resized_like(module, torch.Size(weight_shape))
    for name, old in list(module.named_parameters(recurse=False)):
        # standard strides: a permuted einsum result can pass as contiguous (size-1 dims) and
        # still steer convolutions to another kernel than a freshly loaded copy would use
        value = tensors[name].to(dtype=old.dtype, device=old.device).clone(
            memory_format=torch.contiguous_format)
        setattr(new, name, nn.Parameter(value, requires_grad=old.requires_grad))
    for name, old in list(module.named_buffers(recurse=False)):
        if old is not None:
            value = tensors.get(name, old).to(dtype=old.dtype, device=old.device).clone()
            setattr(new, name, value)
    new.train(module.training)
    return new


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().double().reshape(tensor.shape[0], -1)


def _reduce_producer(model: nn.Module, name: str, norm_name: str | None, members: torch.Tensor,
                     clusters: int, mode: str) -> None:
    module = model.get_submodule(name)
    if getattr(module, "mapping", None) is not None:
        _check_width(name, "rows", module.mapping.shape[0], members.shape[1])
        mapping = members.to(module.mapping.device) @ module.mapping.double()
        module.mapping = mapping.to(module.mapping.dtype)
        return
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        raise ValueError(f"reduce_channels: producer {name} is a {type(module).__name__}")
    _check_width(name, "output channels", module.weight.shape[0], members.shape[1])
    shape = (clusters, *module.weight.shape[1:])
    members = members.to(module.weight.device)
    weight, bias = _rows(module.weight), None if module.bias is None else _rows(module.bias)[:, 0]
    norm = None if norm_name is None else model.get_submodule(norm_name)
    if norm is None:
        new_weight = members @ weight
        new_bias = None if bias is None else members @ bias
    else:
        if not (isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) and norm.affine
                and norm.track_running_stats):
            raise ValueError(f"reduce_channels: {norm_name} must be an affine BatchNorm with "
                             f"running statistics")
        _check_width(norm_name, "channels", norm.num_features, members.shape[1])
        stats = {key: getattr(norm, key).detach().double()
                 for key in ("weight", "bias", "running_mean", "running_var")}
        if mode == "fuse":
            new_weight, new_bias, new_stats = _fuse_normalised_rows(weight, bias, stats, norm.eps,
                                                                    members)
        else:
            new_weight = members @ weight
            new_bias = None if bias is None else members @ bias
            new_stats = {key: members @ value for key, value in stats.items()}
        replace_module(model, norm_name, _fresh_like(norm, (clusters,), new_stats))
    tensors = {"weight": new_weight.reshape(shape)}
    if new_bias is not None:
        tensors["bias"] = new_bias
    replace_module(model, name, _fresh_like(module, shape, tensors))


def _fuse_normalised_rows(weight: torch.Tensor, bias: torch.Tensor | None,
                          stats: dict[str, torch.Tensor], eps: float,
                          members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Fuse conv rows followed by a BatchNorm so that the eval-mode map is the members' mean.

    Per channel c, conv (row W_c, bias b_c, 0 without bias) then BN (gamma, beta, running mean
    mu, running var v) computes, in eval mode, ``s_c (W_c x + b_c - mu_c) + beta_c`` with
    ``s_c = gamma_c / sigma_c``, ``sigma_c = sqrt(v_c + eps)``: the folded affine map
    ``F_c x + g_c``, F_c = s_c W_c, g_c = beta_c + s_c (b_c - mu_c). A fused channel k must compute
    the mean ``F = mean F_c``, ``g = mean g_c`` over its members. It is written back as a conv and
    a BN close to the members', so that fine-tuning in train mode (batch statistics) starts near
    the original too:

    - signs: the pair (W_c, gamma_c) and (-W_c, -gamma_c) (with b_c, mu_c negated) is the same
      function in both modes; members whose gamma sign differs from the cluster's first member
      are flipped first, so that gamma' below cannot cancel out;
    - gamma' = mean gamma_c, beta' = mean beta_c, sigma' = mean sigma_c (v' = sigma'^2 - eps),
      b' = mean b_c; then with s' = gamma' / sigma':  W' = F / s',  mu' = b' + (beta' - g) / s',
      so that s' (W' x + b' - mu') + beta' = F x + g exactly. If all gammas of a cluster are 0,
      W' and mu' are the plain means (the channel is the constant beta').

    Identical members give back their own values (up to rounding); singleton clusters are
    copied verbatim.
    Shapes: weight (C, D), bias (C,) or None, stats (C,) each, members (K, C) with rows summing
    to 1. Returns (weight (K, D), bias (K,) or None, stats dict of (K,) tensors).
    """
    gamma, beta, mu, var = (stats[k] for k in ("weight", "bias", "running_mean", "running_var"))
    sigma = torch.sqrt(var + eps)
    is_member = members > 0
    first = torch.argmax(is_member.double(), dim=1)  # lowest-index member of each cluster
    reference = torch.where(gamma[first] < 0, -1.0, 1.0).double()  # (K,)
    cluster_of = torch.argmax(is_member.double(), dim=0)  # (C,)
    flip = torch.where(gamma * reference[cluster_of] < 0, -1.0, 1.0).double()
    zero_bias = torch.zeros_like(gamma)
    b = zero_bias if bias is None else bias
    folded = (gamma / sigma)[:, None] * weight  # (C, D), sign-invariant
    shift = beta + gamma / sigma * (b - mu)  # (C,), sign-invariant
    new_folded, new_shift = members @ folded, members @ shift
    new_gamma = members @ (flip * gamma)
    new_beta = members @ beta
    new_sigma = members @ sigma
    new_b = members @ (flip * b)
    scale = new_gamma / new_sigma
    dead = scale == 0
    safe = torch.where(dead, 1.0, scale)
    new_weight = torch.where(dead[:, None], members @ (flip[:, None] * weight),
                             new_folded / safe[:, None])
    new_mu = torch.where(dead, members @ (flip * mu), new_b + (new_beta - new_shift) / safe)
    new_var = torch.clamp(new_sigma ** 2 - eps, min=0.0)
    new_stats = {"weight": new_gamma, "bias": new_beta, "running_mean": new_mu,
                 "running_var": new_var}
    # singletons: copy verbatim (the formula would only add rounding, or flip nothing)
    single = is_member.sum(dim=1) == 1
    source = first[single]
    new_weight[single] = weight[source]
    for key, value in stats.items():
        new_stats[key][single] = value[source]
    new_b[single] = b[source]
    return new_weight, (None if bias is None else new_b), new_stats


def _sliced_columns(name: str, weight: torch.Tensor, offset: int, channels: int, block: int,
                    summing: torch.Tensor) -> torch.Tensor:
    """``weight`` (O, F, *kernel) with columns [offset, offset + channels x block) replaced by
    their sums over each new channel's members: (O, F - (C - K) x block, *kernel), float64."""
    width = channels * block
    if offset + width > weight.shape[1]:
        raise ValueError(f"reduce_channels: {name} has {weight.shape[1]} input columns, the "
                         f"group's slice needs [{offset}, {offset + width})")
    weight = weight.detach().double()
    inner = weight[:, offset:offset + width]
    inner = inner.reshape(weight.shape[0], channels, block, *weight.shape[2:])
    summed = torch.einsum("ocb...,kc->okb...", inner, summing.to(weight.device))
    summed = summed.reshape(weight.shape[0], -1, *weight.shape[2:])
    return torch.cat([weight[:, :offset], summed, weight[:, offset + width:]], dim=1)


def _reduce_rnn_inputs(model: nn.Module, name: str, module: nn.RNNBase, offset: int,
                       channels: int, block: int, summing: torch.Tensor) -> None:
    state = {key: value.detach() for key, value in module.state_dict().items()}
    for key in ("weight_ih_l0", "weight_ih_l0_reverse"):
        if key in state:
            state[key] = _sliced_columns(name, state[key], offset, channels, block,
                                         summing).to(state[key].dtype)
    new = resized_rnn(module, int(state["weight_ih_l0"].shape[1]))
    new.load_state_dict(state)
    for key, parameter in new.named_parameters():
        parameter.requires_grad_(getattr(module, key).requires_grad)
    replace_module(model, name, new)


def _reduce_consumer(model: nn.Module, name: str, block: int, members: torch.Tensor,
                     channels: int, offset: int = 0) -> None:
    module = model.get_submodule(name)
    summing = (members > 0).double()  # (K, C): 1 at each member (select: at the kept one)
    if getattr(module, "mapping", None) is not None:
        _check_width(name, "columns", module.mapping.shape[1], channels)
        mapping = module.mapping.double() @ summing.T.to(module.mapping.device)
        module.mapping = mapping.to(module.mapping.dtype)
        return
    if isinstance(module, nn.RNNBase):
        _reduce_rnn_inputs(model, name, module, offset, channels, block, summing)
        return
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.groups != 1:
            raise ValueError(f"reduce_channels: grouped conv {name} is not supported")
        new_weight = _sliced_columns(name, module.weight, offset, channels, block, summing)
    elif isinstance(module, nn.Linear):
        new_weight = _sliced_columns(name, module.weight, offset, channels, block, summing)
    else:
        raise ValueError(f"reduce_channels: consumer {name} is a {type(module).__name__}")
    tensors = {"weight": new_weight}
    if module.bias is not None:
        tensors["bias"] = module.bias.detach()
    replace_module(model, name, _fresh_like(module, tuple(new_weight.shape), tensors))


def _check_width(name: str, what: str, actual: int, expected: int) -> None:
    if actual != expected:
        raise ValueError(f"reduce_channels: {name} has {actual} {what}, the group has {expected}")
