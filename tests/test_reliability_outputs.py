"""Nothing lost, nothing silently wrong (issue 11): outputs never replace inputs, unusable output
paths and numbers are refused in one line, writes are atomic even on a full disk, empty splits
are refused at prepare time, and a resume file is used only by a run from the same start."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcos.cli import main

TRAIN_FAST = ["--epochs", "1", "--max-batches-per-epoch", "1", "--device", "cpu", "--no-progress"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def run_main(argv, capsys) -> tuple[int, list[str]]:
    """The CLI in-process: (exit code, non-empty stderr lines); argparse errors exit via SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    return code, error_lines(capsys)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_rml2016):
    """A prepared dataset and a trained (1 step) checkpoint in one directory."""
    where = tmp_path_factory.mktemp("inputs")
    data = where / "d.h5"
    shutil.copy(tiny_rml2016, data)
    ckpt = where / "m.pt"
    assert main(["train", "--data", str(data), "--model", "cnn1d", "--out", str(ckpt), *TRAIN_FAST]) == 0
    return {"data": data, "ckpt": ckpt}


# --- 1. an output path naming an input is refused by every command that writes -----------------

def _commands(data: Path, ckpt: Path, raw: Path):
    """(command line with OUT placeholder, the input OUT names) for every writing command."""
    return {
        "prepare": (["prepare", "rml2016", "--source", raw, "--out", "OUT"], raw),
        "train": (["train", "--data", data, "--model", "cnn1d", "--out", "OUT", *TRAIN_FAST], data),
        "evaluate-data": (["evaluate", "--data", data, "--checkpoint", ckpt, "--out", "OUT"], data),
        "evaluate-checkpoint": (["evaluate", "--data", data, "--checkpoint", ckpt, "--out", "OUT"], ckpt),
        "prune": (["prune", "l1", "--checkpoint", ckpt, "--out", "OUT", "--budget", "0.5"], ckpt),
        "prune-report": (["prune", "l1", "--checkpoint", ckpt, "--out", data.parent / "p.pt", "--report", "OUT",
                          "--budget", "0.5"], ckpt),
        "finetune": (["finetune", "--checkpoint", ckpt, "--data", data, "--out", "OUT", *TRAIN_FAST], ckpt),
        "export": (["export", "--checkpoint", ckpt, "--data", data, "--format", "onnx", "--out", "OUT"], data),
        "latency": (["latency", "--checkpoint", ckpt, "--out", "OUT", "--repeats", "1"], ckpt),
    }


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
@pytest.mark.parametrize("command", ["prepare", "train", "evaluate-data", "evaluate-checkpoint", "prune",
                                     "prune-report", "finetune", "export", "latency"])
def test_out_naming_an_input_is_refused_and_the_input_is_untouched(command, spelling, inputs, tmp_path,
                                                                    capsys, monkeypatch):
    data, ckpt = tmp_path / "d.h5", tmp_path / "m.pt"
    shutil.copy(inputs["data"], data)
    shutil.copy(inputs["ckpt"], ckpt)
    raw = tmp_path / "RML2016.10a_dict.pkl"
    raw.write_bytes(b"not really a pickle: it must never be read, let alone replaced")
    argv, target = _commands(data, ckpt, raw)[command]
    monkeypatch.chdir(tmp_path)
    out = {"same": target, "relative": Path("sub") / ".." / target.name, "symlink": tmp_path / "link"}[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        out.symlink_to(target)
    before = {p.name: sha256(p) for p in (data, ckpt, raw)}
    listing = sorted(os.listdir(tmp_path))
    code, lines = run_main([out if a == "OUT" else a for a in argv], capsys)
    assert code == 2
    assert len(lines) == 1 and str(out) in lines[0] and "is the input" in lines[0], lines
    assert {p.name: sha256(p) for p in (data, ckpt, raw)} == before
    assert sorted(os.listdir(tmp_path)) == listing, "nothing written, no temporary file left"


# --- 9. an output that is a directory, under a file or in an unwritable place -------------------

@pytest.mark.parametrize("command", ["prepare", "train", "evaluate"])
@pytest.mark.parametrize("problem", ["directory", "under-a-file"])
def test_unusable_out_paths_give_one_line(command, problem, inputs, tmp_path, capsys):
    blocker = tmp_path / "plain.txt"
    blocker.write_text("a regular file\n")
    out = {"directory": tmp_path, "under-a-file": blocker / "x.out"}[problem]
    argv = {"prepare": ["prepare", "rml2016", "--source", "synthetic", "--per-class-snr", 3, "--out", out],
            "train": ["train", "--data", inputs["data"], "--model", "cnn1d", "--out", out, *TRAIN_FAST],
            "evaluate": ["evaluate", "--data", inputs["data"], "--checkpoint", inputs["ckpt"], "--out", out]}
    code, lines = run_main(argv[command], capsys)
    assert code == 2 and len(lines) == 1 and str(out) in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["plain.txt"]


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): "
                    f"the disk-full / read-only cases need one")


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs (options given by the test) under tmp_path; unmounted afterwards."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        _mount_tmpfs(where, options)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_out_in_a_read_only_directory_is_refused(tmpfs, inputs, capsys):
    read_only = tmpfs("size=1m,ro")
    out = read_only / "metrics.json"
    code, lines = run_main(["evaluate", "--data", inputs["data"], "--checkpoint", inputs["ckpt"], "--out", out],
                           capsys)
    assert code == 2 and len(lines) == 1 and "not writable" in lines[0] and str(read_only) in lines[0], lines


