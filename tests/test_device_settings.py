"""The run's device settings (device, mixed precision, loading threads) reach every pruning and
probing step that computes, bad settings are refused with one line and exit code 2, and CPU
results are those of the code before the settings were plumbed through (a fixed record).

No GPU here: a CUDA device is faked (``torch.cuda.is_available`` patched) and the calls that
would touch it (``model.to``, ``batches``, ``autocast``, the probe fit) are spies that record
what they were asked and compute on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json

import numpy as np
import pytest
import torch

import fcos.api
import fcos.prune.importance as importance
import fcos.prune.lacd as lacd_module
import fcos.prune.layer as layer
import fcos.prune.probes as probes
import fcos.prune.sparsity as sparsity
import fcos.train
from fcos.api import diagnose_checkpoint, prune_checkpoint, train_base_model
from fcos.cli import main
from fcos.errors import ConfigError
from fcos.models import build_model
from fcos.prune.groups import channel_groups

FAKE_CUDA = torch.device("cuda:1")
CPU = torch.device("cpu")

# Computed by the code of commit c75e55a (before this change) on the tiny_rml2016 fixture with
# seeded untrained models, with the calls of test_cpu_results_equal_the_record_... below.
RECORD = {
    "probes_lbfgs": [[0.1, 0.135], [0.1, 0.22], [0.14, 0.35], [0.14, 0.415], [0.14, 0.355], [0.15, 0.375],
                     [0.18, 0.36]],
    "taylor": "cb268b3e1514915fddaf9c8a4e3da1856ef7c12f0084269ee0ab20aec4061231",
    "slimming_history": [{"epoch": 1, "loss": 2.9981908798217773, "cross_entropy": 2.794994354248047,
                          "gamma_l1": 2031.8228759765625}],
    "slimming_weights": "5cf552f5449e88095a0fd0c88a65a0da7dec3b922711347645a322e6eb4eeae8",
    "features": "591311b4a7a11c8814e1145435a8865597d079e3fb75725747fc163dc92f80c0",
    "probe_lbfgs": "8d4159fa1519ee5396fe6c41461ca364334efeb7604f9ee712fb7b26033ca0bc",
    "probe_adam": "596426a3748303f4fe3a1ece0134adcd258a5091651ef319af4fea67d48fdac3",
}


def _sha256(arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _seeded(name: str):
    torch.manual_seed(0)
    return build_model(name, 11, 128).eval()


# ------------------------------------------------------------------- CPU results unchanged


def test_cpu_results_equal_the_record_from_before_the_device_settings(tiny_data):
    """Probes (features, fitted probes, accuracies), Taylor scores and slimming's sparsity
    training on a CPU are bit for bit those of the code before; asking for bf16 and a loading
    thread on a CPU changes nothing (mixed precision is CUDA-only, threads only read ahead)."""
    cnn = _seeded("cnn1d")
    report = probes.diagnose_collapse(cnn, tiny_data, device="cpu", max_train=200, max_val=100,
                                      probe_optimizer="lbfgs", probe_steps=5, probe_batch_size=64, seed=1,
                                      mixed_precision="bf16", loader_workers=1)
    assert [[p["accuracy"], p["train_accuracy"]] for p in report["points"]] == RECORD["probes_lbfgs"]
    assert report["config"]["device"] == "cpu" and report["config"]["mixed_precision"] == "off"

    for extra in ({}, {"mixed_precision": "fp16", "loader_workers": 2}):
        scores = importance.taylor_scores(cnn, channel_groups(cnn, "cnn1d"), tiny_data, num_batches=2,
                                          batch_size=16, seed=3, device=CPU, **extra)
        assert _sha256([a for name in sorted(scores) for a in scores[name]]) == RECORD["taylor"]

    resnet = _seeded("resnet56")
    history = sparsity.sparsity_training(resnet, tiny_data, epochs=1, penalty=1e-4, lr=1e-3, batch_size=16,
                                         max_batches=2, seed=2, device=CPU, mixed_precision="bf16",
                                         loader_workers=1)
    assert history == RECORD["slimming_history"]
    assert _sha256([v.numpy() for v in resnet.state_dict().values()]) == RECORD["slimming_weights"]

    x, y, _ = tiny_data.split("train")
    features, predictions = probes.collect_features(cnn, x[:200], ["stacks.2", "stem"], pooling="gap+gmp",
                                                    batch_size=64, device=CPU)
    assert _sha256([features["stacks.2"].numpy(), features["stem"].numpy(), predictions]) == RECORD["features"]
    labels = torch.from_numpy(y[:200].astype(np.int64))
    for optimizer in ("lbfgs", "adam"):
        probe = probes.fit_linear_probe(features["stacks.2"], labels, 11, optimizer=optimizer, steps=5,
                                        batch_size=64, seed=1, device=CPU)
        assert _sha256([probe.weight.numpy(), probe.bias.numpy(), probe.mean.numpy(),
                        probe.scale.numpy()]) == RECORD[f"probe_{optimizer}"]


# ------------------------------------------------------------ the settings reach the steps


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that says it has two CUDA devices (nothing may actually run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


class Spy:
    """Stand-ins for what touches the device: record the device asked for, compute on the CPU."""

    def __init__(self, monkeypatch, model):
        self.moves, self.batches, self.autocasts = [], [], []
        real_batches = fcos.train.batches

        def to(*args, **kwargs):
            self.moves.append(torch.device(args[0] if args else kwargs["device"]))
            return model

        def batches(x, y, batch_size, device, **kwargs):
            self.batches.append((torch.device(device), kwargs.get("workers"), kwargs.get("pin_memory")))
            return real_batches(x, y, batch_size, CPU, **{**kwargs, "pin_memory": False})

        def autocast(device, mode):
            self.autocasts.append((device, mode))
            return contextlib.nullcontext()

        model.to = to  # an instance attribute: the model stays on the CPU
        for module in (importance, sparsity, probes, fcos.train):
            monkeypatch.setattr(module, "batches", batches)
        for module in (importance, sparsity, probes):
            monkeypatch.setattr(module, "autocast", autocast)

    def check(self, device, precision, workers):
        assert self.moves and self.moves[0] == device and self.moves[-1] == CPU  # moved there and back
        assert self.batches and all(b == (device, workers, True) for b in self.batches)
        if precision is not None:
            assert self.autocasts and all(a == (device, precision) for a in self.autocasts)


def test_taylor_and_slimming_compute_on_the_device_they_are_given(fake_cuda, monkeypatch, tiny_data):
    cnn = _seeded("cnn1d")
    reference = importance.taylor_scores(copy.deepcopy(cnn), channel_groups(cnn, "cnn1d"), tiny_data,
                                         num_batches=2, batch_size=16, seed=3, device=CPU)
    spy = Spy(monkeypatch, cnn)
    scores = importance.taylor_scores(cnn, channel_groups(cnn, "cnn1d"), tiny_data, num_batches=2,
                                      batch_size=16, seed=3, device=FAKE_CUDA, mixed_precision="fp16",
                                      loader_workers=3)
    spy.check(FAKE_CUDA, "fp16", 3)
    # fp16's loss scaling (a power of two) is undone exactly: the same scores (float32 here)
    for name in reference:
        for got, expected in zip(scores[name], reference[name]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)

    resnet = _seeded("resnet56")
    spy = Spy(monkeypatch, resnet)
    sparsity.sparsity_training(resnet, tiny_data, epochs=1, penalty=1e-4, lr=1e-3, batch_size=16,
                               max_batches=2, seed=2, device=FAKE_CUDA, mixed_precision="bf16",
                               loader_workers=0)
    spy.check(FAKE_CUDA, "bf16", 0)


def test_probes_and_sr_init_compute_on_the_device_they_are_given(fake_cuda, monkeypatch, tiny_data):
    cnn = _seeded("cnn1d")
    spy = Spy(monkeypatch, cnn)
    fits = []
    real_fit = probes.fit_linear_probe

    def fit(*args, device=None, **kwargs):
        fits.append(device)
        return real_fit(*args, device=CPU, **kwargs)

    monkeypatch.setattr(probes, "fit_linear_probe", fit)
    report = probes.diagnose_collapse(cnn, tiny_data, device="cuda:1", mixed_precision="bf16",
                                      loader_workers=2, max_train=40, max_val=30, probe_steps=2)
    spy.check(FAKE_CUDA, "bf16", 2)
    assert len(fits) == len(report["points"]) and set(fits) == {FAKE_CUDA}  # every probe fit there
    assert report["config"]["device"] == "cuda:1" and report["config"]["mixed_precision"] == "bf16"

    spy = Spy(monkeypatch, cnn)
    x, y, _ = tiny_data.split("val")
    layer.reinitialisation_drops(cnn, layer.removable_names(cnn, 128), x[:40], y[:40], seed=0, batch_size=20,
                                 device=FAKE_CUDA, loader_workers=1)
    spy.check(FAKE_CUDA, None, 1)  # float32 accuracy, like an evaluation


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def checkpoints(tiny_rml2016, tmp_path_factory):
    where = tmp_path_factory.mktemp("device_settings")
    paths = {}
    for name in ("cnn1d", "resnet56"):
        paths[name] = where / f"{name}.pt"
        train_base_model(tiny_rml2016, name, paths[name], {"epochs": 1, "max_batches_per_epoch": 1,
                                                           "batch_size": 16, "device": "cpu"}, progress=False)
    return paths


@pytest.mark.parametrize("method, model, where, function", [
    ("lacd", "cnn1d", lacd_module, "diagnose_collapse"),
    ("lcp", "cnn1d", layer, "diagnose_collapse"),
    ("sr-init", "cnn1d", layer, "reinitialisation_drops"),
    ("taylor", "cnn1d", importance, "taylor_scores"),
    ("slimming", "resnet56", importance, "sparsity_training"),
])
def test_the_run_settings_reach_every_pruning_step_that_computes(fake_cuda, monkeypatch, tmp_path, tiny_rml2016,
                                                                 checkpoints, method, model, where, function):
    """prune_checkpoint(device, mixed_precision, loader_workers) -> prune_model -> the method's
    computing call, for every method that runs the model on data; an explicit method option wins."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(where, function, spy)
    for options, device in (({}, "cuda:1"), ({"device": "cpu"}, "cpu")):
        with pytest.raises(Stop):
            prune_checkpoint(checkpoints[model], tiny_rml2016, method, tmp_path / "p.pt", tmp_path / "p.json",
                             budget=None if method == "lacd" else 0.3, options=options, progress=False,
                             device="cuda:1", mixed_precision="bf16", loader_workers=3)
        got = calls[-1]
        assert torch.device(got["device"]) == torch.device(device)
        assert got["loader_workers"] == 3
        if method != "sr-init":  # SR-init measures accuracy in float32
            assert got["mixed_precision"] == "bf16"
    assert not (tmp_path / "p.pt").exists()


