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
    """Parameter-free downsampling shortcut: global average pool, then zero-pad channels.

    ``forward(x, width)`` maps x (B, C_in, H, W) to (B, width, 1, 1); the caller broadcast-adds it
    to the residual branch (B, width, H', W'). Channels C_in..width-1 are zero.
    """

    def __init__(self, detach: bool = False):
        super().__init__()
        self.detach = detach

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)
        if self.detach:
            pooled = pooled.detach()
        extra = width - pooled.shape[1]
        if extra < 0:
            raise ValueError(
                f"zero-pad shortcut cannot narrow {pooled.shape[1]} input channels to {width}: "
                "a pruned stage-opening block must keep at least its input width"
            )
        # F.pad pads the last dimensions first: (W, W, H, H, C_front, C_back).
        return F.pad(pooled, (0, 0, 0, 0, 0, extra))

    def extra_repr(self) -> str:
        return f"detach={self.detach}"


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
        self.downsample = (PoolPadShortcut(detach_shortcut)
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
