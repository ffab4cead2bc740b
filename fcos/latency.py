"""Inference latency: one timing harness for every model and runtime.

The harness times *runners* (:class:`Runner`): a PyTorch model in eager mode
(:func:`torch_runner`), an exported TorchScript file or an ONNX file run by ONNX Runtime
(:func:`exported_runner`). Every runner is timed the same way (:func:`measure_latency`):

- for each batch size (default 1 and 256) the input batch is prepared once per runner (moved to
  the device / converted to the runtime's type; not timed);
- ``warmup`` untimed calls per runner, then ``repeats`` timed rounds. In one round every runner
  is called once, the order reversed every other round, so that slow drifts of the machine
  (another job starting, frequency scaling) hit every runner alike; each call is timed alone
  with ``time.perf_counter`` and ends only when the result is ready (CUDA synchronised);
- per runner: median, 10th/25th/75th/90th percentiles, IQR, mean and minimum of the call times
  (ms), and throughput = batch / median (examples per second);
- with a ``reference`` runner (the unpruned base model), each runner's speedup is the
  reference's time divided by its own *in the same round* (adjacent calls): median and
  p10/p90 of these paired ratios, plus the ratio of the medians. On a shared, noisy machine
  this ratio is far more stable than either absolute time;
- every call's process CPU time (``time.process_time``) is recorded too (``cpu_*_ms``,
  ``cpu_speedup``): on a machine whose cores are taken by other jobs, a starved call's wall
  time includes the time it waited, its CPU time does not. With one intra-op thread, CPU time
  is the work the model costs; wall time is what a user waits.

The number of calls is fixed by the config (no adaptive stopping), the intra-op thread count is
set for the measurement and recorded, and ``os.getloadavg()`` is recorded before and after each
batch size, so a reader can tell a quiet measurement from a busy one.

:func:`layer_profile` says where the time of one model goes: ``torch.profiler`` time of every
module (inclusive and self, per forward call) next to its MACs, and the top aten operators.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import statistics
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ConfigError, FcosError

LATENCY_FORMAT = "fcos-latency/1"
#: Percentiles reported for every runner (besides the median).
PERCENTILES = (10, 25, 75, 90)


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is measured.

    Attributes:
        batch_sizes: batch sizes to time, e.g. (1, 256): single-example latency and large-batch
            throughput.
        warmup: untimed calls per runner and batch size before timing (lets oneDNN / TorchScript
            / ONNX Runtime build their kernels for the shape).
        repeats: timed rounds (one call per runner each).
        threads: intra-op threads (torch.set_num_threads / ONNX Runtime intra_op_num_threads).
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when present). ONNX Runtime runs on CPU.
    """

    batch_sizes: tuple[int, ...] = (1, 256)
    warmup: int = 10
    repeats: int = 50
    threads: int = 1
    device: str = "cpu"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "LatencyConfig":
        """Build from a config mapping; unknown keys or bad values raise ConfigError."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown latency option(s) {', '.join(unknown)}: expected "
                              f"{', '.join(sorted(known))}")
        if "batch_sizes" in values:
            values["batch_sizes"] = tuple(values["batch_sizes"])
        return cls(**values).validate()

    def validate(self) -> "LatencyConfig":
        def positive(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if not self.batch_sizes or not all(positive(b) for b in self.batch_sizes):
            raise ConfigError(f"latency.batch_sizes={list(self.batch_sizes)!r}: expected a "
                              "non-empty list of positive integers")
        for key in ("repeats", "threads"):
            if not positive(getattr(self, key)):
                raise ConfigError(f"latency.{key}={getattr(self, key)!r}: expected a positive integer")
        if not (isinstance(self.warmup, int) and not isinstance(self.warmup, bool) and self.warmup >= 0):
            raise ConfigError(f"latency.warmup={self.warmup!r}: expected an integer >= 0")
        resolve_latency_device(self.device)
        return self

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["batch_sizes"] = list(self.batch_sizes)
        return values


def resolve_latency_device(device: str) -> torch.device:
    """The torch device of a latency config ("auto": CUDA when present)."""
    from .train import resolve_device

    try:
        return resolve_device(device)
    except ConfigError:
        raise ConfigError(f"latency.device={device!r}: expected 'auto', 'cpu' or an available "
                          "'cuda[:N]'") from None


# --------------------------------------------------------------------------------- runners


@dataclass
class Runner:
    """One way of running a model, as the harness times it.

    ``prepare`` turns a CPU float32 batch (B, 2, L) into the runtime's input (done once per batch
    size, not timed); ``call`` runs one forward pass on it and returns only when the result is
    ready; ``info`` describes the runner for the record (file, providers, ...).
    """

    runtime: str
    device: str
    prepare: Callable[[torch.Tensor], Any]
    call: Callable[[Any], Any]
    info: dict[str, Any] = field(default_factory=dict)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _module_runner(module: Any, device: torch.device, runtime: str, info: dict) -> Runner:
    sync = _synchronizer(device)

    def call(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = module(batch)
        sync()
        return out

    return Runner(runtime, str(device), lambda batch: batch.to(device), call, info)


def torch_runner(model: nn.Module, device: str = "cpu") -> Runner:
    """PyTorch eager execution of ``model`` (moved to ``device`` and put in eval mode, in place)."""
    dev = resolve_latency_device(device)
    return _module_runner(model.eval().to(dev), dev, "torch-eager", {})


def exported_format(path: str | Path) -> str:
    """"torchscript" or "onnx": the format of an exported model file, read from its content.

    A TorchScript archive is a zip file with a ``code/`` directory; an fcos checkpoint is a zip
    without one (refused: it is not an exported model); anything else is taken for ONNX and
    checked when loaded.
    """
    p = Path(path)
    if not p.is_file():
        raise FcosError(f"{p}: exported model not found")
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as archive:
            if any("/code/" in name for name in archive.namelist()):
                return "torchscript"
        raise FcosError(f"{p}: a torch archive but not TorchScript (an fcos checkpoint? "
                        "export it first with 'fcos export')")
    return "onnx"


@contextlib.contextmanager
def torchscript_deprecation_silenced() -> Iterator[None]:
    """torch >= 2.10 warns on every torch.jit call that TorchScript is deprecated; we use it only
    where TorchScript itself is asked for, and say so in the README, not on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        yield


