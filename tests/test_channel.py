"""Channel-pruning baselines (l1, fpgm, slimming, taylor, random-channel).

Budget accuracy, real narrower layers, train/save/reload, determinism, options, the MAC width
model, and agreement with Torch-Pruning (an independent engine) on CNN1D.
"""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from fcos.checkpoint import model_from_checkpoint
from fcos.errors import ConfigError
from fcos.metrics import macs_and_params
from fcos.models import build_model
from fcos.prune import PRUNERS as REGISTERED, load_pruners, prune_model
from fcos.prune.chains import chain_steps, method_family
from fcos.prune.channel_selection import kept_channels, select_channels
from fcos.prune.importance import CRITERIA, ScoringContext, group_importance, taylor_scores
from fcos.prune.width_cost import WidthCostModel
from fcos.prune.groups import channel_groups

CHANNEL_PRUNERS = ("l1", "fpgm", "slimming", "taylor", "random-channel")
# Per-method options that keep each data-dependent run to about a second on one core.
OPTIONS = {"slimming": {"sparsity_epochs": 1, "max_batches": 2, "batch_size": 16},
           "taylor": {"num_batches": 2, "batch_size": 16}}
BUDGETS = (0.3, 0.6)
#: Every method on CNN1D and ResNet56, except slimming on CNN1D (no BatchNorm: refused).
CASES = [(method, name) for name in ("cnn1d", "resnet56") for method in CHANNEL_PRUNERS
         if (method, name) != ("slimming", "cnn1d")]
LENGTH = 128
CLASSES = 11


@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data




def _prune(method, model, name, budget, data, seed=0, **options):
    return prune_model(method, model, model_name=name, budget=budget, data=data, seed=seed,
                       options={**OPTIONS.get(method, {}), **options})


@pytest.fixture(scope="module")
def pruned(data, base_models):
    """{(method, model, budget): PruneResult}; checks on the way that the input is untouched."""
    results = {}
    for method, name in CASES:
        before = copy.deepcopy(base_models[name].state_dict())
        for budget in BUDGETS:
            results[method, name, budget] = _prune(method, base_models[name], name, budget, data)
        after = base_models[name].state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), f"{method} changed its input"
    return results


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- budget and structure ----------------------------------------------------------------------

@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("method,name", CASES)
def test_meets_budget_with_real_narrower_layers(pruned, base_models, method, name, budget):
    result = pruned[method, name, budget]
    record = result.record
    base_macs, base_params = macs_and_params(base_models[name], LENGTH)
    macs, params = macs_and_params(result.model, LENGTH)
    assert (record["macs_before"], record["params_before"]) == (base_macs, base_params)
    assert (record["macs_after"], record["params_after"]) == (macs, params)
    achieved = 1 - macs / base_macs
    assert budget <= achieved <= budget + 0.02
    assert record["gap"] == pytest.approx(achieved - budget)
    assert record["mac_search"] == "width model" and params < base_params
    json.dumps(record)  # written as the step's JSON record by fcos.api.prune_checkpoint
    assert result.architecture == {"resized": True}
    # the record's widths are the model's: every group of the pruned model as recorded
    widths = {g.name: g.channels for g in channel_groups(result.model, name)}
    for group in record["groups"]:
        assert group["status"] == "pruned"
        assert widths[group["name"]] == group["channels_after"] == len(group["kept"])
        assert group["kept"] == sorted(set(group["kept"]))
        assert 0 <= group["kept"][0] and group["kept"][-1] < group["channels_before"]
    assert sum(g["channels_after"] for g in record["groups"]) < sum(
        g["channels_before"] for g in record["groups"])
    classifier = result.model.classifier if name == "cnn1d" else result.model.fc
    assert classifier.out_features == CLASSES
    base_widths = {n: m.out_channels for n, m in base_models[name].named_modules()
                   if isinstance(m, (nn.Conv1d, nn.Conv2d))}
    assert any(m.out_channels < base_widths[n] for n, m in result.model.named_modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d)))


@pytest.mark.parametrize("method,name", CASES)
def test_pruned_model_saves_reloads_and_trains(pruned, data, method, name):
    model = copy.deepcopy(pruned[method, name, 0.6].model).eval()
    x, y, _ = data.split("train")
    xb, yb = torch.as_tensor(x[:8]), torch.as_tensor(y[:8])
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(),
                "model": {"name": name, "num_classes": CLASSES, "length": LENGTH},
                "architecture": pruned[method, name, 0.6].architecture}, buffer)
    buffer.seek(0)
    rebuilt = model_from_checkpoint(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(rebuilt(xb), model(xb))
    rebuilt.train()
    optimizer = torch.optim.Adam(rebuilt.parameters(), lr=1e-3)
    before = copy.deepcopy(rebuilt.state_dict())
    loss = F.cross_entropy(rebuilt(xb), yb)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in rebuilt.state_dict().items())


