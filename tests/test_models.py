"""Model registry, published sizes, shapes, gradients and the 'no hard-coded widths' rule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fcos.errors import ConfigError
from fcos.metrics import macs_and_params
from fcos.models import MODELS, build_model, model_names
from fcos.models.resnet56 import PoolPadShortcut
from fcos.models.signet50 import SignalToMatrix


def _build(name: str, num_classes: int = 11, length: int = 128, seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_model(name, num_classes, length, **options)


@pytest.fixture(scope="module")
def signet32():
    """SigNet50 for 11 classes at length 32 (short, to keep forward/backward fast)."""
    return _build("signet50", 11, 32)


# --- registry and argument checks -------------------------------------------------------------

def test_registry_names():
    assert model_names() == ["cnn1d", "resnet56", "signet50"]
    assert set(MODELS) == set(model_names())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        build_model("resnet57", 11, 128)
    message = str(err.value)
    assert "\n" not in message and "resnet57" in message
    assert all(name in message for name in model_names())


@pytest.mark.parametrize("name, length, fragment", [
    ("cnn1d", 100, "divisible by 64"),
    ("cnn1d", 32, "divisible by 64"),
    ("resnet56", 2, ">= 4"),
    ("signet50", 16, ">= 32"),
    ("resnet56", 0, "length"),
    ("resnet56", 128.0, "length"),
    ("cnn1d", True, "length"),
])
def test_invalid_length(name, length, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        build_model(name, 11, length)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("num_classes", [1, 0, "11", 2.0])
def test_invalid_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("resnet56", num_classes, 128)


def test_numpy_integers_accepted():
    model = build_model("cnn1d", np.int64(11), np.int16(128))
    assert model.length == 128 and type(model.length) is int


def test_unknown_option():
    with pytest.raises(ConfigError, match="detach_shortcut"):
        build_model("cnn1d", 11, 128, detach_shortcut=True)
    with pytest.raises(ConfigError, match="valid options: detach_shortcut"):
        build_model("resnet56", 11, 128, width=3)


# --- published sizes (paper notes, section 3) -------------------------------------------------

def test_resnet56_size_matches_published():
    # RML2016.10a: 11 classes, L=128. Notes: ~0.85M params, ~41.6M / 166.5M / 333M MACs at
    # L = 128 / 512 / 1024.
    model = _build("resnet56", 11, 128)
    macs, params = macs_and_params(model, 128)
    assert (macs, params) == (41_620_160, 852_795)
    assert abs(params / 0.85e6 - 1) < 0.01 and abs(macs / 41.6e6 - 1) < 0.01
    # Sig2019-12 (12 classes, L=512) and RML2018.01a (24 classes, L=1024)
    assert macs_and_params(_build("resnet56", 12, 512), 512) == (166_478_592, 852_860)
    assert macs_and_params(_build("resnet56", 24, 1024), 1024) == (332_957_184, 853_640)


def test_cnn1d_size_matches_published():
    # 11 classes, L=128; notes: ~0.10M params, ~9.5M MACs.
    macs, params = macs_and_params(_build("cnn1d", 11, 128), 128)
    assert (macs, params) == (9_532_800, 100_907)
    assert abs(params / 0.10e6 - 1) < 0.01 and abs(macs / 9.5e6 - 1) < 0.01


def test_signet50_size_matches_published(signet32):
    # notes: ~23.5M params, ~1.3G MACs at L=128 (1x1 Conv2d head: 2048*C + C params).
    assert macs_and_params(signet32, 128) == (1_321_853_184, 23_527_453)  # 11 classes
    assert abs(23_527_453 / 23.5e6 - 1) < 0.01
    assert abs(1_321_853_184 / 1.3e9 - 1) < 0.02
    params24 = sum(p.numel() for p in _build("signet50", 24, 32).parameters())
    assert params24 == 23_554_090 and abs(params24 / 23.5e6 - 1) < 0.01


# --- interface: shapes, gradients, names, determinism ----------------------------------------

@pytest.mark.parametrize("name, length", [
    ("resnet56", 128), ("resnet56", 130), ("resnet56", 1024),
    ("cnn1d", 128), ("cnn1d", 512), ("cnn1d", 1024),
])
def test_output_shape(name, length):
    model = _build(name, 7, length).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 2, length))
    assert out.shape == (3, 7) and out.dtype == torch.float32


def test_signet50_output_shape(signet32):
    with torch.no_grad():
        assert signet32.eval()(torch.randn(2, 2, 32)).shape == (2, 11)
        assert signet32(torch.randn(1, 2, 48)).shape == (1, 11)


@pytest.mark.parametrize("name", ["resnet56", "cnn1d", "signet50"])
def test_backward_reaches_every_parameter(name, signet32):
    model = copy.deepcopy(signet32) if name == "signet50" else _build(name, 5, 128)
    model.train()
    length = 32 if name == "signet50" else 128
    torch.manual_seed(1)
    logits = model(torch.randn(4, 2, length))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]) % logits.shape[1]).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("name, count", [("resnet56", 27), ("cnn1d", 6), ("signet50", 16)])
def test_removable_blocks_and_stem(name, count, signet32):
    model = signet32 if name == "signet50" else _build(name)
    blocks = model.removable_blocks()
    assert len(blocks) == count == len(set(blocks))
    for block in blocks:
        model.get_submodule(block)
    model.get_submodule(model.stem_name)
    order = [n for n, _ in model.named_modules()]
    assert [order.index(b) for b in blocks] == sorted(order.index(b) for b in blocks)
    first = {"resnet56": "layer1.0", "cnn1d": "stacks.0", "signet50": "layer1.0"}[name]
    assert blocks[0] == first


@pytest.mark.parametrize("name", ["resnet56", "cnn1d"])
def test_seeded_init_is_deterministic(name):
    a, b = _build(name, seed=3).state_dict(), _build(name, seed=3).state_dict()
    c = _build(name, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_signet50_seeded_init_is_deterministic(signet32):
    other = _build("signet50", 11, 32).state_dict()
    assert all(torch.equal(v, other[k]) for k, v in signet32.state_dict().items())


def test_forward_prints_nothing(capsys, signet32):
    with torch.no_grad():
        for model, length in ((_build("resnet56"), 128), (_build("cnn1d"), 128), (signet32, 32)):
            model.eval()(torch.randn(1, 2, length))
    assert capsys.readouterr() == ("", "")


# --- the authors' special operators ------------------------------------------------------------

def test_pool_pad_shortcut_is_global_mean_then_zero_channels():
    x = torch.randn(2, 16, 2, 8)
    out = PoolPadShortcut()(x, 24)
    assert out.shape == (2, 24, 1, 1)
    torch.testing.assert_close(out[:, :16, 0, 0], x.mean(dim=(2, 3)))
    assert not out[:, 16:].any()
    with pytest.raises(ValueError, match="narrow"):
        PoolPadShortcut()(x, 8)


def test_resnet56_stride2_block_shapes():
    model = _build("resnet56").eval()
    with torch.no_grad():
        x = model.layer1(model.stem(torch.randn(1, 1, 2, 128)))
        assert x.shape == (1, 16, 2, 128)
        x = model.layer2(x)
        assert x.shape == (1, 32, 1, 64)  # height 2 -> 1 with padding 1, stride 2
        assert model.layer3(x).shape == (1, 64, 1, 32)


def test_detached_shortcut_same_values_blocked_gradient():
    free = _build("resnet56", 11, 128)
    blocked = _build("resnet56", 11, 128, detach_shortcut=True)
    blocked.load_state_dict(free.state_dict())
    block_free, block_blocked = free.layer2[0].eval(), blocked.layer2[0].eval()
    x1 = torch.randn(1, 16, 2, 16, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = block_free(x1), block_blocked(x2)
    torch.testing.assert_close(y1, y2)
    y1.sum().backward()
    y2.sum().backward()
    assert not torch.allclose(x1.grad, x2.grad)


def test_s2m_matches_definition():
    torch.manual_seed(0)
    s2m = SignalToMatrix()
    x = torch.randn(2, 2, 5)
    out = s2m(x)
    assert out.shape == (2, 2, 5, 5)
    zero = torch.zeros(2, 5)
    i, q = x[:, 0], x[:, 1]
    windows = [torch.stack([zero, i, q], -1), torch.stack([i, q, zero], -1)]  # (B, L, 3) each
    for c, v in enumerate(windows):
        expected = torch.einsum("bti,ij,bsj->bts", v, s2m.weight[0, c], v)
        torch.testing.assert_close(out[:, c], expected)


def test_s2m_time_windows_match_definition():
    torch.manual_seed(0)
    s2m = SignalToMatrix(windows="time")
    x = torch.randn(2, 2, 5)
    out = s2m(x)
    padded = nn.functional.pad(x, (1, 1))
    for c in range(2):
        v = torch.stack([padded[:, c, t:t + 3] for t in range(5)], 1)  # (B, L, 3)
        expected = torch.einsum("bti,ij,bsj->bts", v, s2m.weight[0, c], v)
        torch.testing.assert_close(out[:, c], expected)


def test_signet50_s2m_option():
    model = _build("signet50", 11, 32, s2m_windows="time")
    assert model.s2m.windows == "time"
    with pytest.raises(ConfigError, match="s2m_windows"):
        build_model("signet50", 11, 32, s2m_windows="freq")


# --- narrowed layers: widths come from modules, never constants -------------------------------

def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _conv(model: nn.Module, dotted: str, cin: int | None = None, cout: int | None = None) -> None:
    old = model.get_submodule(dotted)
    new = type(old)(cin or old.in_channels, cout or old.out_channels, old.kernel_size,
                    stride=old.stride, padding=old.padding, bias=old.bias is not None)
    _set(model, dotted, new)


def _bn(model: nn.Module, dotted: str, width: int) -> None:
    _set(model, dotted, type(model.get_submodule(dotted))(width))


def _assert_runs_and_is_cheaper(model: nn.Module, base_macs: int) -> None:
    """The narrowed model maps (4, 2, 128) frames to 11 logits, back-propagates, costs fewer MACs."""
    model.train()
    out = model(torch.randn(4, 2, 128))
    assert out.shape == (4, 11)
    out.sum().backward()
    assert macs_and_params(model, 128)[0] < base_macs


def _narrow_resnet_stream(model: nn.Module, stage: str, width: int) -> None:
    """Every writer (conv2/bn2) and in-stage reader (conv1 of blocks 1..8) of ``stage``'s stream."""
    for i in range(9):
        if i:
            _conv(model, f"{stage}.{i}.conv1", cin=width)
        _conv(model, f"{stage}.{i}.conv2", cout=width)
        _bn(model, f"{stage}.{i}.bn2", width)