def test_the_run_settings_reach_the_diagnosis(fake_cuda, monkeypatch, tmp_path, tiny_rml2016, checkpoints):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(probes, "diagnose_collapse", spy)
    with pytest.raises(Stop):
        diagnose_checkpoint(checkpoints["cnn1d"], tiny_rml2016, tmp_path / "d.json", options={"pooling": "gmp"},
                            device="cuda:1", mixed_precision="fp16", loader_workers=2)
    assert calls[0]["device"] == "cuda:1" and calls[0]["mixed_precision"] == "fp16"
    assert calls[0]["loader_workers"] == 2 and calls[0]["pooling"] == "gmp"


def test_bad_settings_are_refused_by_name_before_any_work(tmp_path, tiny_rml2016, checkpoints):
    out, record = tmp_path / "p.pt", tmp_path / "p.json"
    cases = [({"device": "cuda"}, "CUDA is not available"), ({"device": "tpu"}, "device='tpu'"),
             ({"mixed_precision": "fp8"}, "mixed_precision='fp8'"), ({"loader_workers": -1}, "loader_workers=-1")]
    assert not torch.cuda.is_available()
    for given, needle in cases:
        for step in ("prune", "diagnose"):
            with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
                if step == "prune":  # l1 never uses the device: the settings are checked anyway
                    prune_checkpoint(checkpoints["cnn1d"], None, "l1", out, record, budget=0.3, **given)
                else:
                    diagnose_checkpoint(checkpoints["cnn1d"], tiny_rml2016, record, **given)
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):  # as a method option too
            prune_checkpoint(checkpoints["cnn1d"], tiny_rml2016, "taylor", out, record, budget=0.3,
                             options=given)
    assert not out.exists() and not record.exists()


