"""FCOS and the channel baselines on networks written by a user, not by this project.

The four networks below are defined here (not in fcos.models): a CNN+LSTM hybrid, a 2-D
VGG-style CNN on the (1, 2, L) I/Q plane, a depthwise-separable light CNN and a ResNet with a
concatenation. Checks are independent of the code under test: outputs are compared with the
original network's, MACs are counted by the hook counter written below, the pruned network is
rebuilt from the user's builder plus the record and compared output for output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcos.errors import ConfigError
from fcos.prune import prune_model
from fcos.prune.dependency.channels import example_frames, traced_channel_groups
from fcos.prune.user_model import load_pruned

LENGTH = 64
CLASSES = 4


# --- the user's networks -------------------------------------------------------------------

class CnnLstm(nn.Module):
    """CLDNN-like: two conv branches concatenated, an LSTM over time, a dense head."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 12, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(12)
        self.conv2 = nn.Conv1d(12, 12, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(12)
        self.side = nn.Conv1d(2, 6, 3, padding=1)
        self.lstm = nn.LSTM(18, 10, batch_first=True)
        self.fc1 = nn.Linear(10, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        a = F.relu(self.bn1(self.conv1(x)))
        a = F.relu(self.bn2(self.conv2(a)))
        features = torch.cat([a, torch.tanh(self.side(x))], dim=1)  # (B, 18, L)
        out, _ = self.lstm(F.max_pool1d(features, 2).transpose(1, 2))
        return self.fc2(F.relu(self.fc1(out[:, -1])))


def _vgg_stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, (2, 3), padding=(1, 1)), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, (2, 3), padding=(0, 1)),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d((1, 2)))


class Vgg2d(nn.Module):
    """VGG-style 2-D CNN on the I/Q plane: input (B, 2, L) viewed as (B, 1, 2, L)."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.features = nn.Sequential(_vgg_stage(1, 8), _vgg_stage(8, 16), _vgg_stage(16, 16))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 2 * (LENGTH // 8), 32),
                                  nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.head(self.features(x.unsqueeze(1)))


def _separable(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cin, 3, padding=1, groups=cin), nn.BatchNorm1d(cin),
                         nn.ReLU(), nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout), nn.ReLU())


class LightCnn(nn.Module):
    """Depthwise-separable light CNN (MobileNet-style), global pooling head."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU())
        self.blocks = nn.Sequential(_separable(16, 24), _separable(24, 24), _separable(24, 32))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class CatResNet(nn.Module):
    """1-D ResNet whose stream is concatenated with two side branches before the head."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, 16, 3, padding=1, bias=False), nn.BatchNorm1d(16),
                                  nn.ReLU())
        self.res1 = Residual(16)
        self.res2 = Residual(16)
        self.branch3 = nn.Conv1d(16, 8, 3, padding=1)
        self.branch5 = nn.Conv1d(16, 8, 5, padding=2)
        self.mix = nn.Conv1d(32, 24, 1)
        self.fc = nn.Linear(24 * (LENGTH // 4), num_classes)

    def forward(self, x):
        x = self.res2(self.res1(self.stem(x)))
        x = torch.cat([F.relu(self.branch3(x)), F.relu(self.branch5(x)), x], dim=1)
        x = F.avg_pool1d(F.relu(self.mix(x)), 4)
        return self.fc(x.flatten(1))


NETWORKS = {"cnn_lstm": CnnLstm, "vgg2d": Vgg2d, "light": LightCnn, "cat_resnet": CatResNet}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = NETWORKS[name]()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that fusing them is tested
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


class ToyData:
    """A prepared-dataset stand-in: class k is a tone of frequency k + 1 plus noise."""

    length = LENGTH
    num_classes = CLASSES

    def __init__(self, n: int = 96, seed: int = 0):
        rng = np.random.default_rng(seed)
        self._splits = {}
        for index, name in enumerate(("train", "val", "test")):
            y = rng.integers(0, CLASSES, n)
            t = np.arange(LENGTH) / LENGTH
            phase = rng.uniform(0, 2 * np.pi, (n, 1))
            angle = 2 * np.pi * (y[:, None] + 1) * t + phase
            x = np.stack([np.cos(angle), np.sin(angle)], axis=1)
            x = (x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)
            self._splits[name] = (x, y.astype(np.int64), np.zeros(n, dtype=np.int64))

    def split(self, name):
        return self._splits[name]


@pytest.fixture(scope="module")
def data():
    return ToyData()


# --- an independent MAC counter -------------------------------------------------------------

def hook_macs(model: nn.Module) -> int:
    """Multiply-accumulates for one (1, 2, LENGTH) input, counted with forward hooks here."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            kernel = math.prod(module.kernel_size)
            total[0] += output.numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features
        elif isinstance(module, nn.LSTM):
            batch, steps = inputs[0].shape[:2]
            hidden = module.hidden_size
            total[0] += batch * steps * 4 * hidden * (module.input_size + hidden)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 2, LENGTH))
    for handle in handles:
        handle.remove()
    return total[0]


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def frames(seed: int = 1, n: int = 8) -> torch.Tensor:
    return torch.randn(n, 2, LENGTH, generator=torch.Generator().manual_seed(seed))


# --- duplicated channels fuse exactly -------------------------------------------------------

