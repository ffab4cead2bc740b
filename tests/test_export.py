"""fcos export: ONNX and TorchScript files of pruned models, checked on export, and run without fcos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fcos.api import prune_checkpoint, train_base_model
from fcos.checkpoint import model_from_checkpoint
from fcos.cli import main
from fcos.data import load_prepared
from fcos.errors import ExportError
from fcos.export import export_checked, read_description

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("torchscript", "onnx")
#: The pruned structures every exporter must handle: fused channels (ResNet56's shortcut channel
#: map edited), selected channels, and fused channels plus removed blocks (identities, CNN1D
#: stack projections): FCOS's final structure.
KINDS = ("fused", "channel", "fused+blocks")

# torch >= 2.10 calls TorchScript deprecated on every torch.jit call; loading is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_rml2016):
    """{(model, kind): checkpoint path} for briefly trained CNN1D and ResNet56, pruned three ways."""
    work = tmp_path_factory.mktemp("export")
    paths = {}
    for name in ("cnn1d", "resnet56"):
        base = work / f"{name}.pt"
        train_base_model(tiny_rml2016, name, base, {"epochs": 1, "max_batches_per_epoch": 2, "device": "cpu"},
                         progress=False)
        fused, channel, blocks = (work / f"{name}-{kind}.pt" for kind in KINDS)
        prune_checkpoint(base, None, "fcos-stage1", fused, work / "r1.json", budget=0.8, progress=False)
        prune_checkpoint(base, None, "l1", channel, work / "r2.json", budget=0.5, progress=False)
        prune_checkpoint(fused, None, "random-layer", blocks, work / "r3.json", budget=0.97, progress=False)
        paths.update({(name, "fused"): fused, (name, "channel"): channel, (name, "fused+blocks"): blocks})
    return paths


def test_the_fixture_covers_every_replacement_kind(checkpoints):
    kinds = set()
    for path in checkpoints.values():
        payload = torch.load(path, weights_only=True)
        kinds |= set((payload["architecture"].get("removed_blocks") or {}).values())
    assert {"identity", "stack-projection1d", "stack-projection2d"} <= kinds


def _test_inputs(data_path, count):
    return load_prepared(data_path).split("test")[0][:count].astype(np.float32)


@pytest.fixture(scope="module")
def exported(checkpoints, tiny_rml2016, tmp_path_factory):
    """{(model, kind, format): file} written by the real CLI (in-process); ``.messages`` holds
    what it printed for each."""
    import contextlib
    import io

    class Files(dict):
        messages: dict

    work = tmp_path_factory.mktemp("exported")
    files = Files()
    files.messages = {}
    for (model, kind), checkpoint in checkpoints.items():
        for fmt in FORMATS:
            out = work / f"{model}-{kind}.{fmt}"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out),
                             "--data", str(tiny_rml2016), "--check-examples", "32"])
            assert code == 0
            files[(model, kind, fmt)] = out
            files.messages[(model, kind, fmt)] = printed.getvalue()
    return files


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", ("cnn1d", "resnet56"))
def test_export_round_trip(model, kind, fmt, checkpoints, exported, tiny_rml2016):
    checkpoint, out = checkpoints[(model, kind)], exported[(model, kind, fmt)]
    payload = torch.load(checkpoint, weights_only=True)
    description = read_description(out)
    assert description["model"] == payload["model"] and len(description["classes"]) == 11
    assert description["architecture"] == payload["architecture"]
    # reload with the format's own runtime, at batch sizes the export never saw
    reference = model_from_checkpoint(payload)
    for size in (1, 5):
        x = _test_inputs(tiny_rml2016, size)
        with torch.inference_mode():
            expected = reference(torch.from_numpy(x)).numpy()
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = session.run(None, {"x": x})[0]
        else:
            got = torch.jit.load(str(out))(torch.from_numpy(x)).numpy()
        assert got.shape == (size, 11)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_cli_export_reports_the_check(exported):
    message = exported.messages[("cnn1d", "fused+blocks", "onnx")]
    out = exported[("cnn1d", "fused+blocks", "onnx")]
    assert message.startswith(f"wrote {out} (onnx): outputs equal the PyTorch model's within")
    assert message.rstrip().endswith("at batch sizes 1, 32, run by onnxruntime")


# The exported file in a fresh interpreter that cannot import fcos: -I ignores PYTHONPATH and
# the user site and does not put the script's or the working directory on sys.path; a meta-path
# hook refuses fcos even though the package is installed (editable) in this environment.
RUN_WITHOUT_FCOS = r'''
import sys
root, fmt, model, inputs, out = sys.argv[1:6]
sys.path[:] = [p for p in sys.path if p.rstrip("/") != root.rstrip("/")]


class NoFcos:
    def find_spec(self, name, path=None, target=None):
        if name == "fcos" or name.startswith("fcos."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None


sys.meta_path.insert(0, NoFcos())
try:
    import fcos
except ImportError:
    pass
else:
    raise SystemExit("the guard failed: fcos is importable")
import numpy as np

x = np.load(inputs)
if fmt == "onnx":
    import onnxruntime

    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert "torch" not in sys.modules, "ONNX Runtime alone must run the file"
else:
    import torch

    y = torch.jit.load(model)(torch.from_numpy(x)).numpy()
assert not [m for m in sys.modules if m == "fcos" or m.startswith("fcos.")]
np.save(out, y)
print("ran without fcos", y.shape)
'''


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_file_runs_where_fcos_cannot_be_imported(fmt, checkpoints, exported, tiny_rml2016, tmp_path):
    script = tmp_path / "run_exported.py"
    script.write_text(RUN_WITHOUT_FCOS)
    x = _test_inputs(tiny_rml2016, 7)
    np.save(tmp_path / "x.npy", x)
    for model in ("cnn1d", "resnet56"):
        proc = subprocess.run([sys.executable, "-I", str(script), str(ROOT), fmt,
                               str(exported[(model, "fused+blocks", fmt)]), str(tmp_path / "x.npy"),
                               str(tmp_path / "y.npy")],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ran without fcos (7, 11)" in proc.stdout
        with torch.inference_mode():
            expected = model_from_checkpoint(checkpoints[(model, "fused+blocks")])(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4, rtol=0)


class DivergesWhenScripted(nn.Module):
    """Eager and TorchScript disagree: what the export check must catch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return x.mean(dim=2) + 1.0
        return x.mean(dim=2)