# --- 5. disk full: one line, nothing half-written, no temporary file left -----------------------

def _fill(directory: Path) -> None:
    """Fill the file system holding ``directory`` to the last byte (unbuffered writes, ever smaller)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_prepare_onto_a_full_disk_ends_with_one_line(tmpfs):
    full = tmpfs("size=1m")
    out = full / "d.h5"
    # A subprocess: HDF5 used to crash (exit 139) in this case, which would take pytest down.
    done = subprocess.run([sys.executable, "-m", "fcos", "prepare", "rml2016", "--source", "synthetic",
                           "--per-class-snr", "20", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"cannot write {out}: No space left on device" in lines[0]
    assert os.listdir(full) == [], "no partial or hidden temporary file is left"


@pytest.mark.parametrize("command", ["evaluate", "prune", "train"])
def test_writes_onto_a_full_disk_end_with_one_line_and_leave_nothing(command, tmpfs, inputs, capsys):
    full = tmpfs("size=256k")
    _fill(full)
    out = full / "out.file"
    argv = {"evaluate": ["evaluate", "--data", inputs["data"], "--checkpoint", inputs["ckpt"], "--out", out],
            "prune": ["prune", "l1", "--checkpoint", inputs["ckpt"], "--out", out, "--budget", "0.5",
                      "--no-progress"],
            "train": ["train", "--data", inputs["data"], "--model", "cnn1d", "--out", out, *TRAIN_FAST]}
    code, lines = run_main(argv[command], capsys)
    lines = [line for line in lines if "error" in line]
    assert code == 2 and len(lines) == 1, lines
    assert "cannot write" in lines[0] and str(out) in lines[0] and "No space left on device" in lines[0]
    assert os.listdir(full) == ["filler"], "no output, no record, no temporary file"


def test_prune_writes_the_checkpoint_before_its_record(inputs, tmp_path, monkeypatch, capsys):
    """If the checkpoint cannot be written, no record describing it appears."""
    import fcos.io as io_module

    def refuse(path, payload):
        raise io_module.OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(io_module, "save_checkpoint", refuse)
    out = tmp_path / "p.pt"
    code, lines = run_main(["prune", "l1", "--checkpoint", inputs["ckpt"], "--out", out, "--budget", "0.5",
                            "--no-progress"], capsys)
    assert code == 2 and len(lines) == 1
    assert os.listdir(tmp_path) == []


# --- 9. numbers out of range: one seed rule for every command ---------------------------------

@pytest.mark.parametrize("seed", ["-1", str(10**23), str(2**32)])
@pytest.mark.parametrize("command", ["prepare", "samples", "train", "prune", "finetune"])
def test_seeds_outside_0_to_2_32_are_refused_by_every_command(command, seed, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {"prepare": ["prepare", "rml2016", "--source", "synthetic", "--out", out],
            "samples": ["samples", "--out", out],
            "train": ["train", "--data", inputs["data"], "--model", "cnn1d", "--out", out],
            "prune": ["prune", "l1", "--checkpoint", inputs["ckpt"], "--out", out],
            "finetune": ["finetune", "--checkpoint", inputs["ckpt"], "--data", inputs["data"], "--out", out]}
    code, lines = run_main([*argv[command], "--seed", seed], capsys)
    assert code == 2 and len(lines) == 1 and "--seed" in lines[0] and "[0, 2**32)" in lines[0], lines
    assert os.listdir(tmp_path) == []


def test_the_library_applies_the_same_seed_rule():
    from fcos.data import prepare_dataset
    from fcos.errors import ConfigError
    from fcos.train import TrainConfig

    with pytest.raises(ConfigError, match=r"train\.seed.*\[0, 2\*\*32\)"):
        TrainConfig(seed=-1).validate()
    with pytest.raises(ConfigError, match=r"seed.*\[0, 2\*\*32\)"):
        prepare_dataset("rml2016", "synthetic", "never.h5", per_class_snr=3, seed=2**32)
    assert TrainConfig(seed=2**32 - 1).validate().seed == 2**32 - 1
    assert not Path("never.h5").exists()


def test_an_impossible_synthetic_size_is_refused_before_allocating(tmp_path, capsys):
    code, lines = run_main(["prepare", "rml2016", "--source", "synthetic", "--per-class-snr", 10**12,
                            "--out", tmp_path / "d.h5"], capsys)
    assert code == 2 and len(lines) == 1 and "per_class_snr" in lines[0] and "GiB" in lines[0], lines
    assert os.listdir(tmp_path) == []


# --- 10. empty splits are refused at prepare time -------------------------------------------------

def test_prepare_refuses_empty_splits_and_names_the_smallest_size_that_works(tmp_path, capsys):
    code, lines = run_main(["prepare", "rml2016", "--source", "synthetic", "--per-class-snr", 2,
                            "--out", tmp_path / "d.h5", "--no-progress"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "val and test" in lines[0] and "per_class_snr that fills every split is 3" in lines[0]
    assert os.listdir(tmp_path) == []
    # the size it names does work: every split gets frames (3 per group: one each)
    from fcos.data import prepare_dataset

    manifest = prepare_dataset("rml2016", "synthetic", tmp_path / "d.h5", per_class_snr=3, progress=False)
    assert manifest["counts"] == {"train": 220, "val": 220, "test": 220, "total": 660}


# --- 2 & 12. resume only from the same starting model; CUDA random state saved too ---------------

def _interrupted_run(data, config, out, monkeypatch, seed):
    import fcos.train as train_module
    from fcos.models import build_model
    from fcos.train import seed_everything, train_model

    real_save = train_module.save_checkpoint

    def save_then_die(path, payload):
        real_save(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    seed_everything(seed)
    with pytest.raises(KeyboardInterrupt):
        train_model(build_model("cnn1d", 11, 128), data, config, out, model_info=INFO, progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)


INFO = {"name": "cnn1d", "num_classes": 11, "length": 128}


def test_a_resume_file_left_by_another_starting_model_is_not_used(tiny_data, tmp_path, monkeypatch, caplog):
    from fcos.models import build_model
    from fcos.train import TrainConfig, resume_path_for, seed_everything, train_model

    config = TrainConfig(epochs=2, batch_size=64, max_batches_per_epoch=2, device="cpu", seed=3)
    out = tmp_path / "m.pt"
    _interrupted_run(tiny_data, config, out, monkeypatch, seed=1)  # model A: init seed 1
    assert resume_path_for(out).exists()

    seed_everything(2)  # model B: same architecture, other weights
    model_b = build_model("cnn1d", 11, 128)
    with caplog.at_level(logging.WARNING, logger="fcos.train"):
        record = train_model(model_b, tiny_data, config, out, model_info=INFO, progress=False)
    assert [r.getMessage() for r in caplog.records if "starting weights" in r.getMessage()], caplog.text
    assert not any("resuming" in r.getMessage() for r in caplog.records)
    assert len(record["history"]) == 2

    # Independent reference: model B trained from scratch without any resume file.
    seed_everything(2)
    reference = build_model("cnn1d", 11, 128)
    train_model(reference, tiny_data, config, tmp_path / "ref.pt", model_info=INFO, progress=False)
    got = torch.load(out, weights_only=True)["state_dict"]
    want = torch.load(tmp_path / "ref.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_the_cuda_random_state_is_saved_and_restored(monkeypatch):
    """On a CUDA machine every device's random state goes into the resume file and comes back."""
    import fcos.train as train_module

    fake_states = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in fake_states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    state = train_module._rng_state()
    assert torch.equal(state["torch_rng"], torch.get_rng_state())
    assert [s.tolist() for s in state["cuda_rng"]] == [[1, 2, 3], [4, 5]]
    train_module._restore_rng(state)
    assert [[s.tolist() for s in states] for states in restored] == [[[1, 2, 3], [4, 5]]]