def plant_duplicates(model: nn.Module) -> dict[str, int]:
    """Make channel 1 an exact copy of channel 0 in every group (every producer's row, bias
    and BatchNorm entries). Returns {group name: channels}."""
    groups = traced_channel_groups(model, example_frames(LENGTH))
    with torch.no_grad():
        for group in groups:
            for producer in group.producers:
                for name in (producer.module, producer.norm):
                    if name is None:
                        continue
                    module = model.get_submodule(name)
                    for tensor in (getattr(module, key, None) for key in
                                   ("weight", "bias", "running_mean", "running_var")):
                        if tensor is not None:
                            tensor[1] = tensor[0]
    return {group.name: group.channels for group in groups}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_fusing_duplicated_channels_keeps_outputs(name):
    model = build(name)
    widths = plant_duplicates(model)
    x = frames()
    before = outputs(model, x)
    result = prune_model("fcos-stage1", model, example_input=x, options={"threshold": 1e-9})
    after = outputs(result.model, x)
    assert torch.allclose(after, before, atol=1e-5, rtol=0), (after - before).abs().max()
    fused = {g["name"]: g["channels_after"] for g in result.record["groups"]}
    assert fused == {group: channels - 1 for group, channels in widths.items()}
    assert hook_macs(result.model) < hook_macs(model)


# --- MAC budgets, reloading, fine-tuning ----------------------------------------------------

CHANNEL_METHODS = ("fcos-stage1", "l1", "fpgm", "taylor", "random-channel")


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("method", CHANNEL_METHODS)
def test_budget_met_and_reload(name, method, data):
    model = build(name)
    x = frames()
    options = {"num_batches": 2, "batch_size": 16} if method == "taylor" else {}
    result = prune_model(method, model, example_input=x, data=data, budget=0.5, options=options)
    reduction = 1 - hook_macs(result.model) / hook_macs(model)
    assert 0.5 <= reduction <= 0.51 + 1e-9, reduction
    rebuilt = load_pruned(NETWORKS[name](), result.architecture, result.model.state_dict())
    assert torch.equal(outputs(rebuilt, x), outputs(result.model, x))
    assert outputs(model, x).shape == outputs(rebuilt, x).shape


@pytest.mark.parametrize("name", list(NETWORKS))
def test_pruned_network_fine_tunes(name, data):
    model = build(name)
    result = prune_model("fcos-stage1", model, data=data, budget=0.4)
    pruned = result.model.train()
    xs, ys, _ = data.split("train")
    xs, ys = torch.from_numpy(xs), torch.from_numpy(ys)
    optimizer = torch.optim.Adam(pruned.parameters(), lr=1e-2)
    torch.manual_seed(0)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(pruned(xs), ys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# --- LaCD on the user's blocks --------------------------------------------------------------

def test_lacd_finds_and_removes_shape_preserving_blocks(data):
    model = build("cat_resnet")
    result = prune_model("lacd", model, example_input=frames(), data=data,
                         options={"num_blocks": 1, "probe_steps": 20})
    points = [p["name"] for p in result.record["points"]]
    assert points == ["stem", "res1", "res2"]
    assert len(result.architecture["removed_blocks"]) == 1
    removed = next(iter(result.architecture["removed_blocks"]))
    assert isinstance(result.model.get_submodule(removed), nn.Identity)
    rebuilt = load_pruned(CatResNet(), result.architecture, result.model.state_dict())
    x = frames()
    assert torch.equal(outputs(rebuilt, x), outputs(result.model, x))


def test_lacd_on_stages_keeps_shape_changing_ones(data):
    model = build("vgg2d")
    result = prune_model("lacd", model, example_input=frames(), data=data,
                         blocks=["features.1", "features.2"], stem="features.0",
                         options={"num_blocks": 1, "probe_steps": 20})
    # every VGG stage halves the length: none can be replaced by the identity
    assert [p["removable"] for p in result.record["points"][1:]] == [False, False]
    with pytest.raises(ConfigError, match="no residual blocks|cannot be removed|removable"):
        prune_model("lacd", build("light"), example_input=frames(), data=data,
                    blocks=[], options={"num_blocks": 1})


# --- what cannot be followed is refused, by name ----------------------------------------------

class ChannelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 3, padding=1)
        self.out = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        x = self.conv(x)
        b, c, t = x.shape
        x = x.view(b, 2, c // 2, t).transpose(1, 2).reshape(b, c, t)  # mixes channel order
        return self.fc(self.out(x).mean(dim=2))


class ChannelEinsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 3, padding=1)
        self.mixer = nn.Parameter(torch.randn(8, 8))
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        return self.fc(torch.einsum("bct,dc->bdt", self.conv(x), self.mixer).mean(dim=2))


@pytest.mark.parametrize("network, names", [(ChannelShuffle, "reshape"),
                                            (ChannelEinsum, "einsum")])
def test_channel_mixing_is_refused_by_name(network, names):
    model = network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=names):
        prune_model("l1", model, example_input=frames(), budget=0.3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_example_input_is_refused():
    with pytest.raises(ConfigError, match=r"example_input: expected a tensor \(N, 2, L\)"):
        prune_model("l1", build("light"), example_input=torch.zeros(1, 1, 2, LENGTH),
                    budget=0.3)
