"""FCOS stage 1: exact fusion of duplicate channels, shapes and costs, budgets, options.

Exactness: channel j is made a copy of channel i at every producer of its group (weights, bias,
BatchNorm parameters and statistics, shortcut-map rows) while consumers keep arbitrary weights
for both; the fused network (consumer slices summed) must compute the same function.
"""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from fcos.checkpoint import model_from_checkpoint
from fcos.errors import ConfigError
from fcos.metrics import macs_and_params
from fcos.models import build_model
from fcos.models.resnet56 import PoolPadShortcut
from fcos.prune import PRUNERS, prune_model
from fcos.prune.fusion import assignment_from_merges, cluster_tree, fuse_channels
from fcos.prune.groups import ChannelGroup, Consumer, Producer, channel_groups
from fcos.prune.surgery import reduce_channels, replace_module

EXACT = dict(threshold=1e-6)  # merges exact duplicates (distance ~1e-16) and nothing else


def _build(name: str, length: int, num_classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, num_classes, length)


#: The last BatchNorm of each residual branch.
RESIDUAL_NORM = {"resnet56": ".bn2", "signet50": ".bn3"}


@torch.no_grad()
def _realistic_norms(model: nn.Module, name: str, length: int, seed: int = 1) -> None:
    """Random BN affine parameters, running statistics of one batch, small residual branches.

    The last BN of each residual branch is scaled down, as in trained ResNets, so that the
    residual streams (and with them float32 rounding) stay moderate.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for _, norm in norms:
        norm.weight.copy_(torch.rand(norm.num_features, generator=gen) + 0.5)
        norm.bias.copy_(0.1 * torch.randn(norm.num_features, generator=gen))
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch gives its exact statistics
    model.train()(torch.randn(16, 2, length, generator=gen))
    for norm_name, norm in norms:
        norm.momentum = 0.1
        if norm_name.startswith("layer") and norm_name.endswith(RESIDUAL_NORM.get(name, "-")):
            norm.weight.mul_(0.25)
    model.eval()


@torch.no_grad()
def _duplicate(model: nn.Module, group: ChannelGroup, pairs: list[tuple[int, int]]) -> None:
    """Make channel dst a copy of channel src at every producer of ``group``."""
    for src, dst in pairs:
        for producer in group.producers:
            module = model.get_submodule(producer.module)
            if getattr(module, "mapping", None) is not None:
                module.mapping[dst] = module.mapping[src]
                continue
            module.weight[dst] = module.weight[src]
            if module.bias is not None:
                module.bias[dst] = module.bias[src]
            if producer.norm:
                norm = model.get_submodule(producer.norm)
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(norm, key)[dst] = getattr(norm, key)[src]


def _with_duplicates(name: str, length: int, low: bool) -> tuple[nn.Module, dict[str, int]]:
    """A model where every group has C // 8 duplicate pairs; returns it and channels expected.

    ``low``: pairs (0, 1), (2, 3), ...; else at the top end. In ResNet56's stage-2/3 streams the
    top half is the shortcut's zero-padding (map rows 0, copying changes nothing); the low pairs
    copy map rows, so stage-2 channel 1 then carries stage-1 channel 0's mean, like channel 0.
    """
    model = _build(name, length)
    _realistic_norms(model, name, length)
    expected = {}
    for group in channel_groups(model, name):
        count = max(1, group.channels // 8)
        top = group.channels - 2
        pairs = [(2 * k, 2 * k + 1) if low else (top - 2 * k, top - 2 * k + 1)
                 for k in range(count)]
        _duplicate(model, group, pairs)
        expected[group.name] = group.channels - count
    return model, expected


def _round_trip(model: nn.Module, name: str, length: int) -> nn.Module:
    """Save as a checkpoint payload, load with weights_only=True, rebuild from the record."""
    buffer = io.BytesIO()
    torch.save({"format": "fcos-checkpoint/1", "state_dict": model.state_dict(),
                "model": {"name": name, "num_classes": 5, "length": length},
                "architecture": {"resized": True}}, buffer)
    buffer.seek(0)
    return model_from_checkpoint(torch.load(buffer, weights_only=True))


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a.eval()(x) - b.eval()(x)).abs().max().item()


# --- the generalised ResNet56 shortcut --------------------------------------------------------

def test_shortcut_map_is_bitwise_zero_padding():
    model = _build("resnet56", 64)
    legacy = copy.deepcopy(model)
    for stage in ("layer2", "layer3"):
        replace_module(legacy, f"{stage}.0.downsample", PoolPadShortcut())
    x = torch.randn(4, 2, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), legacy.eval()(x))
    mapping = model.layer2[0].downsample.mapping
    assert torch.equal(mapping, torch.eye(32, 16)) and not mapping.requires_grad
    assert "layer3.0.downsample.mapping" in model.state_dict()
    assert all("mapping" not in name for name, _ in model.named_parameters())
    assert macs_and_params(model, 64) == macs_and_params(legacy, 64)
    # a routing map (copy) costs nothing, any other map is a dense (C_out x C_in) product
    shortcut = PoolPadShortcut(in_channels=4, out_channels=6)
    inputs, output = (torch.zeros(1, 4, 2, 3), 6), torch.zeros(1, 6, 1, 1)
    assert shortcut.count_macs(inputs, output) == 0
    shortcut.mapping[5, 1] = 0.5
    assert shortcut.count_macs(inputs, output) == 24


def test_checkpoint_without_map_loads_as_zero_padding():
    model = _build("resnet56", 64)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("mapping")}
    model.layer3[0].downsample.mapping.fill_(7.0)
    model.load_state_dict(state)
    assert torch.equal(model.layer3[0].downsample.mapping, torch.eye(64, 32))


# --- exactness --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, low", [("cnn1d", False), ("resnet56", False), ("resnet56", True)])
def test_fusing_duplicates_is_exact(name, low):
    length = 128
    model, expected = _with_duplicates(name, length, low)
    fused, record = fuse_channels(model, name, length=length, **EXACT)
    assert {g["name"]: g["channels_after"] for g in record["groups"]} == expected
    assert record["macs_after"] < record["macs_before"]
    assert record["params_after"] < record["params_before"]
    x = 10 * torch.randn(8, 2, length, generator=torch.Generator().manual_seed(2))
    assert _max_diff(model, fused, x) <= 1e-4
    # in float64 the fusion is exact up to rounding
    model64 = copy.deepcopy(model).double()
    fused64, _ = fuse_channels(model64, name, length=length, **EXACT)
    assert _max_diff(model64, fused64, x.double()) <= 1e-9


def test_fusing_duplicates_is_exact_signet50():
    length = 32
    model, expected = _with_duplicates("signet50", length, low=False)
    model64 = copy.deepcopy(model).double()
    fused64, record = fuse_channels(model64, "signet50", length=length, **EXACT)
    assert {g["name"]: g["channels_after"] for g in record["groups"]} == expected
    assert record["macs_after"] < record["macs_before"]
    x = torch.randn(4, 2, length, generator=torch.Generator().manual_seed(2))
    assert _max_diff(model64, fused64, x.double()) <= 1e-9
    # the same fused weights in float32 (fusing the float32 model computes them identically)
    fused = copy.deepcopy(fused64).float()
    assert _max_diff(model, fused, x) <= 1e-4
    assert _max_diff(_round_trip(fused, "signet50", length), fused, x) == 0


# --- the channel-editing primitive ------------------------------------------------------------

def _tiny(gammas: tuple[float, ...] = (1.5, -0.7, 0.3, 2.0)) -> tuple[nn.Sequential, ChannelGroup]:
    """conv (3 -> 4, bias) -> BN(4) -> conv (4 -> 2); the 4 channels form one group."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Conv1d(4, 2, 1))
    with torch.no_grad():
        norm = model[1]
        norm.weight.copy_(torch.tensor(gammas))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
        norm.running_mean.copy_(torch.tensor([0.5, -1.0, 0.2, 0.0]))
        norm.running_var.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    group = ChannelGroup("g", "inner", 4, (Producer("0", "1"),), (Consumer("2"),))
    return model.eval(), group


