"""LaCD: probes, collapse criterion, block removal, rebuild from a checkpoint, the method, the figure."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from fcos.checkpoint import model_from_checkpoint
from fcos.data import load_prepared
from fcos.errors import ConfigError
from fcos.metrics import macs_and_params
from fcos.models import build_model
from fcos.prune import prune_model
from fcos.prune.block_selection import select_for_budget
from fcos.prune.blocks import IDENTITY, STACK_PROJECTION, inspect_blocks, remove_blocks
from fcos.prune.probes import collapse_gains, default_epsilon, diagnose_collapse, fit_linear_probe
from fcos.report.figures import plot_probe_curve

# Small caps keep every diagnosis to a couple of seconds on one core.
CAPS = {"max_train": 200, "max_val": 100}


@pytest.fixture(scope="module")
def data(tiny_rml2016):
    return load_prepared(tiny_rml2016)


def _build(name: str, length: int = 128, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, 11, length).eval()


def _make_identity_resnet_blocks(model, names):
    """Zero the last BN of each basic block: block(x) = relu(0 + x) = x for post-ReLU inputs."""
    with torch.no_grad():
        for name in names:
            bn = model.get_submodule(name).bn2
            bn.weight.zero_()
            bn.bias.zero_()


def _zero_residual_units(stack):
    """Second conv of each residual unit = 0: the stack computes maxpool(relu(conv1(x)))."""
    with torch.no_grad():
        stack.conv3.weight.zero_()
        stack.conv5.weight.zero_()


def _make_pooling_cnn1d_stacks(model, names):
    """Zero residual units and a 1x1 identity conv: the stack computes maxpool(x) on its
    non-negative inputs."""
    with torch.no_grad():
        for name in names:
            stack = model.get_submodule(name)
            _zero_residual_units(stack)
            stack.conv1.weight.copy_(torch.eye(stack.conv1.weight.shape[0]).unsqueeze(-1))


def _round_trip(model, name, architecture, length=128):
    """torch.save -> torch.load(weights_only=True) -> model_from_checkpoint."""
    payload = {"state_dict": model.state_dict(),
               "model": {"name": name, "num_classes": 11, "length": length},
               "architecture": architecture}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return model_from_checkpoint(torch.load(buffer, weights_only=True))


# --- pure pieces ---------------------------------------------------------------------------------

def test_gains_are_over_best_and_previous_point_skipping_unprobed():
    gains, steps = collapse_gains([0.2, 0.5, 0.5, 0.4, 0.6, None, 0.65])
    assert gains[0] is None and steps[0] is None and gains[5] is None
    assert gains[1:5] == pytest.approx([0.3, 0.0, -0.1, 0.1])
    assert steps[1:5] == pytest.approx([0.3, 0.0, -0.1, 0.2])
    assert gains[6] == pytest.approx(0.05) and steps[6] == pytest.approx(0.05)
    assert default_epsilon(10_000) == pytest.approx(0.01)


def test_probe_separates_separable_features_and_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    centres = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]])
    features = centres[labels] + 0.5 * torch.randn(300, 4, generator=gen)
    features[:, 3] = 7.0  # a constant feature must not break the standardisation
    for optimizer in ("lbfgs", "adam"):
        a = fit_linear_probe(features, labels, 3, optimizer=optimizer, steps=30, seed=1)
        b = fit_linear_probe(features, labels, 3, optimizer=optimizer, steps=30, seed=1)
        assert a.accuracy(features, labels) == 1.0
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_budget_selection_rules():
    savings = {"a": 10, "b": 100, "c": 30, "d": 5}
    ranking = ["a", "b", "c", "d"]
    assert select_for_budget(ranking, savings, 40, "closest") == ["a", "c"]  # b overshoots: skipped
    assert select_for_budget(ranking, savings, 40, "reach") == ["a", "b"]
    assert select_for_budget(ranking, savings, 0, "closest") == []
    assert select_for_budget(ranking, savings, 1000, "closest") == ranking
    # exact: a + c = 40 exactly, within the window of no tolerance; c + d = 35 is outside it
    assert select_for_budget(ranking, savings, 40, "exact") == ["a", "c"]
    assert select_for_budget(ranking, savings, 34, "exact", tolerance=1) == ["c", "d"]
    with pytest.raises(ConfigError):
        select_for_budget(ranking, savings, 40, "nearest")


# --- what is removable -------------------------------------------------------------------------

@pytest.mark.parametrize("name, length, kept, kinds", [
    ("resnet56", 128, {"layer2.0", "layer3.0"}, {IDENTITY}),
    ("cnn1d", 128, set(), set(STACK_PROJECTION.values())),
    ("signet50", 32, {"layer1.0", "layer2.0", "layer3.0", "layer4.0"}, {IDENTITY}),
])
def test_shape_changing_blocks_are_kept(name, length, kept, kinds):
    infos = inspect_blocks(_build(name, length))
    assert {i.name for i in infos if i.replacement is None} == kept
    assert {i.replacement for i in infos if i.replacement is not None} == kinds
    for info in infos:
        assert 0 < info.saved_macs <= info.macs if info.replacement else info.saved_macs == 0


def test_refuses_blocks_it_cannot_remove():
    model = _build("resnet56")
    for bad in (["layer2.0"], ["layer9.1"]):
        with pytest.raises(ConfigError) as err:
            remove_blocks(model, bad)
        assert "\n" not in str(err.value)
    remove_blocks(model, ["layer1.1"])
    with pytest.raises(ConfigError, match="removed earlier"):
        remove_blocks(model, ["layer1.1"])


# --- identity blocks are diagnosed and removed exactly -------------------------------------------

@pytest.mark.parametrize("name, identity, make_identity, pooling", [
    ("resnet56", ["layer1.3", "layer2.5", "layer3.8"], _make_identity_resnet_blocks, "gap"),
    # max-pool then global max = global max: gmp features see a pooling stack as a no-op
    ("cnn1d", ["stacks.2", "stacks.4"], _make_pooling_cnn1d_stacks, "gmp"),
])
def test_identity_blocks_are_flagged_and_removed_exactly(data, name, identity, make_identity, pooling):
    model = _build(name)
    make_identity(model, identity)
    report = diagnose_collapse(model, data, pooling=pooling, epsilon=0.0, **CAPS)
    by_name = {p["name"]: p for p in report["points"]}
    assert set(identity) <= set(report["collapsed"])
    assert all(by_name[b]["gain"] <= 0 for b in identity)
    assert report["points"][0]["kind"] == "stem" and len(report["points"]) == 1 + len(model.removable_blocks())

    x = torch.as_tensor(data.split("val")[0][:32])
    with torch.no_grad():
        before = model(x)
    macs_before, params_before = macs_and_params(model, 128)
    pruned, record = remove_blocks(copy.deepcopy(model), identity)
    with torch.no_grad():
        after = pruned(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    macs_after, params_after = macs_and_params(pruned, 128)
    assert macs_before - macs_after == sum(by_name[b]["saved_macs"] for b in identity)
    assert params_before - params_after == sum(by_name[b]["saved_params"] for b in identity)

    rebuilt = _round_trip(pruned, name, record)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), after)
    assert record == {"removed_blocks": {b: STACK_PROJECTION[False] if name == "cnn1d" else IDENTITY
                                         for b in identity}}


def _narrow_cnn1d_stack(model, name, width):
    """Give stack ``name`` (1-D) the stream width ``width``, as channel fusion would."""
    stack = model.get_submodule(name)
    index = int(name.split(".")[1])
    stack.conv1 = torch.nn.Conv1d(stack.conv1.in_channels, width, 1, bias=False)
    for conv in ("conv2", "conv3", "conv4", "conv5"):
        setattr(stack, conv, torch.nn.Conv1d(width, width, 3, padding=1, bias=False))
    following = model.stacks[index + 1]
    following.conv1 = torch.nn.Conv1d(width, following.conv1.out_channels, 1, bias=False)


@pytest.mark.parametrize("stack", ["stacks.0", "stacks.3"])
def test_cnn1d_stack_removal_keeps_its_projection_exactly_also_at_a_fused_width(data, stack):
    model = _build("cnn1d")
    _narrow_cnn1d_stack(model, "stacks.3", 20)
    _zero_residual_units(model.get_submodule(stack))
    x = torch.as_tensor(data.split("val")[0][:16])
    with torch.no_grad():
        before = model(x)
    pruned, record = remove_blocks(model, [stack])
    assert record["removed_blocks"][stack] == STACK_PROJECTION[stack == "stacks.0"]
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), before, atol=1e-6, rtol=0)
    rebuilt = _round_trip(pruned, "cnn1d", dict(record, resized=True))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))


# --- the method --------------------------------------------------------------------------------

def test_lacd_method_modes_are_deterministic_and_leave_the_input_alone(data):
    model = _build("resnet56")
    _make_identity_resnet_blocks(model, ["layer1.3", "layer3.8"])
    reference = copy.deepcopy(model.state_dict())
    common = dict(model_name="resnet56", data=data, seed=0)

    collapsed = prune_model("lacd", model, budget=None, options=dict(CAPS, epsilon=0.0), **common)
    assert {"layer1.3", "layer3.8"} <= set(collapsed.architecture["removed_blocks"])
    assert collapsed.record["selection"]["mode"] == "epsilon"
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())

    lowest = prune_model("lacd", model, budget=None, options=dict(CAPS, num_blocks=3), **common)
    assert len(lowest.architecture["removed_blocks"]) == 3

    budgeted = prune_model("lacd", model, budget=0.25, options=CAPS, **common)
    again = prune_model("lacd", model, budget=0.25, options=CAPS, **common)
    sel = budgeted.record["selection"]
    assert sel["mode"] == "budget" and sel["removed"] == again.record["selection"]["removed"]
    assert sel["gap"] == pytest.approx(sel["achieved_reduction"] - 0.25)
    assert abs(sel["gap"]) <= 2359296 / sel["macs_before"]  # within one (largest) block
    assert sel["macs_after"] == macs_and_params(budgeted.model, 128)[0]
    assert budgeted.record["points"] == again.record["points"]

    with pytest.raises(ConfigError):
        prune_model("lacd", model, budget=0.2, options={"num_blocks": 2}, **common)
    with pytest.raises(ConfigError, match="unknown option"):
        prune_model("lacd", model, budget=None, options={"poolin": "gap"}, **common)


def test_lacd_after_a_removal_skips_removed_blocks_and_keeps_the_record(data):
    model = _build("cnn1d")
    first = prune_model("lacd", model, model_name="cnn1d", budget=None, data=data, seed=0,
                        options=dict(CAPS, num_blocks=1))
    second = prune_model("lacd", first.model, model_name="cnn1d", budget=None, data=data, seed=0,
                         options=dict(CAPS, num_blocks=1))
    (gone,) = first.architecture["removed_blocks"]
    point = next(p for p in second.record["points"] if p["name"] == gone)
    assert point["removed_earlier"] and point["accuracy"] is None and not point["removable"]
    assert gone in second.architecture["removed_blocks"] and len(second.architecture["removed_blocks"]) == 2


# --- SigNet50 and the figure -------------------------------------------------------------------

class _RandomSplits:
    """Stand-in for a PreparedDataset at another length: seeded noise with a class-dependent offset."""

    def __init__(self, length: int, num_classes: int = 4, sizes=(48, 24)):
        rng = np.random.default_rng(0)
        self.length, self.num_classes = length, num_classes
        self._splits = {}
        for split, n in zip(("train", "val"), sizes):
            y = np.arange(n) % num_classes
            x = (rng.standard_normal((n, 2, length)) + y[:, None, None]).astype(np.float32)
            self._splits[split] = (x, y.astype(np.int64), np.zeros(n, np.int16))

    def split(self, name):
        return self._splits[name]


def test_signet50_short_input_diagnose_remove_and_train():
    torch.manual_seed(0)
    model = build_model("signet50", 4, 32)
    data = _RandomSplits(32)
    report = diagnose_collapse(model, data, batch_size=24, probe_steps=20)
    assert len(report["points"]) == 17 and report["n_train"] == 48
    removable = [p["name"] for p in report["points"] if p["removable"]]
    assert len(removable) == 12
    chosen = report["collapsed"] or removable[:2]
    pruned, record = remove_blocks(model, chosen)
    assert set(record["removed_blocks"]) == set(chosen)
    x, y, _ = data.split("train")
    pruned.train()
    loss = torch.nn.functional.cross_entropy(pruned(torch.as_tensor(x[:4])), torch.as_tensor(y[:4]))
    loss.backward()
    assert pruned.fc.weight.grad is not None and torch.isfinite(loss)


def test_probe_curve_is_written(tmp_path, data):
    model = _build("cnn1d")
    base = diagnose_collapse(model, data, **CAPS)
    later = prune_model("lacd", model, model_name="cnn1d", budget=None, data=data, seed=0,
                        options=dict(CAPS, num_blocks=2)).record
    out = tmp_path / "fig" / "probes.png"
    plot_probe_curve({"base": base, "after removal": later}, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["probes.png"]  # no temp file left behind


def test_feature_cache_limit_shrinks_the_train_subset_not_the_val_set(data):
    model = _build("cnn1d")
    per_example = 4 * (1 + 6 * 32)  # gap widths: the stem's single plane, six 32-channel stacks
    report = diagnose_collapse(model, data, max_val=50, probe_steps=10,
                               cache_limit_bytes=per_example * (50 + 100))
    assert (report["n_train"], report["n_val"], report["train_capped_by_memory"]) == (100, 50, True)
    with pytest.raises(ConfigError, match="val examples alone"):
        diagnose_collapse(model, data, max_val=50, cache_limit_bytes=per_example * 50)
