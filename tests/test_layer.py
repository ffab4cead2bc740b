"""Layer-pruning baselines (lcp, sr-init, random-layer): budget, determinism, train/save/reload."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fcos.checkpoint import model_from_checkpoint
from fcos.errors import ConfigError
from fcos.io import load_checkpoint, save_checkpoint
from fcos.metrics import macs_and_params
from fcos.models import build_model
from fcos.prune import prune_model
from fcos.prune.blocks import inspect_blocks
from fcos.prune.layer import reinitialisation_drops

LAYER_PRUNERS = ("lcp", "sr-init", "random-layer")
# Per-method options that keep each run to about a second on one core.
OPTIONS = {"lcp": {"max_train": 150, "max_val": 80, "probe_steps": 50},
           "sr-init": {"val_samples": 24},
           "random-layer": {}}
# CNN1D's removable stacks hold only ~17% of its MACs (stacks.0 is kept), so its budget is lower.
BUDGETS = {"cnn1d": 0.1, "resnet56": 0.3}


@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data




@pytest.fixture(scope="module")
def pruned_twice(data, base_models):
    """{(method, model): (result, result of an identical second run)}."""
    runs = {}
    for method in LAYER_PRUNERS:
        for name, model in base_models.items():
            runs[method, name] = tuple(
                prune_model(method, model, model_name=name, budget=BUDGETS[name], data=data, seed=0,
                            options=OPTIONS[method]) for _ in range(2))
    return runs


@pytest.mark.parametrize("name", sorted(BUDGETS))
@pytest.mark.parametrize("method", LAYER_PRUNERS)
def test_meets_budget_at_block_granularity_deterministically(pruned_twice, base_models, method, name):
    result, again = pruned_twice[method, name]
    selection = result.record["selection"]
    base_macs, _ = macs_and_params(base_models[name], 128)
    macs, params = macs_and_params(result.model, 128)
    assert selection["removed"] and macs < base_macs
    assert selection["macs_before"] == base_macs
    assert (selection["macs_after"], selection["params_after"]) == (macs, params)
    assert selection["achieved_reduction"] == pytest.approx(1 - macs / base_macs)
    assert selection["gap"] == pytest.approx(selection["achieved_reduction"] - BUDGETS[name])
    # closest achievable: off by less than one block of the ranking from the target
    largest = max(i.saved_macs for i in inspect_blocks(base_models[name]) if i.removable)
    assert abs(selection["gap"]) * base_macs <= largest
    assert set(result.architecture["removed_blocks"]) == set(selection["removed"])
    assert [r["name"] for r in result.record["ranking"]] == [r["name"] for r in again.record["ranking"]]
    assert again.architecture == result.architecture
    weights, weights_again = result.model.state_dict(), again.model.state_dict()
    assert weights.keys() == weights_again.keys()
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)


@pytest.mark.parametrize("name", sorted(BUDGETS))
@pytest.mark.parametrize("method", LAYER_PRUNERS)
def test_pruned_model_trains_saves_and_reloads(pruned_twice, data, tmp_path, method, name):
    model = copy.deepcopy(pruned_twice[method, name][0].model)
    x, y, _ = data.split("train")
    xb, yb = torch.as_tensor(x[:16]), torch.as_tensor(y[:16])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    optimizer.step()
    model.eval()
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, {"state_dict": model.state_dict(),
                           "model": {"name": name, "num_classes": 11, "length": 128},
                           "architecture": pruned_twice[method, name][0].architecture})
    rebuilt = model_from_checkpoint(load_checkpoint(path))
    with torch.no_grad():
        assert torch.equal(rebuilt(xb), model(xb))


def test_inputs_are_not_modified(pruned_twice, base_models):
    torch.manual_seed(0)
    fresh = build_model("resnet56", 11, 128)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in base_models["resnet56"].state_dict().items())


def test_rankings_follow_their_scores(pruned_twice):
    lcp = pruned_twice["lcp", "resnet56"][0].record
    steps = {p["name"]: p["step_gain"] for p in lcp["probe_report"]["points"]}
    assert [r["score"] for r in lcp["ranking"]] == sorted(steps[r["name"]] for r in lcp["ranking"])
    sr = pruned_twice["sr-init", "resnet56"][0].record
    assert [r["score"] for r in sr["ranking"]] == sorted(r["score"] for r in sr["ranking"])
    # accuracies on 24 frames: the base accuracy and every drop are whole counts of frames / 24
    assert sr["val_samples"] == 24
    for value in [sr["base_accuracy"]] + [r["score"] for r in sr["ranking"]]:
        assert value * 24 == pytest.approx(round(value * 24), abs=1e-9), value
    assert len(sr["ranking"]) == 25  # every removable block of ResNet56 was re-initialised


def test_random_layer_depends_on_the_seed(base_models):
    picks = {prune_model("random-layer", base_models["resnet56"], model_name="resnet56", budget=0.3,
                         data=None, seed=seed).record["selection"]["removed"][0] for seed in range(6)}
    assert len(picks) > 1


def test_reinitialisation_is_undone(data, base_models):
    model = copy.deepcopy(base_models["cnn1d"])
    before = copy.deepcopy(model.state_dict())
    x, y, _ = data.split("val")
    rng_state = torch.get_rng_state()
    base, drops = reinitialisation_drops(model, ["stacks.1", "stacks.3"], x[:16], y[:16], seed=0,
                                         batch_size=16, device=torch.device("cpu"))
    assert set(drops) == {"stacks.1", "stacks.3"}
    with torch.no_grad():  # the base accuracy is the model's own on these frames, counted here
        correct = (model.eval()(torch.from_numpy(x[:16])).argmax(dim=1).numpy() == y[:16]).sum()
    assert base == pytest.approx(correct / 16, abs=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_state)


@pytest.mark.parametrize("method", LAYER_PRUNERS)
def test_needs_a_budget_and_known_options(base_models, data, method):
    with pytest.raises(ConfigError, match="budget"):
        prune_model(method, base_models["cnn1d"], model_name="cnn1d", budget=None, data=data)
    with pytest.raises(ConfigError, match="unknown option"):
        prune_model(method, base_models["cnn1d"], model_name="cnn1d", budget=0.1, data=data,
                    options={"no_such_option": 1})


def test_zero_budget_removes_nothing(base_models, data):
    result = prune_model("random-layer", base_models["cnn1d"], model_name="cnn1d", budget=0.0, data=data)
    assert result.record["selection"]["removed"] == [] and result.architecture == {}