@pytest.mark.parametrize("method", CHANNEL_PRUNERS)
def test_same_seed_same_channels_and_weights(pruned, data, base_models, method):
    name = "resnet56" if method == "slimming" else "cnn1d"
    first = pruned[method, name, 0.3]
    again = _prune(method, base_models[name], name, 0.3, data)
    kept = [g["kept"] for g in first.record["groups"]]
    assert [g["kept"] for g in again.record["groups"]] == kept
    assert _state_equal(again.model, first.model)
    if method == "random-channel":
        other = _prune(method, base_models[name], name, 0.3, data, seed=1)
        assert [g["kept"] for g in other.record["groups"]] != kept


class _RandomSplits:
    """Stand-in for a PreparedDataset at another length: seeded noise, class-dependent offset."""

    def __init__(self, length: int, num_classes: int = 4, size: int = 32):
        rng = np.random.default_rng(0)
        self.length, self.num_classes = length, num_classes
        y = np.arange(size) % num_classes
        x = (rng.standard_normal((size, 2, length)) + y[:, None, None]).astype(np.float32)
        self._split = (x, y.astype(np.int64), np.zeros(size, np.int16))

    def split(self, name):
        return self._split


@pytest.fixture(scope="module")
def signet50():
    torch.manual_seed(0)
    return build_model("signet50", 4, 32).eval()


@pytest.mark.parametrize("method", CHANNEL_PRUNERS)
def test_signet50_short_input(signet50, method):
    data = _RandomSplits(32)
    options = {"slimming": {"sparsity_epochs": 1, "max_batches": 2, "batch_size": 8},
               "taylor": {"num_batches": 2, "batch_size": 8}}.get(method, {})
    result = prune_model(method, signet50, model_name="signet50", budget=0.3, data=data, seed=0,
                         options=options)
    base_macs, _ = macs_and_params(signet50, 32)
    macs, _ = macs_and_params(result.model, 32)
    assert 0.3 <= 1 - macs / base_macs <= 0.32
    model = result.model
    if method == "slimming":  # slimming's own model family: the full checkpoint round trip too
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(),
                    "model": {"name": "signet50", "num_classes": 4, "length": 32},
                    "architecture": result.architecture}, buffer)
        buffer.seek(0)
        model = model_from_checkpoint(torch.load(buffer, weights_only=True))
        with torch.no_grad():
            x = torch.as_tensor(data.split("train")[0][:2])
            assert torch.equal(model(x), result.model.eval()(x))
    x, y, _ = data.split("train")
    model.train()
    loss = F.cross_entropy(model(torch.as_tensor(x[:4])), torch.as_tensor(y[:4]))
    loss.backward()
    assert torch.isfinite(loss) and model.fc.weight.grad is not None


# --- options and refusals -----------------------------------------------------------------------

@pytest.mark.parametrize("method", CHANNEL_PRUNERS)
def test_budget_required_and_unknown_option_named(base_models, data, method):
    name = "resnet56"
    with pytest.raises(ConfigError, match=f"pruner {method} needs a budget"):
        _prune(method, base_models[name], name, None, data)
    with pytest.raises(ConfigError, match="unknown option.*bogus"):
        _prune(method, base_models[name], name, 0.3, data, bogus=1)
    with pytest.raises(ConfigError, match="budget"):
        _prune(method, base_models[name], name, 1.0, data)


@pytest.mark.parametrize("options,key", [
    ({"allocation": "mixed"}, "allocation"), ({"stream": "all"}, "stream"),
    ({"min_channels": 0}, "min_channels"), ({"min_channels": 1.5}, "min_channels"),
])
def test_bad_common_option_values_are_named(base_models, options, key):
    with pytest.raises(ConfigError, match=key):
        prune_model("l1", base_models["cnn1d"], model_name="cnn1d", budget=0.3, options=options)


