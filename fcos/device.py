"""Where computation runs: the device (chosen once per run from ``device: auto|cpu|cuda[:N]``),
mixed precision and the data-loading settings that go with it.

- ``resolve_device``: "auto" is CUDA when present, else CPU; an explicit CUDA device on a
  machine without one is refused with one line.
- ``autocast``: mixed precision (``"bf16"`` or ``"fp16"``) for the forward pass on CUDA only; on
  a CPU it is off (``effective_precision`` says what was used), so a GPU config runs unchanged,
  in float32, on a laptop.
- ``grad_scaler``: the loss scaler fp16 needs (a disabled one otherwise).
- ``check_device_settings``: all three settings of a step checked at once, before any work.
- ``check_precision``, ``check_workers``: the one check of a mixed-precision mode and of a
  loader-thread count, whatever names them (config key, method option, command-line flag).
- ``loader_settings``: pinned host memory and background loading threads on CUDA (so the GPU
  does not wait for the next batch), none on a CPU (the threads would take cores from the
  model's own kernels, and results stay those of the single-threaded loader).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

#: Mixed-precision modes of training (``train.mixed_precision``).
PRECISIONS = ("off", "bf16", "fp16")
#: Background loading threads on CUDA when ``loader_workers`` is None ("auto").
AUTO_CUDA_WORKERS = 4


def resolve_device(device: str, key: str = "train.device") -> torch.device:
    """Map "auto" to CUDA when available, else CPU; validate explicit names (ConfigError naming
    ``key``: never a silent fall-back to the CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key}={device!r}: expected 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}={device!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={device!r}: this machine has {torch.cuda.device_count()} "
                          f"CUDA device(s)")
    return dev


def check_precision(mode: str, key: str = "train.mixed_precision") -> str:
    if not isinstance(mode, str) or mode not in PRECISIONS:
        raise ConfigError(f"{key}={mode!r}: expected one of {', '.join(PRECISIONS)}")
    return mode


def check_workers(workers: int | None, key: str = "train.loader_workers") -> int | None:
    """``workers`` if it is None (automatic) or an integer >= 0, else ConfigError naming ``key``."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"{key}={workers!r}: expected an integer >= 0 or null (auto)")
    return workers


def check_device_settings(device: str, mixed_precision: str, loader_workers: int | None) -> torch.device:
    """The device of a step's settings, after refusing any bad one (ConfigError naming the
    setting: ``device``, ``mixed_precision``, ``loader_workers``) before any work."""
    check_precision(mixed_precision, "mixed_precision")
    check_workers(loader_workers, "loader_workers")
    return resolve_device(device, key="device")


def effective_precision(device: torch.device, mode: str) -> str:
    """The mixed precision actually used: ``mode`` on CUDA, "off" elsewhere."""
    check_precision(mode)
    return mode if device.type == "cuda" else "off"


def autocast(device: torch.device, mode: str):
    """A context running the forward pass in ``mode``'s precision on CUDA (no-op otherwise)."""
    used = effective_precision(device, mode)
    if used == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if used == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a disabled scaler (a pass-through) otherwise."""
    return torch.amp.GradScaler("cuda", enabled=effective_precision(device, mode) == "fp16")


def loader_settings(device: torch.device, workers: int | None) -> tuple[int, bool]:
    """(loading threads, pin memory) for ``device``; ``workers`` None means automatic.

    Automatic: ``AUTO_CUDA_WORKERS`` (at most the CPU count) threads and pinned memory on CUDA,
    no threads and no pinning on a CPU. An explicit count is used as given on any device.
    """
    check_workers(workers)
    on_cuda = device.type == "cuda"
    if workers is None:
        workers = min(AUTO_CUDA_WORKERS, os.cpu_count() or 1) if on_cuda else 0
    return workers, on_cuda
