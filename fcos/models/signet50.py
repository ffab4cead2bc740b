"""SigNet50: a learnable signal-to-matrix (S2M) operator followed by a ResNet-50.

SigNet is by Chen et al. (IEEE TCCN 2021); the layout here follows the variant used by the FCOS
authors in their earlier code (``ResNet50`` in yaolu-zjut/PSR, model_signal/signet.py):

- ``s2m`` (:class:`SignalToMatrix`): (B, 2, L) -> (B, 2, L, L); option ``s2m_windows`` picks
  the authors' I/Q windows (default) or time windows;
- ``stem``: 7x7 conv 2->64 stride 2 (padding 3, no bias) + BN + ReLU + 3x3 max-pool stride 2
  -> (B, 64, L/4, L/4) (sizes round up);
- ``layer1``..``layer4``: bottlenecks [3, 4, 6, 3], widths 64/128/256/512 (x4 expansion), the
  stride on the 3x3 conv, 1x1 conv + BN projection shortcut for stage-opening blocks
  -> (B, 2048, L/32, L/32);
- head: global average pool -> ``fc`` Conv2d(2048, num_classes, 1) with bias -> (B, num_classes).

Initialisation as in the authors' code: He-normal (fan_in, ReLU gain) for every conv inside the
bottleneck stages (including shortcut projections), PyTorch defaults for the stem conv, the head
and BatchNorm, and a standard normal S2M filter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

#: Five stride-2 reductions (stem conv, max-pool, layer2..4) take L = 32 to a 1x1 map; with
#: shorter inputs the last stages would see a 1x1 map made mostly of padding.
MIN_LENGTH = 32
STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_PLANES = (64, 128, 256, 512)
EXPANSION = 4
S2M_WINDOW = 3


class SignalToMatrix(nn.Module):
    """Learnable signal-to-matrix operator, (B, C, L) -> (B, C, L, L); C = 2 for I/Q.

    For each plane c the operator builds a window matrix V_c of shape (L, k) (row t = a length-k
    window tied to time step t) and returns ``M_c = V_c @ W_c @ V_c^T`` (L x L) with a learnable
    k x k filter W_c. ``weight`` has shape (1, C, k, k) and is initialised standard normal.
    Two ways of cutting the windows (``windows``):

    - ``"iq"`` (default; what the authors' code computes): the input is transposed to (B, L, C)
      before windowing, so at every time step t the vector (I_t, Q_t) is zero-padded by k//2 on
      both sides and cut into C windows of length k. For k = 3, row t of V_0 is (0, I_t, Q_t) and
      row t of V_1 is (I_t, Q_t, 0).
    - ``"time"``: each of I and Q is zero-padded along time and row t of V_c is
      (x_c[t - k//2], ..., x_c[t + k//2]), i.e. sliding windows over time. This is what the shape
      comments in the authors' filter describe and how the SigNet paper words S2M; their data
      layout turned it into the "iq" variant. Same parameters and cost.

    Cost (the MAC counter calls :meth:`count_macs`): per plane, V_c @ W_c takes L*k*k
    multiply-accumulates and (V_c W_c) @ V_c^T takes L*L*k, i.e. C*(L*k*k + L*L*k) in all
    (100,608 for C=2, k=3, L=128).
    """

    WINDOWS = ("iq", "time")

    def __init__(self, channels: int = 2, window: int = S2M_WINDOW, windows: str = "iq"):
        super().__init__()
        if window % 2 == 0:
            raise ValueError(f"S2M window must be odd, got {window}")
        if windows not in self.WINDOWS:
            raise ValueError(f"S2M windows must be one of {self.WINDOWS}, got {windows!r}")
        self.windows = windows
        self.weight = nn.Parameter(torch.randn(1, channels, window, window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, window = self.weight.shape[1], self.weight.shape[-1]
        if x.dim() != 3 or x.shape[1] != channels:
            raise ValueError(f"S2M expects input (B, {channels}, L), got shape {list(x.shape)}")
        half = window // 2
        if self.windows == "iq":
            padded = F.pad(x.transpose(1, 2), (half, half))  # (B, L, C + k - 1)
            v = padded.unfold(-1, window, 1).transpose(1, 2)  # (B, C, L, k)
        else:
            v = F.pad(x, (half, half)).unfold(-1, window, 1)  # (B, C, L, k)
        return (v @ self.weight) @ v.transpose(2, 3)  # (B, C, L, L)

    def count_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-accumulates of one forward call (see the class docstring)."""
        batch, channels, length = inputs[0].shape
        window = self.weight.shape[-1]
        return batch * channels * (length * window * window + length * length * window)

    def extra_repr(self) -> str:
        channels, window = self.weight.shape[1], self.weight.shape[-1]
        return f"channels={channels}, window={window}, windows={self.windows!r}"


class Bottleneck(nn.Module):
    """1x1 conv-BN-ReLU, 3x3 conv(stride)-BN-ReLU, 1x1 conv-BN, plus shortcut, then ReLU.

    Input (B, C_in, H, W); output (B, C_out, ceil(H/stride), ceil(W/stride)), C_out = conv3's
    output channels. ``downsample`` (1x1 conv stride + BN) is present when the stride or the
    width changes, else the shortcut is the identity.
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class SigNet50(nn.Module):
    """SigNet50 on I/Q signals. Input (B, 2, L) float32, output logits (B, num_classes).

    Named parts: ``s2m``, ``stem`` (conv/bn/relu/maxpool), ``layer1``..``layer4`` (nn.Sequential
    of :class:`Bottleneck`, e.g. ``layer3.5``), ``avgpool``, ``fc`` (1x1 Conv2d head).
    """

    stem_name = "stem"

    def __init__(self, num_classes: int, length: int, s2m_windows: str = "iq"):
        super().__init__()
        check_length(length)
        if s2m_windows not in SignalToMatrix.WINDOWS:
            raise ConfigError(f"signet50 option s2m_windows must be one of "
                              f"{', '.join(SignalToMatrix.WINDOWS)}, got {s2m_windows!r}")
        self.length = length
        self.s2m = SignalToMatrix(windows=s2m_windows)
        stem_width = STAGE_PLANES[0]
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(self.s2m.weight.shape[1], stem_width,
                                               kernel_size=7, stride=2, padding=3, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(stem_width))
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        self.stem.add_module("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        in_channels = stem_width
        for index, (blocks, planes) in enumerate(zip(STAGE_BLOCKS, STAGE_PLANES), start=1):
            stride = 1 if index == 1 else 2
            stage = []
            for position in range(blocks):
                stage.append(Bottleneck(in_channels, planes, stride if position == 0 else 1))
                in_channels = planes * EXPANSION
            self.add_module(f"layer{index}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> (B, num_classes)."""
        x = self.stem(self.s2m(x))  # (B, 2, L, L) -> (B, 64, L/4, L/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.fc(self.avgpool(x)), 1)

    def removable_blocks(self) -> list[str]:
        """Dotted names of the 16 bottlenecks in depth order (``layer1.0`` .. ``layer4.2``)."""
        return [f"{stage}.{i}" for stage in ("layer1", "layer2", "layer3", "layer4")
                for i in range(len(getattr(self, stage)))]


def check_length(length: int) -> None:
    """Raise ConfigError unless ``length`` is a valid SigNet50 input length."""
    if length < MIN_LENGTH:
        raise ConfigError(f"model signet50 needs length >= {MIN_LENGTH}, got {length}")


def signet50(num_classes: int, length: int, s2m_windows: str = "iq") -> SigNet50:
    """Build SigNet50 for inputs (B, 2, length) and ``num_classes`` outputs.

    ``s2m_windows``: "iq" (the authors' code, default) or "time" (see :class:`SignalToMatrix`).
    """
    return SigNet50(num_classes, length, s2m_windows=s2m_windows)
