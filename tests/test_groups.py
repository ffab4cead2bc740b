"""Channel groups: names, kinds, widths, and that every coupled tensor is covered exactly once."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch import nn

from fcos.errors import ConfigError
from fcos.models import build_model
from fcos.prune.fusion import fuse_channels
from fcos.prune.groups import channel_groups
from fcos.prune.surgery import replace_module

LENGTHS = {"cnn1d": 128, "resnet56": 128, "signet50": 32}
# Layers reading the network input (fixed channels) and the classifiers (fixed outputs).
READS_INPUT = {"cnn1d": {"stacks.0.conv1"}, "resnet56": {"stem.conv"}, "signet50": {"stem.conv"}}
CLASSIFIER = {"cnn1d": "classifier", "resnet56": "fc", "signet50": "fc"}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(name, 5, length) for name, length in LENGTHS.items()}


@pytest.mark.parametrize("name, total, streams", [
    ("cnn1d", 19, ["stacks.0.stream", "stacks.1.stream", "stacks.2.stream", "stacks.3.stream",
                   "stacks.4.stream", "stacks.5.stream"]),
    ("resnet56", 30, ["layer1.stream", "layer2.stream", "layer3.stream"]),
    ("signet50", 37, ["layer1.stream", "layer2.stream", "layer3.stream", "layer4.stream"]),
])
def test_names_and_kinds(models, name, total, streams):
    groups = channel_groups(models[name], name)
    assert len(groups) == total == len({g.name for g in groups})
    assert [g.name for g in groups if g.kind == "stream"] == streams
    assert all(len(g.producers) == 1 for g in groups if g.kind == "inner")
    by_name = {g.name: g for g in groups}
    if name == "resnet56":
        assert [g.channels for g in groups if g.kind == "stream"] == [16, 32, 64]
        assert by_name["layer1.stream"].producers[0].module == "stem.conv"
        assert len(by_name["layer1.stream"].producers) == 10
        assert by_name["layer2.stream"].producers[0].module == "layer2.0.downsample"
        assert "layer2.0.downsample" in [c.module for c in by_name["layer1.stream"].consumers]
    if name == "cnn1d":
        dense = [c for c in by_name["stacks.5.stream"].consumers if c.module == "dense"]
        assert dense[0].block == LENGTHS["cnn1d"] // 64
        assert by_name["dense"].channels == 128
    if name == "signet50":
        assert by_name["stem"].kind == "inner"
        assert [g.channels for g in groups if g.kind == "stream"] == [256, 512, 1024, 2048]


@pytest.mark.parametrize("name", list(LENGTHS))
def test_every_coupled_tensor_is_covered_once(models, name):
    model = models[name]
    groups = channel_groups(model, name)
    produced = Counter(p.module for g in groups for p in g.producers)
    consumed = Counter(c.module for g in groups for c in g.consumers)
    layers = {n: m for n, m in model.named_modules()
              if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) or hasattr(m, "mapping")}
    assert set(produced) == set(layers) - {CLASSIFIER[name]}
    assert set(consumed) == set(layers) - READS_INPUT[name]
    assert max(produced.values()) == max(consumed.values()) == 1
    for group in groups:
        for producer in group.producers:
            module = model.get_submodule(producer.module)
            rows = module.mapping.shape[0] if hasattr(module, "mapping") else module.weight.shape[0]
            assert rows == group.channels
            if producer.norm:
                assert model.get_submodule(producer.norm).num_features == group.channels
        for consumer in group.consumers:
            module = model.get_submodule(consumer.module)
            columns = (module.mapping.shape[1] if hasattr(module, "mapping")
                       else module.weight.shape[1])
            assert columns == group.channels * consumer.block


def test_removed_blocks_pass_channels_through(models):
    resnet = copy.deepcopy(models["resnet56"])
    replace_module(resnet, "layer1.3", nn.Identity())
    groups = {g.name: g for g in channel_groups(resnet, "resnet56")}
    assert "layer1.3.conv1" not in groups
    assert "layer1.4.conv1" in [c.module for c in groups["layer1.stream"].consumers]
    assert "layer1.3.conv2" not in [p.module for p in groups["layer1.stream"].producers]

    cnn = copy.deepcopy(models["cnn1d"])
    replace_module(cnn, "stacks.2", nn.MaxPool1d(2, 2))  # what LaCD leaves for a removed stack
    groups = {g.name: g for g in channel_groups(cnn, "cnn1d")}
    assert "stacks.2.stream" not in groups
    assert "stacks.3.conv1" in [c.module for c in groups["stacks.1.stream"].consumers]
    fused, _ = fuse_channels(cnn, "cnn1d", ratio=0.5, length=128)
    assert fused(torch.randn(2, 2, 128)).shape == (2, 5)


def test_unknown_model_or_block_type(models):
    with pytest.raises(ConfigError, match="resnet57"):
        channel_groups(models["resnet56"], "resnet57")
    cnn = copy.deepcopy(models["cnn1d"])
    replace_module(cnn, "stacks.1", nn.Conv1d(32, 32, 1))
    with pytest.raises(ConfigError, match="stacks.1"):
        channel_groups(cnn, "cnn1d")
