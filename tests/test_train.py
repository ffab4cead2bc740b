"""Training: determinism, best-on-val selection, resumability, safe checkpoints."""

from __future__ import annotations

import pytest
import torch

from fcos.api import train_base_model
from fcos.checkpoint import model_from_checkpoint
from fcos.data import load_prepared
from fcos.errors import CheckpointError, ConfigError
from fcos.io import load_checkpoint, save_checkpoint
from fcos.train import TrainConfig, resume_path_for, seed_everything, train_model
from fcos.models import build_model

QUICK = {"epochs": 2, "batch_size": 64, "max_batches_per_epoch": 4, "device": "cpu"}


def _weights(path):
    return load_checkpoint(path)["state_dict"]


def test_same_seed_gives_identical_weights_and_history(tiny_rml2016, tmp_path):
    a = train_base_model(tiny_rml2016, "cnn1d", tmp_path / "a.pt", QUICK | {"seed": 3}, progress=False)
    b = train_base_model(tiny_rml2016, "cnn1d", tmp_path / "b.pt", QUICK | {"seed": 3}, progress=False)
    wa, wb = _weights(tmp_path / "a.pt"), _weights(tmp_path / "b.pt")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_different_seed_gives_different_weights(tiny_rml2016, tmp_path):
    train_base_model(tiny_rml2016, "cnn1d", tmp_path / "a.pt", QUICK | {"seed": 0}, progress=False)
    train_base_model(tiny_rml2016, "cnn1d", tmp_path / "b.pt", QUICK | {"seed": 1}, progress=False)
    wa, wb = _weights(tmp_path / "a.pt"), _weights(tmp_path / "b.pt")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_keeps_best_validation_epoch_and_reloads_weights_only(tiny_rml2016, tmp_path):
    out = tmp_path / "m.pt"
    record = train_base_model(tiny_rml2016, "cnn1d", out, QUICK | {"epochs": 3}, progress=False)
    vals = [h["val_accuracy"] for h in record["history"]]
    assert record["best_val_accuracy"] == max(vals)
    assert record["best_epoch"] == vals.index(max(vals)) + 1
    payload = torch.load(out, weights_only=True)  # the safe loader accepts the whole payload
    assert payload["model"] == {"name": "cnn1d", "num_classes": 11, "length": 128}
    assert payload["dataset"]["sha256"] == load_prepared(tiny_rml2016).manifest["sha256"]["overall"]
    model = model_from_checkpoint(out)
    x = torch.randn(2, 2, 128)
    assert model(x).shape == (2, 11)
    assert not resume_path_for(out).exists(), "the resume file is removed once training ends"


def test_interrupted_run_resumes_to_the_same_result(tiny_rml2016, tmp_path, monkeypatch):
    data = load_prepared(tiny_rml2016)
    info = {"name": "cnn1d", "num_classes": 11, "length": 128}
    config = TrainConfig(**(QUICK | {"epochs": 3, "seed": 5}))

    seed_everything(5)
    train_model(build_model("cnn1d", 11, 128), data, config, tmp_path / "full.pt", model_info=info, progress=False)

    # Interrupt the second run right after epoch 2's resume state is written.
    import fcos.train as train_module

    real_save = train_module.save_checkpoint
    calls = {"n": 0}

    def save_then_die(path, payload):
        real_save(path, payload)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    seed_everything(5)
    with pytest.raises(KeyboardInterrupt):
        train_model(build_model("cnn1d", 11, 128), data, config, tmp_path / "resumed.pt", model_info=info,
                    progress=False)
    assert not (tmp_path / "resumed.pt").exists(), "no final checkpoint from an interrupted run"
    assert resume_path_for(tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)

    # The restarted job rebuilds the same starting model (same seed), then the global RNG is
    # scrambled: the run must continue from the resume file's weights and random state.
    seed_everything(5)
    restarted = build_model("cnn1d", 11, 128)
    torch.manual_seed(99)
    record = train_model(restarted, data, config, tmp_path / "resumed.pt", model_info=info, progress=False)
    assert len(record["history"]) == 3
    full, resumed = _weights(tmp_path / "full.pt"), _weights(tmp_path / "resumed.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_l1_penalty_auto_follows_the_authors_recipe():
    config = TrainConfig()
    assert config.resolved_l1("resnet56") == pytest.approx(1e-4)
    assert config.resolved_l1("cnn1d") == 0.0
    assert TrainConfig(l1_penalty=0.5).resolved_l1("resnet56") == 0.5


@pytest.mark.parametrize("values, key", [
    ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"lr_gamma": 2.0}, "lr_gamma"),
    ({"l1_penalty": "lots"}, "l1_penalty"), ({"bogus": 1}, "bogus"), ({"device": "tpu"}, None),
])
def test_bad_train_options_are_refused_naming_the_key(values, key, tiny_rml2016, tmp_path):
    with pytest.raises(ConfigError) as err:
        train_base_model(tiny_rml2016, "cnn1d", tmp_path / "x.pt", QUICK | values, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert (key or "device") in message
    assert not (tmp_path / "x.pt").exists()


def test_unsafe_or_foreign_checkpoints_are_refused(tmp_path):
    import argparse

    evil = tmp_path / "evil.pt"  # an arbitrary (non-allow-listed) object: refused, never built
    torch.save({"state_dict": {}, "obj": argparse.Namespace(cmd="rm -rf /")}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, {"weights": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
