"""The dataflow analysis (fcos.prune.dependency) finds, for the three built-in models, exactly
the channel groups written by hand in fcos.prune.groups and the blocks/stem the models declare."""

from __future__ import annotations

import pytest
import torch

from fcos.models import build_model
from fcos.prune.dependency.channels import example_frames, traced_channel_groups
from fcos.prune.dependency.stages import find_probe_points
from fcos.prune.fusion import fuse_channels
from fcos.prune.groups import channel_groups

LENGTHS = {"cnn1d": 128, "resnet56": 128, "signet50": 32}


def _as_sets(groups):
    return {(g.kind, g.channels, frozenset(g.producers), frozenset(g.consumers)) for g in groups}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(name, 5, length) for name, length in LENGTHS.items()}


@pytest.mark.parametrize("name", list(LENGTHS))
def test_traced_groups_equal_the_hand_written_ones(models, name):
    model = models[name]
    hand = channel_groups(model, name)
    traced = traced_channel_groups(model, example_frames(LENGTHS[name]))
    assert len(traced) == len(hand)
    assert _as_sets(traced) == _as_sets(hand)
    # (the order of the groups may differ: built-in models keep using the hand-written list)


@pytest.mark.parametrize("name", list(LENGTHS))
def test_traced_groups_of_a_fused_model(models, name):
    # narrowed layers (other widths per group) are followed as well
    fused, _ = fuse_channels(models[name], name, ratio=0.5, length=LENGTHS[name])
    assert _as_sets(traced_channel_groups(fused, example_frames(LENGTHS[name]))) == \
        _as_sets(channel_groups(fused, name))


@pytest.mark.parametrize("name", list(LENGTHS))
def test_probe_points_equal_the_declared_ones(models, name):
    points = find_probe_points(models[name], LENGTHS[name])
    assert list(points.blocks) == models[name].removable_blocks()
    assert points.stem == models[name].stem_name


def test_stream_names_follow_the_blocks(models):
    names = [g.name for g in traced_channel_groups(models["resnet56"], example_frames(128))
             if g.kind == "stream"]
    assert names == ["layer1.stream", "layer2.stream", "layer3.stream"]
