"""Synthesis speed of the synthetic stand-ins, in vectors per second on one thread.

Usage (from the repository root):
    python bench/bench_synthesis.py [--per-class-snr 200] [--repeats 3] [--out PATH]

For each dataset, ``synthesize`` is timed over the full SNR grid (best of ``--repeats`` runs)
and the rate printed; results go to ``--out`` as JSON (default bench/results/synthesis.json).
Thread pools (torch, OpenMP/BLAS used by numpy/scipy) are limited to one thread so the number
is a per-core rate. The generator's target is >= 10,000 vectors/s at L=128 (rml2016).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# Must be set before numpy/scipy load their BLAS/OpenMP runtimes.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import torch  # noqa: E402

from fcos.data.specs import DATASETS  # noqa: E402
from fcos.data.synthetic import GENERATOR_VERSION, synthesize  # noqa: E402
from fcos.io import write_json  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "synthesis.json"


def bench(name: str, per_class_snr: int, repeats: int) -> dict:
    spec = DATASETS[name]
    n = spec.num_classes * len(spec.snrs) * per_class_snr
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        synthesize(name, per_class_snr, seed=0)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"vectors": n, "length": spec.length, "seconds_best": best,
            "seconds_all": times, "vectors_per_s": n / best,
            "samples_per_s": n * spec.length / best}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class-snr", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--datasets", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    results = {}
    for name in args.datasets:
        r = bench(name, args.per_class_snr, args.repeats)
        results[name] = r
        print(f"{name:8s} L={r['length']:5d}: {r['vectors_per_s']:9.0f} vectors/s "
              f"({r['vectors']} vectors in {r['seconds_best']:.2f} s, best of {args.repeats})",
              flush=True)
    write_json(args.out, {
        "benchmark": "synthesis", "generator_version": GENERATOR_VERSION,
        "per_class_snr": args.per_class_snr, "repeats": args.repeats, "threads": 1,
        "python": platform.python_version(), "numpy": np.__version__,
        "scipy": scipy.__version__, "machine": platform.machine(),
        "processor": platform.processor(), "results": results,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
