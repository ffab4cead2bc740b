"""CNN1D: the authors' residual-stack network for I/Q signals (``ResNet1D`` in yaolu-zjut/PSR).

Architecture (model_signal/CNN1D.py of yaolu-zjut/PSR); all convs are bias-free, no BatchNorm:

- ``stem``: parameter-free input adapter, (B, 2, L) -> (B, 1, 2, L);
- ``stacks.0`` (2-D): 1x1 conv 1->32 on (B, 1, 2, L) -> (B, 32, 2, L), then four 2x3 convs with
  height padding 1, 0, 1, 0 (width padding 1), so heights go 2 -> 3 -> 2 -> 3 -> 2; a residual
  add after the 3rd and after the 5th conv; MaxPool2d(2) -> (B, 32, 1, L/2), squeezed to
  (B, 32, L/2);
- ``stacks.1``..``stacks.5`` (1-D): 1x1 conv 32->32, four k=3 convs (padding 1) with the same two
  residual adds, MaxPool1d(2): (B, 32, n) -> (B, 32, n/2);
- head: flatten (B, 32 * L/64) -> ``dense`` Linear(32 * L/64, 128) -> ``drop`` Dropout(0.3) ->
  ``classifier`` Linear(128, num_classes).

Activation pattern inside a stack, as in the authors' code: no activation after the 1x1 conv;
ReLU after conv2 and conv4; ReLU after each residual add (before the next conv / the pool). The
authors apply no activation between ``dense`` and ``classifier`` (dropout only); kept as is.

Weights use PyTorch's default initialisation, as in the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

#: Six pooling stages halve the length six times.
LENGTH_MULTIPLE = 64
WIDTH = 32
HIDDEN = 128
NUM_STACKS = 6
DROPOUT = 0.3


class AddPlaneDim(nn.Module):
    """Input adapter (B, C, L) -> (B, 1, C, L); no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


class ResidualStack(nn.Module):
    """1x1 conv, two residual units of two convs each, then max-pool by 2.

    1-D form (``planar=False``): (B, C_in, n) -> (B, C, n/2), kernels k=3, padding 1.
    2-D form (``planar=True``): (B, C_in, 2, n) -> (B, C, n/2); kernels 2x3 with height padding
    1, 0, 1, 0, a 2x2 max-pool that collapses the height to 1, and that height dimension squeezed.
    C is the stream width (output channels of conv1, conv3 and conv5).
    """

    def __init__(self, in_channels: int, width: int = WIDTH, planar: bool = False):
        super().__init__()
        self.planar = planar
        if planar:
            conv, pool = nn.Conv2d, nn.MaxPool2d(kernel_size=2, stride=2)
            kernel, paddings = (2, 3), ((1, 1), (0, 1), (1, 1), (0, 1))
        else:
            conv, pool = nn.Conv1d, nn.MaxPool1d(kernel_size=2, stride=2)
            kernel, paddings = 3, (1, 1, 1, 1)
        self.conv1 = conv(in_channels, width, kernel_size=1, bias=False)
        self.conv2 = conv(width, width, kernel_size=kernel, padding=paddings[0], bias=False)
        self.conv3 = conv(width, width, kernel_size=kernel, padding=paddings[1], bias=False)
        self.conv4 = conv(width, width, kernel_size=kernel, padding=paddings[2], bias=False)
        self.conv5 = conv(width, width, kernel_size=kernel, padding=paddings[3], bias=False)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu(self.conv3(F.relu(self.conv2(x))) + x)
        x = F.relu(self.conv5(F.relu(self.conv4(x))) + x)
        x = self.pool(x)
        if self.planar:
            if x.shape[2] != 1:
                raise ValueError(f"2-D residual stack expects input height 2, got pooled height "
                                 f"{x.shape[2]}")
            x = x.squeeze(2)
        return x

    def extra_repr(self) -> str:
        return f"planar={self.planar}"


class CNN1D(nn.Module):
    """CNN1D on I/Q signals. Input (B, 2, L) float32 with L % 64 == 0, output (B, num_classes).

    Named parts: ``stem`` (input adapter), ``stacks`` (nn.Sequential of 6
    :class:`ResidualStack`, ``stacks.0`` is the 2-D one), ``dense``, ``drop``, ``classifier``.
    ``dense.in_features`` is the real flattened size of the last stack's output, measured with a
    zero input at construction time.
    """

    stem_name = "stem"

    def __init__(self, num_classes: int, length: int):
        super().__init__()
        check_length(length)
        self.length = length
        self.stem = AddPlaneDim()
        stacks = [ResidualStack(1, planar=True)]
        stacks += [ResidualStack(WIDTH) for _ in range(NUM_STACKS - 1)]
        self.stacks = nn.Sequential(*stacks)
        with torch.no_grad():
            flat = self.stacks(self.stem(torch.zeros(1, 2, length))).flatten(1).shape[1]
        self.dense = nn.Linear(flat, HIDDEN)
        self.drop = nn.Dropout(DROPOUT)
        self.classifier = nn.Linear(HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> (B, num_classes)."""
        x = self.stacks(self.stem(x))  # (B, C, L/64)
        return self.classifier(self.drop(self.dense(torch.flatten(x, 1))))

    def removable_blocks(self) -> list[str]:
        """Dotted names of the 6 residual stacks in depth order (``stacks.0`` .. ``stacks.5``)."""
        return [f"stacks.{i}" for i in range(len(self.stacks))]


def check_length(length: int) -> None:
    """Raise ConfigError unless ``length`` is a valid CNN1D input length."""
    if length < LENGTH_MULTIPLE or length % LENGTH_MULTIPLE:
        raise ConfigError(f"model cnn1d needs a length divisible by {LENGTH_MULTIPLE} "
                          f"(six 2x poolings), got {length}")


def cnn1d(num_classes: int, length: int) -> CNN1D:
    """Build CNN1D for inputs (B, 2, length) and ``num_classes`` outputs."""
    return CNN1D(num_classes, length)