class DivergesWhenExported(nn.Module):
    """Eager and the torch.export graph (hence ONNX) disagree."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return x.mean(dim=2) + 1.0
        return x.mean(dim=2)


@pytest.mark.parametrize("fmt, module", [("torchscript", DivergesWhenScripted()),
                                         ("onnx", DivergesWhenExported())])
def test_export_refuses_a_file_whose_outputs_differ(fmt, module, tmp_path):
    out = tmp_path / "model.out"
    out.write_bytes(b"previous")
    with pytest.raises(ExportError, match=r"differ from the PyTorch model's by up to 1 .*not written"):
        export_checked(module, fmt, out, torch.randn(6, 2, 16))
    assert out.read_bytes() == b"previous", "a refused export leaves the destination untouched"
    assert [p.name for p in tmp_path.iterdir()] == ["model.out"], "no temporary file left behind"


def test_cli_export_refusal_is_exit_2_and_one_line(checkpoints, tiny_rml2016, tmp_path, monkeypatch, capsys):
    import fcos.export

    real = fcos.export.run_exported
    monkeypatch.setattr(fcos.export, "run_exported", lambda runner, x: real(runner, x) + 1e-3)
    out = tmp_path / "m.ts"
    code = main(["export", "--checkpoint", str(checkpoints[("cnn1d", "fused")]), "--format", "torchscript",
                 "--out", str(out), "--data", str(tiny_rml2016), "--check-examples", "8"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and err.startswith(f"fcos: error: {out}: exported outputs differ")


def test_cli_export_errors(checkpoints, tiny_rml2016, tmp_path, capsys):
    checkpoint = checkpoints[("cnn1d", "fused")]
    cases = [
        (["--format", "onnx", "--out", str(checkpoint), "--data", str(tiny_rml2016)], "is the input"),
        (["--format", "onnx", "--out", str(tmp_path / "x.onnx"), "--data", str(tmp_path / "none.h5")],
         "none.h5"),
        (["--format", "tflite", "--out", str(tmp_path / "x"), "--data", str(tiny_rml2016)], "tflite"),
    ]
    for args, needle in cases:
        try:
            code = main(["export", "--checkpoint", str(checkpoint), *args])
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
        err = capsys.readouterr().err
        assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_signet50_exports_after_block_and_channel_pruning(tmp_path):
    """SigNet50 (S2M operator, bottlenecks) at a short length, pruned without data."""
    from fcos.models import build_model
    from fcos.prune import prune_model

    torch.manual_seed(0)
    model = build_model("signet50", 11, 32).eval()
    model = prune_model("random-layer", model, model_name="signet50", budget=0.3).model
    model = prune_model("l1", model, model_name="signet50", budget=0.5).model.eval()
    x = torch.randn(6, 2, 32) * 0.01  # the scale of L1-normalised I/Q vectors
    for fmt in FORMATS:
        record = export_checked(model, fmt, tmp_path / f"signet50.{fmt}", x, description={"model": "signet50"})
        assert record["max_abs_diff"] <= 1e-4 and record["batch_sizes"] == [1, 6]
        assert json.dumps(read_description(tmp_path / f"signet50.{fmt}")) == '{"model": "signet50"}'