def test_resnet56_narrowed_forward():
    model = _build("resnet56", 11, 128)
    base_macs, _ = macs_and_params(model, 128)
    # inner channels of one block
    _conv(model, "layer1.3.conv1", cout=7)
    _bn(model, "layer1.3.bn1", 7)
    _conv(model, "layer1.3.conv2", cin=7)
    # the whole stage-2 residual stream 32 -> 24: both zero-pad shortcuts read widths at run time
    _narrow_resnet_stream(model, "layer2", 24)
    _conv(model, "layer3.0.conv1", cin=24)
    # the stage-3 stream 64 -> 40 and the classifier input with it
    _narrow_resnet_stream(model, "layer3", 40)
    _set(model, "fc", nn.Linear(40, 11))
    _assert_runs_and_is_cheaper(model, base_macs)


def test_cnn1d_narrowed_forward():
    model = _build("cnn1d", 11, 128)
    base_macs, _ = macs_and_params(model, 128)
    _conv(model, "stacks.0.conv2", cout=12)  # 2-D stack, inner channels
    _conv(model, "stacks.0.conv3", cin=12)
    _conv(model, "stacks.2.conv4", cout=20)  # 1-D stack, inner channels
    _conv(model, "stacks.2.conv5", cin=20)
    for conv in ("conv1", "conv3", "conv5"):  # last stack's stream 32 -> 16
        _conv(model, f"stacks.5.{conv}", cout=16)
    for conv in ("conv2", "conv4"):
        _conv(model, f"stacks.5.{conv}", cin=16)
    _set(model, "dense", nn.Linear(16 * 2, 64))  # flatten is 16 x L/64
    _set(model, "classifier", nn.Linear(64, 11))
    _assert_runs_and_is_cheaper(model, base_macs)


def test_signet50_narrowed_forward(signet32):
    model = copy.deepcopy(signet32)
    _conv(model, "layer2.1.conv1", cout=50)
    _bn(model, "layer2.1.bn1", 50)
    _conv(model, "layer2.1.conv2", cin=50, cout=60)
    _bn(model, "layer2.1.bn2", 60)
    _conv(model, "layer2.1.conv3", cin=60)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 2, 32)).shape == (2, 11)
