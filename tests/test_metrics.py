"""The MAC/parameter counter (hand count, thop and fvcore cross-checks) and the report."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import thop  # ultralytics-thop, in the test extra and requirements/constraints.txt
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from fcos.metrics import classification_report, macs_and_params
from fcos.models import build_model
from fcos.models.cnn1d import AddPlaneDim
from fcos.models.resnet56 import PoolPadShortcut
from fcos.models.signet50 import SignalToMatrix


def _tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(2, 4, kernel_size=3, padding=1),   # out (4, 8): 32 * (2*3) = 192 MACs, 28 params
        nn.ReLU(),
        nn.Conv1d(4, 4, kernel_size=3, groups=2),    # out (4, 6): 24 * (2*3) = 144 MACs, 28 params
        nn.Flatten(),
        nn.Linear(24, 5),                            # 5 * 24 = 120 MACs, 125 params
    )


def test_hand_counted_tiny_net():
    assert macs_and_params(_tiny_net(), length=8) == (456, 181)


def test_hand_counted_conv2d_and_batched_linear():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, kernel_size=(2, 3), bias=False)  # (1,2,L)->(3,1,L-2)
            self.bn = nn.BatchNorm2d(3)                                  # params counted, no MACs
            self.fc = nn.Linear(3, 2)                                    # applied per position

        def forward(self, x):
            y = self.bn(self.conv(x.unsqueeze(1))).squeeze(2)            # (1, 3, L-2)
            return self.fc(y.transpose(1, 2))                            # (1, L-2, 2)

    # conv: 3 * 8 outputs * 6 = 144; linear: 8 rows * 2 * 3 = 48; params 18 + 6 + 8
    assert macs_and_params(Net(), length=10) == (192, 32)


def test_counter_leaves_no_state_behind():
    model = _tiny_net().train()
    model[2].eval()  # mixed modes must come back as they were
    keys = list(model.state_dict())
    rng = torch.get_rng_state()
    macs_and_params(model, 8)
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(model.state_dict()) == keys
    assert [m.training for m in model] == [True, True, False, True, True]
    assert not any(m._forward_hooks for m in model.modules())


def test_counter_refuses_unknown_parametrised_layer():
    model = nn.Sequential(nn.Embedding(10, 4))
    with pytest.raises(TypeError, match="Embedding"):
        macs_and_params(model, 3)


def test_custom_count_macs_protocol():
    s2m = SignalToMatrix()
    macs, params = macs_and_params(s2m, 128)
    assert (macs, params) == (2 * (128 * 9 + 128 * 128 * 3), 18) == (100_608, 18)


# --- independent counters ------------------------------------------------------------------

def _zero(module, inputs, output):
    module.total_ops += torch.zeros(1, dtype=torch.float64)


# thop counts BN, pooling and our custom modules as extra ops: zero them so that both counters
# count conv + linear MACs only.
_THOP_ZERO = {t: _zero for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool1d,
                                 nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, PoolPadShortcut,
                                 AddPlaneDim, SignalToMatrix)}


@pytest.mark.parametrize("name, length", [("resnet56", 128), ("cnn1d", 128), ("signet50", 32)])
def test_counter_agrees_with_thop(name, length):
    torch.manual_seed(0)
    model = build_model(name, 11, length)
    macs, params = macs_and_params(model, length)
    thop_macs, thop_params = thop.profile(copy.deepcopy(model), inputs=(torch.zeros(1, 2, length),),
                                          custom_ops=_THOP_ZERO, verbose=False)
    s2m = 2 * (length * 9 + length * length * 3) if name == "signet50" else 0  # thop skips matmul
    assert macs - s2m == int(thop_macs)
    assert params == int(thop_params)


@pytest.mark.parametrize("name, length", [("resnet56", 64), ("cnn1d", 128), ("signet50", 32)])
def test_counter_agrees_with_fvcore(name, length):
    torch.manual_seed(0)
    model = build_model(name, 11, length).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 2, length))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    # fvcore counts one multiply-add as one "flop"; it sees the S2M matmuls, so SigNet's custom
    # op is checked here too.
    by_op = analysis.by_operator()
    counted = sum(by_op.get(op, 0) for op in ("conv", "linear", "addmm", "matmul", "bmm"))
    assert macs_and_params(model, length)[0] == counted


# --- classification report ---------------------------------------------------------------

def test_classification_report_hand_example():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    snr = np.array([10, -2, 10, -2, 10, 4], dtype=np.int16)
    report = classification_report(y_true, y_pred, snr, ["a", "b", "c"])
    assert report == {
        "accuracy": pytest.approx(4 / 6),
        "per_snr": {"-2": 0.5, "4": 1.0, "10": pytest.approx(2 / 3)},
        "per_class": {"a": 0.5, "b": 1.0, "c": 0.5},
        "confusion": [[1, 1, 0], [0, 2, 0], [1, 0, 1]],
        "n_test": 6,
    }
    assert list(report["per_snr"]) == ["-2", "4", "10"]
    assert isinstance(report["accuracy"], float) and isinstance(report["n_test"], int)


def test_classification_report_absent_class_is_none():
    report = classification_report([0, 0], [0, 1], [0, 0], ["a", "b"])
    assert report["per_class"] == {"a": 0.5, "b": None}


@pytest.mark.parametrize("y_true, y_pred, snr, match", [
    ([0, 1], [0], [0, 0], "length"),
    ([0, 1], [0, 1], [0], "length"),
    ([], [], [], "at least one"),
    ([0, 3], [0, 1], [0, 0], "outside"),
    ([0, 1], [0.0, 1.0], [0, 0], "integer"),
])
def test_classification_report_validates(y_true, y_pred, snr, match):
    with pytest.raises(ValueError, match=match):
        classification_report(y_true, y_pred, snr, ["a", "b"])
