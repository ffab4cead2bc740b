"""MACs of base and pruned models against a reference counter written here.

The reference shares no code with ``fcos.metrics``: forward hooks on Conv1d/Conv2d/Linear compute
MACs from the module's own hyper-parameters and the output's spatial size, and the two custom
modules are priced from their documented formulas (SigNet50's S2M: C*(L*k*k + L*L*k); ResNet56's
shortcut map: free while it is a 0/1 copy with at most one 1 per row, else width * C_in).
BatchNorm, activations, pooling and residual adds cost nothing (fcos.metrics' convention).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fcos.metrics import macs_and_params
from fcos.models import build_model
from fcos.models.resnet56 import PoolPadShortcut
from fcos.models.signet50 import SignalToMatrix
from fcos.prune import prune_model
from fcos.prune.blocks import remove_blocks
from fcos.prune.fusion import fuse_channels


def reference_macs(model: nn.Module, length: int) -> int:
    total = [0]

    def conv(module, inputs, output):
        spatial = math.prod(output.shape[2:])
        kernel = math.prod(module.kernel_size)
        total[0] += output.shape[0] * module.out_channels * spatial * (module.in_channels // module.groups) * kernel

    def linear(module, inputs, output):
        rows = output.numel() // module.out_features
        total[0] += rows * module.out_features * module.in_features

    def s2m(module, inputs, output):
        channels, k = module.weight.shape[1], module.weight.shape[-1]
        steps = inputs[0].shape[-1]
        total[0] += inputs[0].shape[0] * channels * (steps * k * k + steps * steps * k)

    def shortcut(module, inputs, output):
        if module.mapping is None:
            return
        used = module.mapping[:output.shape[1], :inputs[0].shape[1]]
        binary = bool(torch.isin(used, torch.tensor([0.0, 1.0])).all())
        if not (binary and int(torch.count_nonzero(used, dim=1).max()) <= 1):
            total[0] += inputs[0].shape[0] * used.shape[0] * used.shape[1]

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            handles.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear))
        elif isinstance(module, SignalToMatrix):
            handles.append(module.register_forward_hook(s2m))
        elif isinstance(module, PoolPadShortcut):
            handles.append(module.register_forward_hook(shortcut))
        elif next(module.parameters(recurse=False), None) is not None:
            assert isinstance(module, nn.modules.batchnorm._BatchNorm), type(module).__name__
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, 2, length))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def _base(name: str, length: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, 11, length).eval()


@pytest.mark.parametrize("name, length", [("cnn1d", 128), ("resnet56", 128), ("signet50", 32)])
def test_base_models(name, length):
    model = _base(name, length)
    assert macs_and_params(model, length)[0] == reference_macs(model, length)


def test_s2m_formula_by_hand():
    # C=2, k=3, L=128: 2 * (128*9 + 128*128*3) as the SigNet paper's operator costs
    assert reference_macs(SignalToMatrix(), 128) == 100_608 == macs_and_params(SignalToMatrix(), 128)[0]


@pytest.mark.parametrize("name", ["cnn1d", "resnet56"])
def test_fused_models(name):
    base = _base(name, 128)
    fused, _ = fuse_channels(base, name, ratio=0.5, length=128)
    macs = reference_macs(fused, 128)
    assert macs_and_params(fused, 128)[0] == macs
    assert macs < 0.7 * reference_macs(base, 128)


@pytest.mark.parametrize("name", ["cnn1d", "resnet56"])
def test_channel_pruned_models_meet_the_budget_by_the_reference(name):
    base = _base(name, 128)
    pruned = prune_model("l1", base, model_name=name, budget=0.5).model
    macs = reference_macs(pruned, 128)
    assert macs_and_params(pruned, 128)[0] == macs
    reduction = 1 - macs / reference_macs(base, 128)
    assert 0.5 <= reduction <= 0.51, reduction


@pytest.mark.parametrize("name, length", [("cnn1d", 128), ("resnet56", 128), ("signet50", 32)])
def test_block_removed_models(name, length):
    base = _base(name, length)
    before = reference_macs(base, length)  # remove_blocks edits the model it is given
    blocks = base.removable_blocks()
    removed, record = remove_blocks(base, blocks[-2:], length=length)
    macs = reference_macs(removed, length)
    assert macs_and_params(removed, length)[0] == macs
    assert macs < before