def exported_runner(path: str | Path, *, threads: int = 1, device: str = "cpu") -> Runner:
    """Run an exported file: TorchScript with ``torch.jit.load`` (on ``device``), ONNX with ONNX
    Runtime's CPU provider and ``threads`` intra-op threads."""
    p = Path(path)
    fmt = exported_format(p)
    if fmt == "torchscript":
        dev = resolve_latency_device(device)
        try:
            with torchscript_deprecation_silenced():
                module = torch.jit.load(str(p), map_location=dev)
        except Exception as err:  # torch raises several types for a damaged archive
            raise FcosError(f"{p}: not a loadable TorchScript file ({_first_line(err)})") from None
        return _module_runner(module.eval(), dev, "torchscript", {"file": str(p)})
    session = onnx_session(p, threads)
    input_name = session.get_inputs()[0].name

    def prepare(batch: torch.Tensor) -> dict[str, np.ndarray]:
        return {input_name: np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)}

    import onnxruntime

    return Runner("onnxruntime", "cpu", prepare, lambda feed: session.run(None, feed),
                  {"file": str(p), "providers": session.get_providers(),
                   "onnxruntime": onnxruntime.__version__})


def onnx_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads, sequential."""
    try:
        import onnxruntime
    except ImportError:
        raise FcosError("running an ONNX model needs onnxruntime: pip install 'fcos-amr[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise FcosError(f"{path}: not a loadable ONNX model ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --------------------------------------------------------------------------------- harness


def batch_of(inputs: torch.Tensor, size: int) -> torch.Tensor:
    """The first ``size`` rows of ``inputs`` (N, 2, L), repeated cyclically when N < size."""
    if inputs.dim() != 3 or inputs.shape[0] < 1:
        raise ValueError(f"latency inputs must be (N, channels, length) with N >= 1, got "
                         f"{tuple(inputs.shape)}")
    index = torch.arange(size) % inputs.shape[0]
    return inputs[index].to(torch.float32).contiguous()


def summarize_times(seconds: list[float], batch_size: int) -> dict[str, float]:
    """Statistics of call times (s) in ms, and throughput = batch / median (examples/s)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    stats = {"median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min())}
    for q in PERCENTILES:
        stats[f"p{q}_ms"] = float(np.percentile(ms, q))
    stats["iqr_ms"] = stats["p75_ms"] - stats["p25_ms"]
    stats["throughput_per_s"] = batch_size / (stats["median_ms"] / 1e3)
    return stats


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the measurement ran on: CPU model, core counts, software versions, device."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "device": str(device),
        "interop_threads": torch.get_num_interop_threads(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def measure_latency(runners: Mapping[str, Runner], inputs: torch.Tensor,
                    config: LatencyConfig | None = None, *, reference: str | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Time ``runners`` ({name: Runner}) interleaved on batches drawn from ``inputs`` (N, 2, L).

    Returns a JSON-able dict: ``format``, ``config``, ``machine``, ``reference`` (a runner name or
    None), ``runners`` ({name: {runtime, device, ...}}) and ``batches``: one entry per batch size
    with ``batch_size``, ``threads`` (intra-op threads in effect), ``load_before`` /
    ``load_after`` (os.getloadavg: 1, 5, 15 min) and ``models``: {name: wall-time statistics
    (see :func:`summarize_times`), ``cpu_median_ms`` / ``cpu_p10_ms`` / ``cpu_p90_ms`` (process
    CPU time per call), plus, with a reference, ``speedup`` = {median, p10, p90 of the per-round
    ratio reference time / own time, ``of_medians``} and ``cpu_speedup`` (the same on CPU time)}.
    """
    config = (config or LatencyConfig()).validate()
    if not runners:
        raise ValueError("measure_latency: no runners to time")
    if reference is not None and reference not in runners:
        raise ValueError(f"measure_latency: reference {reference!r} is not one of {sorted(runners)}")
    device = resolve_latency_device(config.device)
    names = list(runners)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    batches = []
    total = len(config.batch_sizes) * (config.warmup + config.repeats)
    try:
        with tqdm(total=total, desc="latency", disable=not progress, leave=False) as bar:
            for batch_size in config.batch_sizes:
                batch = batch_of(inputs, batch_size)
                prepared = {name: runners[name].prepare(batch) for name in names}
                load_before = list(os.getloadavg())
                for _ in range(config.warmup):
                    for name in names:
                        runners[name].call(prepared[name])
                    bar.update()
                times: dict[str, list[float]] = {name: [] for name in names}
                cpu_times: dict[str, list[float]] = {name: [] for name in names}
                for round_index in range(config.repeats):
                    for name in (names if round_index % 2 == 0 else names[::-1]):
                        call, feed = runners[name].call, prepared[name]
                        start_cpu, start = time.process_time(), time.perf_counter()
                        call(feed)
                        times[name].append(time.perf_counter() - start)
                        cpu_times[name].append(time.process_time() - start_cpu)
                    bar.update()
                load_after = list(os.getloadavg())
                models = {}
                for name in names:
                    models[name] = summarize_times(times[name], batch_size)
                    cpu = np.asarray(cpu_times[name]) * 1e3
                    models[name].update({"cpu_median_ms": float(np.median(cpu)),
                                         "cpu_p10_ms": float(np.percentile(cpu, 10)),
                                         "cpu_p90_ms": float(np.percentile(cpu, 90))})
                if reference is not None:
                    for name in names:
                        models[name]["speedup"] = _paired_speedup(times[reference], times[name])
                        cpu = _paired_speedup(cpu_times[reference], cpu_times[name])
                        models[name]["cpu_speedup"] = cpu
                batches.append({"batch_size": batch_size, "threads": torch.get_num_threads(),
                                "load_before": load_before, "load_after": load_after,
                                "models": models})
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "format": LATENCY_FORMAT,
        "config": config.as_dict(),
        "machine": machine_info(device),
        "reference": reference,
        "runners": {name: {"runtime": r.runtime, "device": r.device, **r.info} for name, r in runners.items()},
        "batches": batches,
    }


def _paired_speedup(reference: list[float], own: list[float]) -> dict[str, float]:
    own = np.maximum(np.asarray(own), 1e-9)  # a CPU-time reading can be 0 at coarse clocks
    ratios = np.asarray(reference) / own
    return {"median": float(np.median(ratios)), "p10": float(np.percentile(ratios, 10)),
            "p90": float(np.percentile(ratios, 90)),
            "of_medians": float(statistics.median(reference) / statistics.median(own.tolist()))}


# --------------------------------------------------------------------------------- profile


def layer_profile(model: nn.Module, inputs: torch.Tensor, *, batch_size: int, forwards: int = 10,
                  warmup: int = 3, threads: int = 1, top_ops: int = 12) -> dict[str, Any]:
    """Where one model's CPU time goes, from ``torch.profiler`` (eager mode, CPU).

    Every module's forward is wrapped in a ``record_function`` named after it; ``forwards``
    profiled calls on a batch of ``batch_size`` drawn from ``inputs`` (N, 2, L), after ``warmup``
    untimed ones. Returns ``{"batch_size", "threads", "forward_ms", "modules": [...], "ops": [...]}``:
    per module (depth order) ``name``, ``type``, ``total_ms`` (inclusive, per forward),
    ``self_ms`` (total minus its children's: the functional ops written in its own forward, e.g.
    residual adds), ``macs`` (its own, per example, fcos.metrics.macs_by_module); ``ops`` the
    ``top_ops`` aten operators by self CPU time per forward.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    from .metrics import macs_by_module

    model = model.eval()
    length = inputs.shape[-1]
    macs = macs_by_module(model, length, channels=inputs.shape[1])
    batch = batch_of(inputs, batch_size)
    modules = [(name, module) for name, module in model.named_modules() if name]
    contexts: dict[str, Any] = {}

    def enter(name):
        def hook(module, args):
            contexts[name] = record_function(f"module::{name}")
            contexts[name].__enter__()
        return hook

    def leave(name):
        def hook(module, args, output):
            contexts.pop(name).__exit__(None, None, None)
        return hook

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    handles = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(batch)
            for name, module in modules:
                handles.append(module.register_forward_pre_hook(enter(name)))
                handles.append(module.register_forward_hook(leave(name)))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(forwards):
                    with record_function("forward"):
                        model(batch)
    finally:
        for handle in handles:
            handle.remove()
        torch.set_num_threads(previous_threads)
    events = prof.key_averages()
    total_us = {event.key: event.cpu_time_total for event in events}
    children: dict[str, list[str]] = {name: [] for name, _ in modules}
    for name, _ in modules:
        parent = name.rpartition(".")[0]
        if parent in children:
            children[parent].append(name)
    rows = []
    for name, module in modules:
        total = total_us.get(f"module::{name}", 0.0) / forwards / 1e3
        inner = sum(total_us.get(f"module::{child}", 0.0) for child in children[name]) / forwards / 1e3
        rows.append({"name": name, "type": type(module).__name__, "total_ms": total,
                     "self_ms": max(total - inner, 0.0), "macs": int(macs.get(name, 0))})
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: e.self_cpu_time_total,
                 reverse=True)[:top_ops]
    return {
        "batch_size": batch_size, "threads": threads, "forwards": forwards,
        "forward_ms": total_us.get("forward", 0.0) / forwards / 1e3,
        "modules": rows,
        "ops": [{"op": e.key, "self_ms": e.self_cpu_time_total / forwards / 1e3,
                 "calls": e.count // forwards} for e in ops],
    }
