"""Every pruner of the comparison, through prune_model, on a user's network.

CatResNet (tests/test_user_networks.py: a 1-D ResNet with a concatenation, not in the registry)
is pruned by the FCOS chain (stage 1 then LaCD, as chains.yaml runs it), every channel baseline
and every layer baseline. MACs are counted by the test's own hook counter; the pruned network
is rebuilt from a fresh CatResNet() plus the record (load_pruned) and must give equal outputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcos.prune import prune_model
from fcos.prune.chains import step_budget
from fcos.prune.user_model import load_pruned
from test_user_networks import CatResNet, ToyData, build, frames, hook_macs, outputs

CHANNEL = ("l1", "fpgm", "taylor", "random-channel")
LAYER = ("lcp", "sr-init", "random-layer")
OPTIONS = {"taylor": {"num_batches": 2, "batch_size": 16},
           "slimming": {"sparsity_epochs": 1, "max_batches": 2},
           "lcp": {"probe_steps": 20}, "lacd": {"probe_steps": 20}}


@pytest.fixture(scope="module")
def data():
    return ToyData()


def without(model: nn.Module, block: str) -> nn.Module:
    """A copy of ``model`` with ``block`` replaced by the identity (by hand, for reference MACs)."""
    import copy

    model = copy.deepcopy(model)
    setattr(model, block, nn.Identity())
    return model


def check_reloads(result) -> None:
    rebuilt = load_pruned(CatResNet(), result.architecture, result.model.state_dict())
    x = frames()
    assert torch.equal(outputs(rebuilt, x), outputs(result.model, x))


@pytest.mark.parametrize("method", CHANNEL)
def test_channel_baselines_meet_the_budget(method, data):
    model = build("cat_resnet")
    result = prune_model(method, model, example_input=frames(), data=data, budget=0.5,
                         options=OPTIONS.get(method, {}))
    reduction = 1 - hook_macs(result.model) / hook_macs(model)
    assert 0.5 <= reduction <= 0.51 + 1e-9, reduction
    check_reloads(result)


def test_slimming_needs_batchnorm_after_every_pruned_conv(data):
    """Network slimming ranks channels by BatchNorm scales: refused, by layer name, on
    CatResNet (its branch convs have none); on the depthwise-separable CNN it meets the budget."""
    from fcos.errors import ConfigError
    from test_user_networks import LightCnn

    with pytest.raises(ConfigError, match="branch3"):
        prune_model("slimming", build("cat_resnet"), example_input=frames(), data=data, budget=0.5,
                    options=OPTIONS["slimming"])
    model = build("light")
    result = prune_model("slimming", model, example_input=frames(), data=data, budget=0.5,
                         options=OPTIONS["slimming"])
    assert 0.5 <= 1 - hook_macs(result.model) / hook_macs(model) <= 0.51 + 1e-9
    rebuilt = load_pruned(LightCnn(), result.architecture, result.model.state_dict())
    assert torch.equal(outputs(rebuilt, frames()), outputs(result.model, frames()))


@pytest.mark.parametrize("method", LAYER)
def test_layer_baselines_meet_a_reachable_budget(method, data):
    model = build("cat_resnet")
    base = hook_macs(model)
    one_block = 1 - hook_macs(without(model, "res1")) / base  # removing either block costs this
    result = prune_model(method, model, example_input=frames(), data=data, budget=one_block - 0.005,
                         options={k: v for k, v in OPTIONS.get(method, {}).items()
                                  if method == "lcp"})
    reduction = 1 - hook_macs(result.model) / base
    assert abs(reduction - one_block) < 1e-9, (reduction, one_block)
    assert len(result.architecture["removed_blocks"]) == 1
    check_reloads(result)


def test_fcos_chain_stage1_then_lacd(data):
    """The chain as the pipeline runs it: fusion to its share of the budget, LaCD for the rest
    (its budget restated against its own input, as fcos.api.prune_checkpoint does)."""
    model = build("cat_resnet")
    base = hook_macs(model)
    budget = 1 - hook_macs(without(model, "res1")) / base + 0.05
    stage1 = prune_model("fcos-stage1", model, example_input=frames(), data=data,
                         budget=step_budget("fcos", 1, budget))
    after1 = hook_macs(stage1.model)
    assert 1 - after1 / base >= step_budget("fcos", 1, budget)
    check_reloads(stage1)
    vs_input = max(0.0, 1 - (1 - budget) * base / after1)
    final = prune_model("lacd", stage1.model, example_input=frames(), data=data, budget=vs_input,
                        options={**OPTIONS["lacd"], "architecture": stage1.architecture})
    reduction = 1 - hook_macs(final.model) / base
    assert reduction >= 1 - after1 / base - 1e-9
    assert abs(reduction - budget) <= 0.01 or final.record["selection"].get("off_target"), \
        (reduction, budget, final.record["selection"])
    check_reloads(final)
