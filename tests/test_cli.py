"""The `fcos` command line: a full round trip on a tiny synthetic set, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fcos.checkpoint import model_from_checkpoint
from fcos.cli import main
from fcos.data import load_prepared


def run_cli(*args, cwd=None):
    """Run the real console entry point in a subprocess (as a user would)."""
    return subprocess.run([sys.executable, "-m", "fcos", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_round_trip_prepare_inspect_train_evaluate_profile(tmp_path):
    data, ckpt, metrics = tmp_path / "d.h5", tmp_path / "m.pt", tmp_path / "metrics.json"
    r = run_cli("prepare", "rml2016", "--source", "synthetic", "--out", data, "--per-class-snr", 8,
                "--seed", 1, "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run_cli("inspect", data)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest["dataset"] == "rml2016" and manifest["length"] == 128
    assert len(manifest["classes"]) == 11 and manifest["snrs"][0] == -20
    assert sum(manifest["counts"][s] for s in ("train", "val", "test")) == 11 * 20 * 8
    assert len(manifest["sha256"]["overall"]) == 64

    r = run_cli("train", "--data", data, "--model", "cnn1d", "--out", ckpt, "--epochs", 1,
                "--max-batches-per-epoch", 2, "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", "--data", data, "--checkpoint", ckpt, "--out", metrics, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    m = json.loads(metrics.read_text())
    # the accuracy is the checkpoint's model's on the test split, predicted here by hand
    x_test, y_test, _ = load_prepared(data).split("test")
    with torch.no_grad():
        predicted = model_from_checkpoint(ckpt)(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    assert m["accuracy"] == pytest.approx(float((predicted == y_test).mean()), abs=1e-12)
    assert sum(m["confusion"][c][c] for c in range(11)) == int((predicted == y_test).sum())
    assert m["n_test"] == manifest["counts"]["test"]
    assert sorted(int(s) for s in m["per_snr"]) == manifest["snrs"]
    assert len(m["confusion"]) == 11 and sum(map(sum, m["confusion"])) == m["n_test"]

    # FCOS by hand: stage 1 at keep-ratio 0.5, LaCD, recovery fine-tuning, evaluation
    stage1, lacd, tuned = tmp_path / "s1.pt", tmp_path / "lacd.pt", tmp_path / "ft.pt"
    r = run_cli("prune", "fcos-stage1", "--checkpoint", ckpt, "--out", stage1, "--keep-ratio", 0.5, "--no-progress")
    assert r.returncode == 0, r.stderr
    s1 = json.loads((tmp_path / "s1.pt.json").read_text())
    assert s1["macs_after"] < s1["macs_before"] and s1["pruner"] == "fcos-stage1"
    # probes on a subset (the default uses every train frame): --option reaches the method
    r = run_cli("prune", "lacd", "--checkpoint", stage1, "--data", data, "--out", lacd,
                "--report", tmp_path / "lacd.json", "--option", "max_train=200", "--option", "max_val=100",
                "--option", "probe_steps=20", "--no-progress")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "lacd.json").read_text())
    assert (report["details"]["n_train"], report["details"]["n_val"]) == (200, 100)
    # the stem and each of CNN1D's six stacks were probed, in depth order
    assert [p["name"] for p in report["details"]["points"]] == ["stem"] + [f"stacks.{i}" for i in range(6)]
    assert report["macs_after"] <= s1["macs_after"]
    r = run_cli("finetune", "--checkpoint", lacd, "--data", data, "--out", tuned, "--epochs", 1,
                "--max-batches-per-epoch", 2, "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", "--data", data, "--checkpoint", tuned, "--out", tmp_path / "ft.json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    ft = json.loads((tmp_path / "ft.json").read_text())
    assert ft["macs"] == report["macs_after"] and ft["base_macs"] == m["macs"]
    assert [step["pruner"] for step in ft["prune_steps"]] == ["fcos-stage1", "lacd"]

    r = run_cli("profile", "--model", "cnn1d", "--dataset", "rml2016")
    assert r.returncode == 0, r.stderr
    cost = json.loads(r.stdout)
    assert cost["macs"] == m["macs"] and cost["params"] == m["params"]


@pytest.mark.parametrize("argv, needle", [
    (["prepare", "rml1999", "--source", "synthetic", "--out", "x.h5"], "rml1999"),
    (["profile", "--model", "vgg", "--dataset", "rml2016"], "vgg"),
    (["inspect", "missing.h5"], "missing.h5"),
    (["evaluate", "--data", "missing.h5", "--checkpoint", "m.pt", "--out", "o.json"], "missing.h5"),
    (["prepare", "rml2016", "--source", "synthetic", "--out", "x.h5", "--per-class-snr", "0"], "per-class-snr"),
    (["prepare", "rml2016", "--source", "synthetic", "--out", "x.h5", "--test-fraction", "1.5"], "test-fraction"),
    (["train", "--data", "d.h5", "--out", "x.pt"], "--model"),
    (["frobnicate"], "frobnicate"),
    (["prune", "magic", "--checkpoint", "m.pt", "--out", "x.pt"], "m.pt"),
    (["prune", "l1", "--checkpoint", "m.pt", "--out", "x.pt", "--budget", "2"], "budget"),
    (["finetune", "--checkpoint", "missing.pt", "--data", "d.h5", "--out", "x.pt"], "missing.pt"),
])
def test_user_errors_exit_2_with_one_line(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert not (tmp_path / "x.h5").exists()
