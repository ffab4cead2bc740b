"""RML2018 at full size in bounded memory: peak RSS and throughput of `fcos prepare` and of one
training epoch on a multi-GB RML2018.01a-format file.

The source file is synthesised chunk by chunk (never held whole): X (N, 1024, 2) float32, rows
ordered by class then SNR like the release, each row seeded Gaussian noise plus its class's
tone (a fixed complex exponential per class, amplitude from the SNR); Y one-hot (N, 24) int64;
Z (N, 1) int64. Then, each in its own subprocess, timed, with its peak resident memory taken
from the kernel (``os.wait4``'s ``ru_maxrss`` of that child):

1. ``fcos prepare rml2018`` of every frame (train/val/test from ``--val-fraction`` /
   ``--test-fraction``);
2. ``fcos train`` of CNN1D for one epoch, capped at ``--steps`` optimisation steps (a full epoch of
   CNN1D at L=1024 is hours on a shared CPU; the memory of an epoch does not grow with its
   steps: batches are read from the file by row), with validation on the whole val split;
3. ``fcos evaluate`` of that checkpoint on the val split.

Writes a JSON record (file sizes, wall times, peak RSS, vectors/s, machine load) and removes
every file it made (``--keep`` keeps them).

    nice -n 19 python bench/rml2018_stream.py --size-gb 4.2 --dir /tmp --out bench/results/rml2018_stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LENGTH, CLASSES = 1024, 24
SNRS = list(range(-20, 31, 2))
ROW_BYTES = LENGTH * 2 * 4
CHUNK_ROWS = 4096  # 32 MiB of X per write


def synthesise(path: Path, frames: int, seed: int = 0) -> int:
    """Write an RML2018-format file with ``frames`` per (class, SNR); return its row count."""
    n = CLASSES * len(SNRS) * frames
    labels = np.repeat(np.arange(CLASSES), len(SNRS) * frames)
    snr = np.tile(np.repeat(np.asarray(SNRS), frames), CLASSES)
    t = np.arange(LENGTH)
    freqs = (np.arange(CLASSES) + 1) / (4.0 * CLASSES)  # cycles per sample, one per class
    tones = np.stack([np.cos(2 * np.pi * freqs[:, None] * t), np.sin(2 * np.pi * freqs[:, None] * t)],
                     axis=-1).astype(np.float32)  # (classes, L, 2)
    with h5py.File(path, "w") as handle:
        X = handle.create_dataset("X", shape=(n, LENGTH, 2), dtype="<f4")
        handle.create_dataset("Y", data=np.eye(CLASSES, dtype=np.int64)[labels])
        handle.create_dataset("Z", data=snr.reshape(-1, 1).astype(np.int64))
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            rng = np.random.default_rng([seed, start])
            block = rng.standard_normal((stop - start, LENGTH, 2), dtype=np.float32)
            amplitude = (10.0 ** (snr[start:stop] / 20.0)).astype(np.float32)[:, None, None]
            block += amplitude * tones[labels[start:stop]]
            X[start:stop] = block
    return n


def run_measured(command: list[str], env: dict) -> dict:
    """Run ``command``; its wall time, exit code, peak RSS (kernel's ru_maxrss) and last lines."""
    tic = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - tic
        log.seek(0)
        tail = log.read().strip().splitlines()[-5:]
    return {"command": " ".join(command[2:]), "exit_code": process.returncode, "wall_s": round(wall, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "user_s": round(usage.ru_utime, 2),
            "output_tail": tail}


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=4.2, help="size of X in GB (1e9 bytes)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary files go")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rml2018_stream.json")
    parser.add_argument("--steps", type=int, default=40, help="optimisation steps of the training epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--val-fraction", type=float, default=0.005)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the subprocesses")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    args = parser.parse_args()

    frames = max(1, int(round(args.size_gb * 1e9 / (ROW_BYTES * CLASSES * len(SNRS)))))
    work = Path(tempfile.mkdtemp(prefix="fcos-rml2018-", dir=args.dir))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    python = [sys.executable, "-m", "fcos"]
    record: dict = {"load_before": loadavg(), "cpu_count": os.cpu_count(),
                    "max_in_memory_mb": os.environ.get("FCOS_MAX_IN_MEMORY_MB", "default (1024)")}
    try:
        source = work / "GOLD_XYZ_OSC.0001_1024.hdf5"
        tic = time.perf_counter()
        n = synthesise(source, frames)
        record["source"] = {"vectors": n, "frames_per_class_snr": frames, "x_bytes": n * ROW_BYTES,
                            "file_bytes": source.stat().st_size,
                            "synthesis_s": round(time.perf_counter() - tic, 1)}
        prepared = work / "rml2018.h5"
        step = run_measured(python + ["prepare", "rml2018", "--source", str(source), "--out", str(prepared),
                                      "--val-fraction", str(args.val_fraction),
                                      "--test-fraction", str(args.test_fraction), "--no-progress"], env)
        step["vectors_per_s"] = round(n / step["wall_s"], 1)
        record["prepare"] = step
        if step["exit_code"] != 0:
            raise SystemExit(f"prepare failed: {step['output_tail']}")
        with h5py.File(prepared, "r") as handle:
            record["prepared"] = {"file_bytes": prepared.stat().st_size,
                                  **{f"{s}_vectors": int(handle[s]["y"].shape[0]) for s in ("train", "val", "test")},
                                  "train_x_compression": handle["train"]["x"].compression}
        checkpoint = work / "cnn1d.pt"
        step = run_measured(python + ["train", "--data", str(prepared), "--model", "cnn1d", "--out", str(checkpoint),
                                      "--epochs", "1", "--batch-size", str(args.batch_size),
                                      "--max-batches-per-epoch", str(args.steps), "--device", "cpu",
                                      "--no-progress"], env)
        record["train"] = step
        if step["exit_code"] != 0:
            raise SystemExit(f"train failed: {step['output_tail']}")
        import torch

        history = torch.load(checkpoint, weights_only=True)["train"]["history"][0]
        step["steps"] = args.steps
        step["batch_size"] = args.batch_size
        step["train_vectors_per_s"] = round(history["samples_per_s"], 1)
        step["val_accuracy"] = history["val_accuracy"]
        step = run_measured(python + ["evaluate", "--data", str(prepared), "--checkpoint", str(checkpoint),
                                      "--split", "val", "--out", str(work / "metrics.json"), "--device", "cpu"], env)
        step["vectors_per_s"] = round(record["prepared"]["val_vectors"] / step["wall_s"], 1)
        record["evaluate_val"] = step
    finally:
        record["load_after"] = loadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            record["temporary_files_removed"] = not work.exists()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
