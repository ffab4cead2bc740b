"""Fusion and MAC budgets on briefly *trained* CNN1D and ResNet56, not random initialisations.

Trained weights are what the pipeline prunes: their channels are correlated and their residual
streams carry most of the cost, so this is where a budget search must fuse streams and still
land on the budget. MACs are counted by ``test_mac_reference.reference_macs`` (forward hooks on
Conv/Linear and the two custom modules; no code shared with ``fcos.metrics``). The tolerance is
the one README states: a budget is met from above within 1 point.

The models train for a few hundred seeded Adam steps on the synthetic RML2016 stand-in (high SNRs,
frames cut to the model's shortest convenient length), in this process, deterministically on CPU.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn

from fcos.checkpoint import model_from_checkpoint
from fcos.data.specs import DATASETS
from fcos.data.synthetic import synthesize
from fcos.io import save_checkpoint
from fcos.models import build_model
from fcos.prune import prune_model
from fcos.prune.fusion import fuse_channels
from fcos.prune.groups import channel_groups
from test_fusion import _duplicate
from test_mac_reference import reference_macs

#: README: "a global MAC budget met within 1 point" (channel methods, fusion, block selection).
README_TOLERANCE = 0.01
#: Input length per model: CNN1D needs a multiple of 64 (six poolings); ResNet56 any length >= 4.
LENGTH = {"cnn1d": 64, "resnet56": 32}
#: (steps, batch size) of the brief training; Adam, seed 0.
TRAINING = {"cnn1d": (300, 16), "resnet56": (150, 32)}
#: LaCD probes small enough for a second on one core.
PROBES = {"max_train": 200, "max_val": 100, "probe_steps": 20}
BUDGETS = (0.5, 0.9)
NUM_CLASSES = DATASETS["rml2016"].num_classes


class Frames:
    """Train and val splits of synthetic frames with the interface pruning reads
    (``split(name) -> (x, y, snr)``, ``length``, ``num_classes``). There is no test split: a
    pruning step asking for it fails here."""

    def __init__(self, x: np.ndarray, y: np.ndarray, snr: np.ndarray, length: int):
        x = np.ascontiguousarray(x[:, :, :length])
        val = np.arange(len(y)) % 5 == 0
        self.length, self.num_classes = length, NUM_CLASSES
        self._splits = {"train": (x[~val], y[~val], snr[~val]), "val": (x[val], y[val], snr[val])}

    def split(self, name: str):
        return self._splits[name]


def _train(name: str, data: Frames) -> tuple[nn.Module, float]:
    """Brief seeded Adam training; returns the model in eval mode and its train accuracy."""
    steps, batch = TRAINING[name]
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, data.length)
    x, y, _ = data.split("train")
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(y), (batch,), generator=order)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return model, accuracy


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[nn.Module, Frames]]:
    raw = synthesize("rml2016", 12, seed=0, snrs=[12, 14, 16, 18])
    models = {}
    for name in LENGTH:
        data = Frames(raw.x, raw.y, raw.snr, LENGTH[name])
        start = time.process_time()
        model, accuracy = _train(name, data)
        print(f"{name}: trained in {time.process_time() - start:.1f} CPU s, train accuracy {accuracy:.2f}")
        # trained, not merely initialised: at least twice chance on its training frames
        assert accuracy > 2 / NUM_CLASSES, (name, accuracy)
        models[name] = (model, data)
    return models


@pytest.fixture(scope="module")
def stage1(trained) -> dict[tuple[str, float], tuple[nn.Module, dict, int]]:
    """{(model, budget): (stage-1 result, base MACs by the reference counter)}."""
    results = {}
    for name, (model, data) in trained.items():
        base = reference_macs(model, data.length)
        for budget in BUDGETS:
            start = time.process_time()
            result = prune_model("fcos-stage1", model, model_name=name, budget=budget, data=data)
            print(f"{name} stage 1 at {budget}: {time.process_time() - start:.1f} CPU s")
            results[name, budget] = (result, base)
    return results


@pytest.mark.parametrize("name", list(LENGTH))
@pytest.mark.parametrize("budget", BUDGETS)
def test_stage1_meets_the_budget_by_the_reference_counter(stage1, trained, name, budget):
    result, base = stage1[name, budget]
    reduction = 1 - reference_macs(result.model, LENGTH[name]) / base
    assert budget <= reduction <= budget + README_TOLERANCE, reduction
    assert result.record["macs_reduction"] == pytest.approx(reduction, abs=1e-12)
    # the input model is left as it was: still costs the base MACs
    assert reference_macs(trained[name][0], LENGTH[name]) == base


# Measured on these trained models: the search meets 0.5 on ResNet56 without narrowing any of
# its streams (inner groups alone suffice), and must narrow them at 0.9; CNN1D's streams are
# narrowed at both budgets.
@pytest.mark.parametrize("name, budget", [("cnn1d", 0.5), ("cnn1d", 0.9), ("resnet56", 0.9)])
def test_residual_streams_are_fused_under_the_budget(stage1, name, budget):
    result, _ = stage1[name, budget]
    streams = [g for g in result.record["groups"] if g["kind"] == "stream"]
    assert streams, "the model has residual streams"
    narrowed = [g["name"] for g in streams if g["channels_after"] < g["channels_before"]]
    assert narrowed, f"no residual stream was fused at budget {budget}"
    # a fused stream's width is the real width of every layer writing it
    model = result.model
    for group in channel_groups(model, name):
        entry = next(g for g in result.record["groups"] if g["name"] == group.name)
        assert group.channels == entry["channels_after"], group.name


@torch.no_grad()
def _near_duplicates(model: nn.Module, name: str, group_name: str, pairs, noise: float) -> nn.Module:
    """A copy of ``model`` where, at every producer of the group, channel dst is channel src plus
    Gaussian noise of ``noise`` x the row's RMS on the weights (bias, BatchNorm and shortcut-map
    rows copied exactly). The noise direction is seeded, so only its size changes with ``noise``."""
    model = copy.deepcopy(model)
    group = next(g for g in channel_groups(model, name) if g.name == group_name)
    _duplicate(model, group, pairs)
    gen = torch.Generator().manual_seed(7)
    for _, dst in pairs:
        for producer in group.producers:
            module = model.get_submodule(producer.module)
            if getattr(module, "mapping", None) is not None:
                continue
            row = module.weight[dst]
            row += noise * row.pow(2).mean().sqrt() * torch.randn(row.shape, generator=gen)
    return model


@pytest.mark.parametrize("name, group", [("resnet56", "layer1.stream"), ("cnn1d", "stacks.0.stream")])
def test_fusing_near_duplicate_stream_channels_costs_error_in_proportion_to_the_noise(trained, name, group):
    model, data = trained[name]
    channels = next(g.channels for g in channel_groups(model, name) if g.name == group)
    pairs = [(0, 1), (4, 5)]
    others = [g.name for g in channel_groups(model, name) if g.name != group]
    x = torch.from_numpy(data.split("val")[0])
    errors = {}
    for noise in (0.0, 1e-3, 1e-2):
        noisy = _near_duplicates(model, name, group, pairs, noise)
        fused, record = fuse_channels(noisy, name, ratio=(channels - len(pairs)) / channels,
                                      skip=others, length=data.length)
        entry = next(g for g in record["groups"] if g["name"] == group)
        # exactly the two near-duplicate pairs were merged, at cosine distance O(noise^2)
        assert entry["channels_after"] == channels - len(pairs)
        assert sorted(entry["cluster_sizes"])[-3:] == [1, 2, 2]
        assert entry["max_merge_distance"] <= 2 * noise ** 2 + 1e-6
        logits = noisy(x)
        errors[noise] = ((fused(x) - logits).abs().max() / logits.abs().max()).item()
    assert errors[0.0] <= 1e-5, errors  # exact duplicates: the same function up to rounding
    assert errors[1e-2] <= 0.05, errors  # the fused model's logits stay close
    # first order in the noise: ten times less noise, about ten times less error
    assert 4 < errors[1e-2] / errors[1e-3] < 25, errors


@pytest.fixture(scope="module")
def stage1_then_lacd(stage1, trained) -> dict[str, tuple[object, int, float]]:
    """{model: (LaCD result, base MACs, final budget)}: stage 1 at 0.5, then LaCD in budget mode
    to the final budget 0.6 against the *base* model, handed to LaCD as the equivalent reduction
    of its own input, as fcos.api.prune_checkpoint does for a chain's later step."""
    final = 0.6
    results = {}
    for name, (_, data) in trained.items():
        fused, base = stage1[name, 0.5]
        vs_input = 1 - (1 - final) * base / reference_macs(fused.model, data.length)
        start = time.process_time()
        result = prune_model("lacd", fused.model, model_name=name, budget=vs_input, data=data,
                             options=PROBES)
        print(f"{name} LaCD to {final}: {time.process_time() - start:.1f} CPU s")
        results[name] = (result, base, final)
    return results