def test_seeding_asks_cublas_for_its_deterministic_workspace(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    fcos.train.seed_everything(0)
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own setting is kept
    fcos.train.seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


# --------------------------------------------------------------------------- command line


COMMANDS = {
    "train": ["train", "--data", "d.h5", "--model", "cnn1d", "--out", "m.pt"],
    "finetune": ["finetune", "--checkpoint", "m.pt", "--data", "d.h5", "--out", "f.pt"],
    "prune": ["prune", "taylor", "--checkpoint", "m.pt", "--data", "d.h5", "--out", "p.pt", "--budget", "0.3"],
    "diagnose": ["diagnose", "--checkpoint", "m.pt", "--data", "d.h5", "--out", "r.json"],
    "evaluate": ["evaluate", "--checkpoint", "m.pt", "--data", "d.h5", "--out", "e.json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flags, needle", [
    (["--device", "cuda"], "CUDA is not available on this machine"),
    (["--device", "cuda:0"], "CUDA is not available on this machine"),
    (["--device", "tpu"], "expected 'auto', 'cpu' or 'cuda[:N]'"),
    (["--mixed-precision", "fp8"], "--mixed-precision"),
    (["--loader-workers", "-1"], "expected an integer >= 0"),
    (["--loader-workers", "two"], "expected an integer >= 0"),
    (["--max-in-memory-mb", "-5"], "expected a number of MB >= 0"),
    (["--max-in-memory-mb", "lots"], "expected a number of MB >= 0"),
])
def test_bad_device_flags_exit_2_with_one_line(capsys, command, flags, needle):
    if command == "evaluate" and flags[0] == "--mixed-precision":
        needle = "unrecognized arguments"  # evaluation runs in float32: no such flag
    with pytest.raises(SystemExit) as stop:
        main(COMMANDS[command] + flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_latency_device_flag_is_checked_too(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["latency", "--checkpoint", "m.pt", "--out", "l.json", "--device", "cuda"])
    assert stop.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("command, function, key", [
    ("train", "train_base_model", "overrides"), ("finetune", "finetune_checkpoint", "overrides"),
    ("prune", "prune_checkpoint", "kwargs"), ("diagnose", "diagnose_checkpoint", "kwargs"),
    ("evaluate", "evaluate_to_json", "kwargs"),
])
def test_device_flags_reach_the_library_call(monkeypatch, command, function, key):
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(fcos.api, function, spy)
    flags = ["--device", "cpu", "--loader-workers", "2", "--max-in-memory-mb", "0"]
    if command != "evaluate":
        flags += ["--mixed-precision", "bf16"]
    with pytest.raises(Stop):
        main(COMMANDS[command] + flags)
    args, kwargs = calls[0]
    settings = args[3] if key == "overrides" else kwargs  # TrainConfig fields, or api keywords
    expected = {"device": "cpu", "loader_workers": 2, **({} if command == "evaluate" else {"mixed_precision": "bf16"})}
    assert {k: settings[k] for k in expected} == expected
    assert kwargs["max_in_memory_mb"] == 0.0
    if command == "evaluate":
        assert "mixed_precision" not in kwargs


def test_diagnose_command_writes_the_probe_report_reading_rows_from_the_file(tmp_path, tiny_rml2016, checkpoints,
                                                                             capsys):
    out = tmp_path / "probe.json"
    code = main(["diagnose", "--checkpoint", str(checkpoints["cnn1d"]), "--data", str(tiny_rml2016),
                 "--out", str(out), "--option", "max_train=60", "--option", "max_val=40",
                 "--option", "probe_steps=2", "--device", "cpu", "--loader-workers", "1",
                 "--max-in-memory-mb", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["config"]["device"] == "cpu" and report["n_train"] == 60 and report["n_val"] == 40
    # the same report from in-memory splits with the default settings (threads, rows: same results)
    again = diagnose_checkpoint(checkpoints["cnn1d"], tiny_rml2016, tmp_path / "again.json",
                                options={"max_train": 60, "max_val": 40, "probe_steps": 2}, progress=False)
    assert [p["accuracy"] for p in report["points"]] == [p["accuracy"] for p in again["points"]]
    assert main(["diagnose", "--checkpoint", str(checkpoints["cnn1d"]), "--data", str(tiny_rml2016),
                 "--out", str(tmp_path / "x.json"), "--option", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
