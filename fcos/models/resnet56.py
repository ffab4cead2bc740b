"""ResNet56 for I/Q signals: the authors' CIFAR-style 2-D ResNet on a (2, L) "image".

Architecture (the authors' ``ResNet_signal(depth=56)`` in yaolu-zjut/PSR, model_signal/resnet.py):

- input (B, 2, L) is viewed as (B, 1, 2, L): one plane, height 2 (I and Q), width L;
- stem: 3x3 conv 1->16 (padding 1, no bias) + BN + ReLU -> (B, 16, 2, L);
- three stages of 9 basic blocks (3x3 conv-BN-ReLU-3x3 conv-BN, add shortcut, ReLU), widths
  16/32/64, strides 1/2/2. Every conv uses padding 1, so a stride-2 conv maps height 2 -> 1 and
  width L -> ceil(L/2): stage outputs are (B, 16, 2, L), (B, 32, 1, ceil(L/2)),
  (B, 64, 1, ceil(L/4));
- head: global average pool -> (B, 64) -> Linear(64, num_classes).

The downsampling shortcut of a stage-opening block is parameter-free, as in the authors' code: the
block input is globally average-pooled to (B, C_in, 1, 1), zero-padded along channels to the
block's output width and broadcast-added to the (B, C_out, H', W') residual branch. So the
shortcut carries only the per-channel mean of the previous stage, not a strided sub-sample as in
the usual CIFAR "option A". The output width is read from the residual branch at run time, so a
block whose convs were replaced by narrower ones still works.

The zero-padding is written as a fixed (non-trainable) channel map S (C_out, C_in), a buffer
initialised to the zero-pad identity, shortcut(x) = S @ avgpool(x): numerically identical to
padding, but channel fusion (fcos.prune.fusion) can then give each stage's residual stream its
own channel partition and stay exact, by editing S like a weight (rows = the new stage's
channels, columns = the previous stage's). See :class:`PoolPadShortcut`.

One deliberate difference: the authors build the padded shortcut from ``x.data`` (legacy
``Variable`` code), which cuts the gradient through that shortcut. That looks accidental; by
default gradients flow here, and ``detach_shortcut=True`` reproduces the authors' behaviour.

Weights use PyTorch's default initialisation, as in the authors' code (their explicit
He-normal init is commented out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

#: Shortest accepted input: each of the two stride-2 stages must see at least two samples.
MIN_LENGTH = 4
STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)
BLOCKS_PER_STAGE = 9


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class PoolPadShortcut(nn.Module):
    """Parameter-free downsampling shortcut: global average pool, then a fixed channel map.

    ``forward(x, width)`` maps x (B, C_in, H, W) to (B, width, 1, 1); the caller broadcast-adds it
    to the residual branch (B, width, H', W').

    Built with ``in_channels`` and ``out_channels`` (as :class:`BasicBlock` does), the module holds
    a buffer ``mapping`` S of shape (out_channels, in_channels), initialised to the zero-pad
    identity (S[i, i] = 1, all else 0), and returns S @ avgpool(x): bit-identical to zero-padding
    at init. S is not trained; it is in the state dict so that a fused S round-trips, and channel
    fusion edits it (rows averaged per fused output channel, columns summed per fused input
    channel), which keeps the shortcut exact when the fused channels are identical. If S is larger
    than the run-time shapes (a model whose convs were narrowed by hand, keeping the leading
    channels), its leading (width, C_in) block is used, which for the initial S is exactly
    zero-padding. Checkpoints written before S existed load with the initial S.

    Built without channel counts (``PoolPadShortcut()``), there is no S and channels
    C_in..width-1 are zero-padded as in the authors' code; narrowing is then an error.

    Cost (the MAC counter calls :meth:`count_macs`): 0 while S is a 0/1 routing map with at most
    one 1 per row (the zero-pad identity, or one kept by channel selection: a copy, which the
    published counts do not price either), else width * C_in per sample (a dense product).
    """

    def __init__(self, detach: bool = False, in_channels: int | None = None,
                 out_channels: int | None = None):
        super().__init__()
        self.detach = detach
        mapping = None
        if in_channels is not None or out_channels is not None:
            if in_channels is None or out_channels is None:
                raise ValueError("PoolPadShortcut needs both in_channels and out_channels, "
                                 "or neither")
            mapping = torch.eye(out_channels, in_channels)
        self.register_buffer("mapping", mapping)
        self.register_load_state_dict_pre_hook(_initial_mapping_if_missing)

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)
        if self.detach:
            pooled = pooled.detach()
        if self.mapping is not None:
            return torch.einsum("oi,bihw->bohw", self._effective_mapping(pooled.shape[1], width),
                                pooled)
        extra = width - pooled.shape[1]
        if extra < 0:
            raise ValueError(
                f"zero-pad shortcut cannot narrow {pooled.shape[1]} input channels to {width}: "
                "a pruned stage-opening block must keep at least its input width"
            )
        # F.pad pads the last dimensions first: (W, W, H, H, C_front, C_back).
        return F.pad(pooled, (0, 0, 0, 0, 0, extra))

    def _effective_mapping(self, in_channels: int, width: int) -> torch.Tensor:
        """The (width, in_channels) block of S used for these run-time shapes."""
        rows, cols = self.mapping.shape
        if rows < width or cols < in_channels:
            raise ValueError(f"shortcut channel map {rows}x{cols} cannot map {in_channels} input "
                             f"channels to {width}")
        return self.mapping[:width, :in_channels]

    def count_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-accumulates of one forward call (see the class docstring)."""
        if self.mapping is None:
            return 0
        batch, in_channels = inputs[0].shape[:2]
        mapping = self._effective_mapping(in_channels, output.shape[1])
        is_copy = bool(((mapping == 0) | (mapping == 1)).all()
                       and ((mapping != 0).sum(dim=1) <= 1).all())
        return 0 if is_copy else batch * mapping.numel()

    def resize_like(self, shapes: dict[str, torch.Size]) -> None:
        """Give ``mapping`` the shape found in a state dict (``{"mapping": shape}``).

        fcos.prune.surgery.resize_to_state_dict calls this for a fused model; values come from
        the state dict afterwards.
        """
        if "mapping" in shapes and (self.mapping is None
                                    or tuple(self.mapping.shape) != tuple(shapes["mapping"])):
            like = {} if self.mapping is None else {"dtype": self.mapping.dtype,
                                                    "device": self.mapping.device}
            self.mapping = torch.zeros(shapes["mapping"], **like)

    def extra_repr(self) -> str:
        if self.mapping is None:
            return f"detach={self.detach}"
        return f"detach={self.detach}, mapping={tuple(self.mapping.shape)}"