def test_method_specific_refusals(base_models, data):
    with pytest.raises(ConfigError, match="cnn1d has no BatchNorm"):
        _prune("slimming", base_models["cnn1d"], "cnn1d", 0.3, data)
    with pytest.raises(ConfigError, match="sparsity_epochs"):
        _prune("slimming", base_models["resnet56"], "resnet56", 0.3, data, sparsity_epochs=-1)
    with pytest.raises(ConfigError, match="num_batches"):
        _prune("taylor", base_models["cnn1d"], "cnn1d", 0.3, data, num_batches=0)
    with pytest.raises(ConfigError, match="taylor needs the prepared dataset"):
        _prune("taylor", base_models["cnn1d"], "cnn1d", 0.3, None)
    with pytest.raises(ConfigError, match="slimming needs the prepared dataset"):
        _prune("slimming", base_models["resnet56"], "resnet56", 0.3, None)
    # without its sparsity phase, slimming is data-free
    result = _prune("slimming", base_models["resnet56"], "resnet56", 0.3, None, sparsity_epochs=0)
    assert result.record["preparation"]["sparsity_training"] is None


def test_sparsity_training_shrinks_the_batchnorm_scales(base_models, data):
    result = _prune("slimming", base_models["resnet56"], "resnet56", 0.3, data,
                    sparsity_lambda=1.0, max_batches=3)
    preparation = result.record["preparation"]
    history = preparation["sparsity_training"]
    assert len(history) == 1 and history[0]["gamma_l1"] < preparation["gamma_l1_before"]


def test_allocation_stream_and_min_channels(base_models):
    model = base_models["cnn1d"]

    def removed_fractions(record):
        return [1 - g["channels_after"] / g["channels_before"] for g in record["groups"]
                if g["status"] == "pruned"]

    uniform = prune_model("l1", model, model_name="cnn1d", budget=0.5).record
    fractions = removed_fractions(uniform)
    assert max(fractions) - min(fractions) <= 1 / 32 + 1e-12  # one ratio, up to one channel
    global_ = prune_model("l1", model, model_name="cnn1d", budget=0.5,
                          options={"allocation": "global"}).record
    assert 0.5 <= global_["macs_reduction"] <= 0.52
    assert max(removed_fractions(global_)) - min(removed_fractions(global_)) > 0.1
    for group in global_["groups"]:  # one threshold: removed below it, kept above it
        importance = np.array(group["importance"])
        removed = np.setdiff1d(np.arange(group["channels_before"]), group["kept"])
        assert np.all(importance[removed] <= global_["cut"])
        assert np.all(importance[group["kept"]] > global_["cut"])

    inner = prune_model("l1", model, model_name="cnn1d", budget=0.3,
                        options={"stream": "inner"}).record
    assert 0.3 <= inner["macs_reduction"] <= 0.32
    for group in inner["groups"]:
        assert (group["status"] == "skipped") == (group["kind"] == "stream")
        if group["kind"] == "stream":
            assert group["channels_after"] == group["channels_before"] and group["kept"] is None

    floor = prune_model("l1", model, model_name="cnn1d", budget=0.8,
                        options={"min_channels": 8}).record
    assert min(g["channels_after"] for g in floor["groups"]) >= 8
    with pytest.raises(ConfigError, match="not reachable"):
        prune_model("l1", model, model_name="cnn1d", budget=0.9, options={"min_channels": 16})


# --- importance definitions ---------------------------------------------------------------------

def _capture(module: nn.Module, store: dict, key: str):
    """Keep ``module``'s output (and, after backward, its gradient) in ``store[key]``."""
    def hook(module, inputs, output):
        output.retain_grad()
        store[key] = output
    return module.register_forward_hook(hook)


def test_taylor_score_is_squared_activation_times_gradient(base_models, data):
    """Gate-after-BN (gamma, beta) and weight x gradient both equal sum(a * dL/da) at the
    producer's output; one batch: the score is its square."""
    x, y, _ = data.split("train")
    rows = torch.from_numpy(np.random.default_rng(0).permutation(len(y))[:8])  # the seed-0 batch
    xb, yb = torch.as_tensor(x)[rows], torch.as_tensor(y)[rows]
    for name, group_name, layer in (("resnet56", "layer1.0.conv1", "layer1.0.bn1"),
                                    ("cnn1d", "stacks.1.conv2", "stacks.1.conv2")):
        model = copy.deepcopy(base_models[name]).eval()
        if name == "resnet56":  # an in-place ReLU would overwrite the captured BN output
            model.layer1[0].relu = nn.ReLU()
        groups = [g for g in channel_groups(model, name) if g.name == group_name]
        scores = taylor_scores(model, groups, data, num_batches=1, batch_size=8, seed=0,
                               device=torch.device("cpu"))
        store = {}
        handle = _capture(model.get_submodule(layer), store, "a")
        F.cross_entropy(model(xb), yb).backward()
        handle.remove()
        activation = store["a"]
        reduce_dims = (0,) + tuple(range(2, activation.dim()))
        expected = (activation * activation.grad).sum(dim=reduce_dims).detach().double() ** 2
        assert np.allclose(scores[group_name][0], expected.numpy(), rtol=1e-4, atol=1e-12)