@pytest.mark.parametrize("gammas", [(1.5, -0.7, 0.3, 2.0), (0.0, 0.0, 0.0, 2.0)])
def test_bn_merge_is_mean_of_members_affine_maps(gammas):
    model, group = _tiny(gammas)
    x = torch.randn(5, 3, 7)
    with torch.no_grad():
        before = model[1](model[0](x))
        fused = reduce_channels(copy.deepcopy(model), group, np.array([0, 0, 0, 1]))
        after = fused[1](fused[0](x))
    assert after.shape == (5, 2, 7)
    # members 0..2 have gammas of both signs: the fused channel is their mean map
    torch.testing.assert_close(after[:, 0], before[:, :3].mean(dim=1), rtol=1e-5, atol=1e-6)
    # singleton: copied verbatim
    assert torch.equal(fused[0].weight[1], model[0].weight[3])
    assert torch.equal(fused[1].running_var[1], model[1].running_var[3])
    assert fused[1].running_var.min() >= 0 and fused[1].weight[0] >= 0


def test_select_keeps_representatives_and_drops_the_rest():
    model, group = _tiny()
    # channels 0 and 2 are kept (2 represents cluster {2, 3}); 1 is dropped (-1)
    selected = reduce_channels(copy.deepcopy(model), group, [0, -1, 1, 1], mode="select")
    assert torch.equal(selected[0].weight, model[0].weight[[0, 2]])
    assert torch.equal(selected[1].running_mean, model[1].running_mean[[0, 2]])
    assert torch.equal(selected[2].weight, model[2].weight[:, [0, 2]])
    with pytest.raises(ValueError, match="cluster ids"):
        reduce_channels(copy.deepcopy(model), group, [0, -1, 1, 1], mode="fuse")
    with pytest.raises(ValueError, match="without gaps"):
        reduce_channels(copy.deepcopy(model), group, [0, 2, 2, 2])


