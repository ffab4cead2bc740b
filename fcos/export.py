"""Export a (pruned) model as an ordinary deployable file: ONNX or TorchScript.

The exported file needs neither this package nor Python model code: a TorchScript archive loads
with ``torch.jit.load`` alone, an ONNX file with ONNX Runtime alone. Both take float32 input
``x`` of shape (batch, 2, L) with a dynamic batch axis and return logits (batch, num_classes).

- TorchScript: ``torch.jit.script`` of the eval-mode model (control flow kept, no tracing
  assumptions), then ``torch.jit.freeze`` (weights become constants, BatchNorm folded into the
  preceding convolution). The fcos description (model, classes, length, architecture record)
  is stored in the archive as the extra file ``fcos.json``.
- ONNX: ``torch.onnx.export`` with the ``torch.export``-based exporter (``dynamo=True``, the
  default of torch >= 2.9; it needs ``onnxscript``), one self-contained file, the same
  description in the model's metadata (key ``fcos``).

Every export is checked before it is kept (:func:`check_exported`): the file is loaded with its
own runtime and its outputs must equal the PyTorch model's within ``atol`` (default 1e-4) on
real inputs, at batch size 1 and at a large batch (which also checks the dynamic batch axis).
The file is written under a temporary name and renamed only when the check passes; otherwise
:class:`fcos.errors.ExportError` is raised and nothing is left at the destination.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, ExportError, FcosError
from .io import atomic_path
from .latency import torchscript_deprecation_silenced

FORMATS = ("onnx", "torchscript")
#: Largest accepted absolute difference between exported and PyTorch logits.
DEFAULT_ATOL = 1e-4
#: Input and output names in the exported graph.
INPUT_NAME, OUTPUT_NAME = "x", "logits"
METADATA_KEY = "fcos"


def export_model(model: nn.Module, fmt: str, out: str | Path, example: torch.Tensor,
                 description: dict[str, Any] | None = None) -> None:
    """Write ``model`` (eval mode, CPU) to ``out`` in format ``fmt``; no check (see export_checked).

    ``example`` is an input batch (B >= 2, 2, L) used to trace the ONNX graph (B >= 2 so that
    the batch axis is not specialised to 1); ``description`` is stored in the file as JSON.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    model = model.eval().cpu()
    text = json.dumps(description or {}, sort_keys=True)
    if fmt == "torchscript":
        with torchscript_deprecation_silenced():
            try:
                scripted = torch.jit.freeze(torch.jit.script(model))
            except Exception as err:  # TorchScript's compiler raises several types
                raise ExportError(f"TorchScript compilation of the model failed ({_first_line(err)})") from None
            torch.jit.save(scripted, str(out), _extra_files={f"{METADATA_KEY}.json": text})
        return
    _require_onnx_exporter()
    import onnx

    batch = torch.export.Dim("batch", min=1)
    # The exporter and its optimiser log every pass (and a warning per optional torchvision
    # operator they cannot register) and torch.export warns about its own internals: none of
    # it concerns the user, whose file is checked below.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME],
                                        dynamic_shapes={"x": {0: batch}}, dynamo=True,
                                        external_data=False, verbose=False)
    except Exception as err:  # the exporter raises many types; the cause is in its first line
        raise ExportError(f"ONNX export of the model failed ({_first_line(err)})") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    onnx.save_model(proto, str(out))


def _require_onnx_exporter() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise FcosError(f"ONNX export needs {', '.join(missing)}: pip install 'fcos-amr[onnx]'")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_exported(runner, x: torch.Tensor) -> np.ndarray:
    """Logits of an exported-file runner (fcos.latency.exported_runner) for the CPU batch ``x``."""
    out = runner.call(runner.prepare(x))
    if isinstance(out, list):  # ONNX Runtime returns one array per graph output
        out = out[0]
    return np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out)


def check_exported(path: str | Path, model: nn.Module, inputs: torch.Tensor,
                   atol: float = DEFAULT_ATOL, label: str | Path | None = None) -> dict[str, Any]:
    """Compare the exported file's logits with ``model``'s on ``inputs`` (N, 2, L).

    The file is run by its own runtime (TorchScript: torch.jit.load; ONNX: ONNX Runtime), at
    batch size 1 (the first example) and at N. Returns ``{"atol", "max_abs_diff",
    "batch_sizes", "runtime"}``; raises ExportError when a difference exceeds ``atol`` or an
    output shape differs (its message starts with ``label``, default ``path``).
    """
    from .latency import exported_runner

    model = model.eval().cpu()
    runner = exported_runner(path)
    worst = 0.0
    sizes = sorted({1, int(inputs.shape[0])})
    for size in sizes:
        x = inputs[:size].to(torch.float32).contiguous()
        with torch.inference_mode():
            expected = model(x).numpy()
        got = run_exported(runner, x)
        if got.shape != expected.shape:
            raise ExportError(f"{label or path}: exported model returns shape {got.shape} for a batch of "
                              f"{size}, the PyTorch model {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if not worst <= atol:
        raise ExportError(f"{label or path}: exported outputs differ from the PyTorch model's by up to "
                          f"{worst:.3g} (> atol {atol:g}) on the check inputs")
    return {"atol": atol, "max_abs_diff": worst, "batch_sizes": sizes, "runtime": runner.runtime}


def export_checked(model: nn.Module, fmt: str, out: str | Path, inputs: torch.Tensor, *,
                   description: dict[str, Any] | None = None, atol: float = DEFAULT_ATOL) -> dict[str, Any]:
    """Export ``model`` to ``out`` and keep the file only if :func:`check_exported` passes on
    ``inputs`` (N >= 2, 2, L). Returns the check record."""
    if inputs.dim() != 3 or inputs.shape[0] < 2:
        raise ConfigError(f"export needs a check batch (N >= 2, 2, L), got {tuple(inputs.shape)}")
    out = Path(out)
    with atomic_path(out) as tmp:
        export_model(model, fmt, tmp, inputs[: min(8, len(inputs))], description)
        try:
            record = check_exported(tmp, model, inputs, atol, label=out)
        except ExportError as err:
            raise ExportError(f"{err}; the file was not written") from None
    return record


def read_description(path: str | Path) -> dict[str, Any]:
    """The fcos description stored in an exported file (see the module docstring)."""
    from .latency import exported_format

    if exported_format(path) == "torchscript":
        extra = {f"{METADATA_KEY}.json": ""}
        with torchscript_deprecation_silenced():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[f"{METADATA_KEY}.json"] or "{}")
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}