def _initial_mapping_if_missing(module: PoolPadShortcut, state_dict, prefix, *args) -> None:
    # A checkpoint from before the channel map existed: its shortcut was the zero-pad identity.
    if module.mapping is not None and prefix + "mapping" not in state_dict:
        state_dict[prefix + "mapping"] = torch.eye(*module.mapping.shape)


class BasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU.

    Input (B, C_in, H, W); output (B, C_out, H', W') with C_out = conv2's output channels and
    H', W' = ceil(H / stride), ceil(W / stride). The shortcut is the identity when
    ``downsample`` is None (same shape in and out), else a :class:`PoolPadShortcut`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 detach_shortcut: bool = False):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = (PoolPadShortcut(detach_shortcut, in_channels, out_channels)
                           if stride != 1 or in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is None:
            out = out + x
        else:
            out = out + self.downsample(x, out.shape[1])
        return self.relu(out)


class ResNet56(nn.Module):
    """ResNet56 on I/Q signals. Input (B, 2, L) float32, output logits (B, num_classes).

    Named parts: ``stem`` (conv/bn/relu), ``layer1``..``layer3`` (nn.Sequential of 9
    :class:`BasicBlock` each, e.g. ``layer2.0``), ``avgpool``, ``fc``.
    """

    stem_name = "stem"

    def __init__(self, num_classes: int, length: int, detach_shortcut: bool = False):
        super().__init__()
        check_length(length)
        self.length = length
        self.stem = nn.Sequential()
        self.stem.add_module("conv", _conv3x3(1, STAGE_WIDTHS[0]))
        self.stem.add_module("bn", nn.BatchNorm2d(STAGE_WIDTHS[0]))
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        in_channels = STAGE_WIDTHS[0]
        for index, (width, stride) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES), start=1):
            blocks = []
            for position in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(in_channels, width, stride if position == 0 else 1,
                                         detach_shortcut))
                in_channels = width
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> (B, num_classes)."""
        x = self.stem(x.unsqueeze(1))  # (B, 1, 2, L) -> (B, 16, 2, L)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def removable_blocks(self) -> list[str]:
        """Dotted names of the 27 basic blocks, in depth order (``layer1.0`` .. ``layer3.8``)."""
        return [f"{stage}.{i}" for stage in ("layer1", "layer2", "layer3")
                for i in range(len(getattr(self, stage)))]


def check_length(length: int) -> None:
    """Raise ConfigError unless ``length`` is a valid ResNet56 input length."""
    if length < MIN_LENGTH:
        raise ConfigError(f"model resnet56 needs length >= {MIN_LENGTH}, got {length}")


def resnet56(num_classes: int, length: int, detach_shortcut: bool = False) -> ResNet56:
    """Build ResNet56 for inputs (B, 2, length) and ``num_classes`` outputs.

    ``detach_shortcut=True`` blocks the gradient through the zero-pad shortcut as the authors'
    code does (see the module docstring).
    """
    return ResNet56(num_classes, length, detach_shortcut=detach_shortcut)