# --- shapes, costs, training, checkpoints ----------------------------------------------------

@pytest.mark.parametrize("name, ratio, linkage", [("resnet56", 0.5, "average"),
                                                   ("cnn1d", 0.3, "ward")])
def test_keep_ratio_shapes_costs_and_round_trip(name, ratio, linkage):
    length = 128
    model = _build(name, length)
    fused, record = fuse_channels(model, name, ratio=ratio, linkage=linkage, length=length)
    groups = channel_groups(model, name)
    for group, entry in zip(groups, record["groups"]):
        keep = max(1, int(np.floor(ratio * group.channels + 0.5)))
        assert entry["channels_after"] == keep == len(entry["cluster_sizes"])
        assert sum(entry["cluster_sizes"]) == group.channels
        for producer in group.producers:
            module = fused.get_submodule(producer.module)
            rows = module.mapping.shape[0] if hasattr(module, "mapping") else module.weight.shape[0]
            assert rows == keep == record["layers"][producer.module]["out"][1]
        for consumer in group.consumers:
            assert record["layers"][consumer.module]["in"][1] == keep * consumer.block
    assert json.loads(json.dumps(record)) == record
    macs, params = macs_and_params(fused, length)
    assert (record["macs_after"], record["params_after"]) == (macs, params)
    assert (record["macs_before"], record["params_before"]) == macs_and_params(model, length)
    assert macs < record["macs_before"] and params < record["params_before"]
    assert all(type(m) in (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm2d)
               for m in fused.modules() if next(m.parameters(recurse=False), None) is not None)

    fused.train()
    logits = fused(torch.randn(4, 2, length))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fused.parameters())

    rebuilt = _round_trip(fused, name, length)
    x = torch.randn(3, 2, length)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), fused.eval()(x))
    assert macs_and_params(rebuilt, length) == (macs, params)


@pytest.mark.parametrize("name", ["resnet56", "cnn1d"])
@pytest.mark.parametrize("target", [0.3, 0.6])
def test_global_mac_budget_is_met(name, target):
    model = _build(name, 128)
    result = prune_model("fcos-stage1", model, model_name=name, budget=target)
    reduction = result.record["macs_reduction"]
    assert target <= reduction <= target + 0.02
    assert result.architecture == {"resized": True}
    macs, _ = macs_and_params(result.model, 128)
    assert reduction == pytest.approx(1 - macs / macs_and_params(model, 128)[0])