def test_group_importance_normalises_each_producer():
    importance = group_importance([np.array([1.0, 3.0]), np.array([10.0, 10.0]), np.zeros(2)])
    assert np.allclose(importance, [(0.5 + 1 + 0) / 3, (1.5 + 1 + 0) / 3])


# --- MAC search -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,length", [("cnn1d", 128), ("resnet56", 128), ("signet50", 32)])
def test_width_cost_model_matches_the_counter(name, length, signet50, base_models):
    model = signet50 if name == "signet50" else base_models[name]
    groups = channel_groups(model, name)
    costs = WidthCostModel(model, groups, length)
    rng = np.random.default_rng(0)
    widths = [int(rng.integers(1, g.channels + 1)) for g in groups]
    kept = {g.name: np.sort(rng.permutation(g.channels)[:w]) for g, w in zip(groups, widths)}
    narrowed = select_channels(copy.deepcopy(model), groups, kept)
    assert costs.macs(widths) == macs_and_params(narrowed, length)[0]
    assert costs.macs([g.channels for g in groups]) == macs_and_params(model, length)[0]


def test_search_falls_back_to_the_counter(base_models, monkeypatch):
    original = WidthCostModel.macs
    monkeypatch.setattr(WidthCostModel, "macs", lambda self, widths: original(self, widths) + 1)
    record = prune_model("l1", base_models["cnn1d"], model_name="cnn1d", budget=0.4).record
    assert record["mac_search"] == "counter" and 0.4 <= record["macs_reduction"] <= 0.42


# --- Torch-Pruning as the reference engine ------------------------------------------------------

class _ProducerL1(tp.importance.Importance):
    """Our "l1" group importance in Torch-Pruning terms: per output-pruned conv/linear of the
    group, the L1 norm of each filter divided by its mean, averaged over those layers."""

    def __call__(self, group):
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        count = 0
        for index, (dep, idxs) in enumerate(group):
            if dep.pruning_fn in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                norms = dep.layer.weight.detach()[idxs].flatten(1).abs().sum(1).double()
                # idxs of layers past a flatten are permuted: place scores by root index
                total[torch.as_tensor(group[index].root_idxs)] += norms / norms.mean()
                count += 1
        return total / count


def _torch_pruned(model, importance, ratio):
    model = copy.deepcopy(model)
    tp.pruner.MetaPruner(model, torch.zeros(1, 2, LENGTH), importance=importance,
                         pruning_ratio=ratio, ignored_layers=[model.classifier]).step()
    return model


def test_torch_pruning_agrees_on_cnn1d(base_models):
    model = base_models["cnn1d"]
    groups = channel_groups(model, "cnn1d")
    context = ScoringContext(data=None, seed=0, length=LENGTH, options={})
    importance = {name: group_importance(scores) for name, scores in
                  CRITERIA["l1"].producer_scores(model, groups, context).items()}
    half = {g.name: kept_channels(importance[g.name], g.channels // 2) for g in groups}
    ours = select_channels(copy.deepcopy(model), groups, half)
    # the same importance and ratio: the same network, weight for weight
    theirs = _torch_pruned(model, _ProducerL1(), 0.5)
    assert _state_equal(ours, theirs)
    assert macs_and_params(ours, LENGTH) == macs_and_params(theirs, LENGTH)
    # Torch-Pruning's own L1 (group reduction "first": the root layer's filters) picks other
    # stream channels but the same widths everywhere, hence the same MACs and params
    builtin = _torch_pruned(model, tp.importance.MagnitudeImportance(
        p=1, group_reduction="first", normalizer=None), 0.5)
    shapes = {k: v.shape for k, v in builtin.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ours.state_dict().items()}
    assert macs_and_params(builtin, LENGTH) == macs_and_params(ours, LENGTH)


# --- registry and pipeline ------------------------------------------------------------------------

def test_registered_and_in_the_pipeline_chains():
    load_pruners()
    for method in CHANNEL_PRUNERS:
        assert method in REGISTERED and method in CRITERIA
        assert chain_steps(method) == [{"pruner": method, "budget": True}]
        assert method_family(method) == "channel"
    from fcos.prune.budget import BUDGET_TOLERANCE

    assert BUDGET_TOLERANCE <= 0.02
