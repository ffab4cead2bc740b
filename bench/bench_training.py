"""Training and inference throughput of the three models on this machine.

Measures optimisation steps (forward + backward + Adam, batch 128 by default) and evaluation
(forward only) in samples/s on random inputs, after warm-up, for each model at its dataset's
length. Writes JSON (default bench/results/training.json) and prints a Markdown table.

    python bench/bench_training.py --threads 2 --models cnn1d resnet56
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fcos.data import get_spec
from fcos.metrics import macs_and_params
from fcos.models import build_model

DEFAULT_DATASET = {"cnn1d": "rml2016", "resnet56": "rml2016", "signet50": "rml2016"}


def time_loop(fn, min_seconds: float, min_iters: int) -> tuple[int, float]:
    iters, start = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - start < min_seconds:
        fn()
        iters += 1
    return iters, time.perf_counter() - start


def bench_model(name: str, dataset: str, batch: int, seconds: float, device: str) -> dict:
    spec = get_spec(dataset)
    torch.manual_seed(0)
    model = build_model(name, spec.num_classes, spec.length).to(device)
    macs, params = macs_and_params(build_model(name, spec.num_classes, spec.length), spec.length)
    x = torch.randn(batch, 2, spec.length, device=device)
    y = torch.randint(0, spec.num_classes, (batch,), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        model.eval()
        model(x)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for fn in (train_step, eval_step):  # warm-up
        fn()
        sync()
    n_train, t_train = time_loop(lambda: (train_step(), sync()), seconds, 3)
    n_eval, t_eval = time_loop(lambda: (eval_step(), sync()), seconds, 3)
    return {"model": name, "dataset": dataset, "length": spec.length, "batch": batch, "macs": macs,
            "params": params, "train_samples_per_s": n_train * batch / t_train,
            "eval_samples_per_s": n_eval * batch / t_eval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn1d", "resnet56"])
    parser.add_argument("--dataset", default=None, help="dataset whose length/classes to use (default rml2016)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench_model(m, args.dataset or DEFAULT_DATASET[m], args.batch, args.seconds, args.device)
            for m in args.models]
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": args.threads, "device": args.device},
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| model | dataset | L | MACs | train samples/s | eval samples/s |  ({args.device}, {args.threads} threads)")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['dataset']} | {r['length']} | {r['macs']:,} | "
              f"{r['train_samples_per_s']:.0f} | {r['eval_samples_per_s']:.0f} |")


if __name__ == "__main__":
    main()