# --- 11. config: pruner_options keys checked, a schema error is one line naming the key ----------

ROOT = Path(__file__).resolve().parents[1]


def _test_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


@pytest.mark.parametrize("patch, key, expected", [
    ({"train": {"epochs": "four"}}, "train.epochs", "integer"),
    ({"train": {"epochz": 3}}, "train", "epochz"),
    ({"models": ["cnn1d", "vgg16"]}, "models.1", "vgg16"),
    ({"budgets": [1.5]}, "budgets.0", "1.5"),
])
def test_a_schema_error_is_one_line_naming_the_key(patch, key, expected):
    from fcos.config_check import schema_problem

    schema = ROOT / "config" / "schema.yaml"
    assert schema_problem(_test_config(), schema) is None
    problem = schema_problem({**_test_config(), **patch}, schema)
    assert problem is not None and "\n" not in problem and len(problem) < 300, problem
    assert f"config key '{key}'" in problem and expected in problem


def test_method_options_for_unknown_pruning_methods_are_refused():
    from fcos.errors import ConfigError
    from fcos.prune import PRUNERS, load_pruners
    from fcos.prune.chains import check_pruner_options, step_pruners

    load_pruners()
    assert step_pruners() == sorted(PRUNERS), "the workflow's method names are the registry's"
    check_pruner_options(_test_config()["pruner_options"])
    with pytest.raises(ConfigError, match=r"^config key 'pruner_options\.magic': unknown pruner"):
        check_pruner_options({"lacd": {}, "magic": {"x": 1}})
    with pytest.raises(ConfigError, match=r"^config key 'pruner_options\.lacd': expected a mapping"):
        check_pruner_options({"lacd": 3})