def test_stream_inner_and_skip_leave_groups_whole():
    model = _build("resnet56", 64)
    _, record = fuse_channels(model, "resnet56", ratio=0.5, stream="inner", skip=["layer1.0.conv1"],
                              length=64)
    for entry in record["groups"]:
        untouched = entry["kind"] == "stream" or entry["name"] == "layer1.0.conv1"
        assert (entry["status"] == "skipped") == untouched
        assert (entry["channels_after"] == entry["channels_before"]) == untouched
    with pytest.raises(ConfigError, match="not reachable"):
        fuse_channels(model, "resnet56", target_macs_reduction=0.99, stream="inner", length=64)


def test_deterministic():
    model = _build("cnn1d", 128)
    runs = [fuse_channels(model, "cnn1d", target_macs_reduction=0.4, length=128) for _ in range(2)]
    (first, record1), (second, record2) = runs
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    for record in (record1, record2):
        record.pop("clustering_seconds")
        for entry in record["groups"]:
            entry.pop("clustering_seconds")
    assert record1 == record2
    assert all(torch.equal(v, _build("cnn1d", 128).state_dict()[k])
               for k, v in model.state_dict().items())  # the input model is left as it was


def test_cluster_tree_units_and_cut():
    vectors = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.0, 0.0]])
    for linkage in ("average", "complete", "single", "ward"):
        tree = cluster_tree(vectors, linkage)
        assert np.all(np.diff(tree[:, 2]) >= 0)
        # the first merge is the closest pair, at their cosine distance in every linkage
        assert tree[0, 2] == pytest.approx(1 - 1 / np.sqrt(1.01))
    assert assignment_from_merges(tree, 0).tolist() == [0, 1, 2, 3]
    assert assignment_from_merges(tree, 1).tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("options, key", [
    (dict(ratio=1.5), "ratio"),
    (dict(ratio=0), "ratio"),
    (dict(ratio=0.5, threshold=0.1), "exactly one"),
    (dict(), "exactly one"),
    (dict(threshold=-1), "threshold"),
    (dict(target_macs_reduction=1.0), "target_macs_reduction"),
    (dict(ratio=0.5, linkage="median"), "linkage"),
    (dict(ratio=0.5, stream="both"), "stream"),
    (dict(ratio=0.5, skip=["layer9.stream"]), "skip"),
    (dict(ratio=0.5, skip="layer1.stream"), "skip"),
])
def test_invalid_options(options, key):
    with pytest.raises(ConfigError, match=key) as err:
        fuse_channels(_build("resnet56", 16), "resnet56", length=16, **options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("budget, options, key", [
    (0.5, {"keep": 0.5}, "keep"),
    (0.5, {"keep_ratio": 0.5}, "keep_ratio"),
    (None, {}, "budget"),
    (None, {"keep_ratio": 0.5, "linkage": "centroid"}, "linkage"),
    (None, {"keep_ratio": 2}, "keep_ratio="),
])
def test_method_options(budget, options, key):
    assert "fcos-stage1" in PRUNERS
    with pytest.raises(ConfigError, match=key) as err:
        prune_model("fcos-stage1", _build("cnn1d", 64), model_name="cnn1d", budget=budget,
                    options=options)
    assert "\n" not in str(err.value)


def test_fuse_linear_false_leaves_cnn1d_dense_whole():
    from fcos.prune import prune_model

    torch.manual_seed(0)
    model = build_model("cnn1d", 11, 128).eval()
    both = prune_model("fcos-stage1", model, model_name="cnn1d", options={"keep_ratio": 0.5})
    conv_only = prune_model("fcos-stage1", model, model_name="cnn1d",
                            options={"keep_ratio": 0.5, "fuse_linear": False})
    assert both.model.dense.out_features == 64
    assert conv_only.model.dense.out_features == 128
    assert conv_only.model.stacks[1].conv2.out_channels == 16