@pytest.mark.parametrize("name", list(LENGTH))
def test_stage1_then_lacd_lands_on_the_final_budget(stage1_then_lacd, name):
    result, base, final = stage1_then_lacd[name]
    selection = result.record["selection"]
    assert selection["mode"] == "budget" and selection["removed"], selection
    after = reference_macs(result.model, LENGTH[name])
    assert selection["achieved_reduction"] == pytest.approx(1 - after / selection["macs_before"], abs=1e-12)
    reduction = 1 - after / base
    assert final <= reduction <= final + README_TOLERANCE, (reduction, selection["removed"])


@pytest.mark.parametrize("name", list(LENGTH))
def test_pruned_model_reloads_from_its_record_with_identical_logits(stage1_then_lacd, trained, tmp_path,
                                                                    name):
    result, _, _ = stage1_then_lacd[name]
    data = trained[name][1]
    spec = DATASETS["rml2016"]
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, {
        "format": "fcos-checkpoint/1", "state_dict": result.model.state_dict(),
        "model": {"name": name, "num_classes": NUM_CLASSES, "length": data.length},
        "architecture": result.architecture,
        "dataset": {"name": "rml2016", "sha256": "0" * 64, "classes": list(spec.classes),
                    "length": data.length}})
    reloaded = model_from_checkpoint(path)
    assert result.architecture["resized"] is True  # stage 1's narrowing is carried along
    assert set(result.architecture["removed_blocks"]) == set(result.record["selection"]["removed"])
    x = torch.from_numpy(data.split("val")[0])
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model.eval()(x))
    assert reference_macs(reloaded, data.length) == reference_macs(result.model, data.length)
