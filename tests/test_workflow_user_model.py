"""A user's own network through the Snakemake workflow (config ``models`` entry with
``model_file``): trained, pruned by FCOS, fine-tuned and evaluated by the real DAG; its final
model reloads through the recorded builder, and MACs and accuracy agree with values computed
here, independently of fcos.metrics and fcos's evaluation."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
import yaml
from torch import nn

from test_pipeline import copy_workflow, tool

pytestmark = pytest.mark.slow

NETWORK = '''
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.BatchNorm1d(width))

    def forward(self, x):
        return (x + self.body(x)).relu()


class Net(nn.Module):
    def __init__(self, width, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width), Block(width), Block(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(-1))


def build(width=8, num_classes=11):
    return Net(width, num_classes)
'''


def hook_macs(model: nn.Module, length: int) -> int:
    """Multiply-accumulates of Conv1d and Linear layers, counted from their actual outputs."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv1d):
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 2, length))
    for handle in handles:
        handle.remove()
    return total


def _config(work, **changes):
    config = yaml.safe_load((work / "config" / "test.yaml").read_text())
    config.update(models=[{"name": "mynet", "model_file": "models/mynet.py:build", "model_args": {"width": 8}}],
                  methods=["base", "fcos"], seeds=[0])
    config.update(changes)
    (work / "config" / "user.yaml").write_text(yaml.safe_dump(config))
    return config


@pytest.fixture(scope="module")
def user_workflow(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("user-workflow"))
    (work / "models").mkdir()
    (work / "models" / "mynet.py").write_text(NETWORK)
    config = _config(work)
    results = work / config["results_dir"] / "rml2016" / "mynet" / "seed0"
    targets = [results / "base" / "metrics.json", results / "fcos" / "b0.5" / "metrics.json"]
    tool("snakemake", *[t.relative_to(work) for t in targets], "--cores", "2",
         "--configfile", "config/user.yaml", cwd=work, timeout=600)
    return work, results


def _builder(work):
    spec = importlib.util.spec_from_file_location("mynet_here", work / "models" / "mynet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def test_the_user_network_is_trained_pruned_and_measured(user_workflow):
    from fcos.checkpoint import load_model_checkpoint, model_from_checkpoint
    from fcos.data import load_prepared

    work, results = user_workflow
    base = json.loads((results / "base" / "metrics.json").read_text())
    final = json.loads((results / "fcos" / "b0.5" / "metrics.json").read_text())
    assert base["model"] == final["model"] == "mynet" and final["method"] == "fcos"
    # the base MACs are those of the user's own builder, counted here with hooks
    assert base["macs"] == hook_macs(_builder(work)(width=8, num_classes=11), 128)
    assert [step["pruner"] for step in final["prune_steps"]] == ["fcos-stage1", "lacd"]

    # the final model rebuilds from its checkpoint's builder record; its cost and accuracy agree
    payload = load_model_checkpoint(work / final["checkpoint"])
    model = model_from_checkpoint(payload).eval()
    assert final["macs"] == hook_macs(model, 128) < base["macs"]
    assert final["macs_reduction"] == pytest.approx(1 - final["macs"] / base["macs"], abs=1e-12)
    data = load_prepared(work / "results" / "data" / "rml2016.h5")
    x, y, _ = data.split("test")
    with torch.no_grad():
        predicted = model(torch.as_tensor(x)).argmax(dim=1)
    truth = torch.as_tensor(y)
    assert final["n_test"] == len(y)
    assert final["accuracy"] == pytest.approx(int((predicted == truth).sum()) / len(y), abs=1e-12)
    confusion = [[int(((truth == t) & (predicted == p)).sum()) for p in range(11)] for t in range(11)]
    assert final["confusion"] == confusion  # rows true, columns predicted: every prediction agrees


def test_editing_the_builder_file_retrains(user_workflow):
    work, results = user_workflow
    target = (results / "fcos" / "b0.5" / "metrics.json").relative_to(work)
    planned = tool("snakemake", target, "-n", "--cores", "1", "--configfile", "config/user.yaml", cwd=work)
    assert "train_base" not in planned.stdout, "a finished run plans nothing"
    source = work / "models" / "mynet.py"
    source.write_text(source.read_text() + "\n# edited\n")
    planned = tool("snakemake", target, "-n", "--cores", "1", "--configfile", "config/user.yaml", cwd=work)
    assert "train_base" in planned.stdout and "prune_step" in planned.stdout


@pytest.mark.parametrize("entry, expected", [
    ({"name": "cnn1d", "model_file": "models/mynet.py:build"},
     "config key 'models[0].name': 'cnn1d' is a registry model"),
    ({"name": "mynet", "model_file": "models/mynet.py:make"},
     "config key 'models[0].model_file':"),
    ({"name": "mynet", "model_file": "models/gone.py:build"},
     "config key 'models[0].model_file':"),
])
def test_a_bad_model_entry_exits_2_naming_the_key(tmp_path, entry, expected):
    work = copy_workflow(tmp_path / "wf")
    (work / "models").mkdir()
    (work / "models" / "mynet.py").write_text(NETWORK)
    _config(work, models=[entry])
    out = tool("snakemake", "-n", "--cores", "1", "--configfile", "config/user.yaml", cwd=work,
               check=False, timeout=300)
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("Using workflow")]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), (out.returncode, lines)
