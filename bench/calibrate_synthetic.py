"""Calibrate the synthetic stand-ins: train a classifier, print accuracy per SNR and confusions.

Data that a small model classifies at ~100% would make every method of the comparison look free, so the
synthetic RML2016-like set should show the real set's shape: chance at -20 dB, a high-SNR
plateau clearly below 100% (QAM16/QAM64 and WBFM/AM-DSB confusions), an all-SNR average of
roughly 55-70%. This script measures that for a given set of generator options.

Usage (from the repository root):
    python bench/calibrate_synthetic.py --dataset rml2016 --per-class-snr 200 --epochs 10
    python bench/calibrate_synthetic.py --model cnn1d --opt audio_silence_prob=0.6
    python bench/calibrate_synthetic.py --out bench/results/calibration_rml2016.json

Train and test sets are generated with different seeds (no frame is shared); the model is
trained for a fixed number of epochs (Adam, lr 1e-3, batch 128) and evaluated once at the end.
``--model small`` is a small 1-D CNN defined here (fast on one CPU core); any other name is
built with ``fcos.models.build_model``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from fcos.data.synthetic import synthesize  # noqa: E402


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers with pooling, global average+max pooling, one linear layer.

    Input (B, 2, L) float32, output logits (B, num_classes); about 1M MACs at L=128.
    """

    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()
        chans = (2, 32, 48, width, width)
        kernels = (7, 5, 3, 3)
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers += [nn.Conv1d(chans[i], chans[i + 1], k, padding=k // 2, bias=False),
                       nn.BatchNorm1d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < len(kernels) - 1:
                layers.append(nn.MaxPool1d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1))


def build(name: str, num_classes: int, length: int) -> nn.Module:
    if name == "small":
        return SmallCNN(num_classes)
    from fcos.models import build_model
    return build_model(name, num_classes, length)


def parse_opts(items: list[str]) -> dict:
    """``key=value`` pairs; values parsed as JSON when possible (numbers, lists, true/false)."""
    opts = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            opts[key] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key] = raw
    return opts


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int,
          seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(yt), generator=gen)
        total, t0 = 0.0, time.perf_counter()
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(yt))
        print(f"  epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return history


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    model.eval()
    out = [model(torch.from_numpy(x[i:i + batch])).argmax(1).numpy()
           for i in range(0, len(x), batch)]
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="rml2016", choices=["rml2016", "rml2018", "sig2019"])
    p.add_argument("--per-class-snr", type=int, default=200, help="training frames per pair")
    p.add_argument("--test-per-class-snr", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--model", default="small", help="'small' or a fcos.models name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plateau-min-snr", type=int, default=10,
                   help="SNRs >= this form the high-SNR plateau and its confusion matrix")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="synthetic option override (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    opts = parse_opts(args.opt)
    t0 = time.perf_counter()
    tr = synthesize(args.dataset, args.per_class_snr, seed=2 * args.seed + 1, **opts)
    te = synthesize(args.dataset, args.test_per_class_snr, seed=2 * args.seed + 2, **opts)
    print(f"synthesised {len(tr)} train + {len(te)} test vectors in "
          f"{time.perf_counter() - t0:.1f} s; options overridden: {opts or 'none'}", flush=True)

    classes = tr.spec.classes
    model = build(args.model, len(classes), tr.spec.length)
    history = train(model, tr.x, tr.y, args.epochs, args.batch, args.seed)
    pred = predict(model, te.x)

    snrs = sorted(set(te.snr.tolist()))
    per_snr = {s: float(np.mean(pred[te.snr == s] == te.y[te.snr == s])) for s in snrs}
    overall = float(np.mean(pred == te.y))
    high = te.snr >= args.plateau_min_snr
    plateau = float(np.mean(pred[high] == te.y[high]))
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(conf, (te.y[high], pred[high]), 1)

    print(f"\n{args.dataset} / {args.model}: all-SNR accuracy {overall:.3f}, "
          f"plateau (SNR >= {args.plateau_min_snr} dB) {plateau:.3f}")
    print("per-SNR: " + "  ".join(f"{s}:{a:.2f}" for s, a in per_snr.items()))
    rows = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    print(f"per-class accuracy at SNR >= {args.plateau_min_snr} dB:")
    for i, c in enumerate(classes):
        worst = np.argsort(-rows[i])
        confused = [f"{classes[j]} {rows[i, j]:.2f}" for j in worst if j != i and rows[i, j] >= 0.03]
        print(f"  {c:>10s}: {rows[i, i]:.2f}" + (f"  (-> {', '.join(confused)})" if confused else ""))
    if args.out:
        from fcos.io import write_json
        write_json(args.out, {
            "dataset": args.dataset, "model": args.model, "epochs": args.epochs,
            "per_class_snr_train": args.per_class_snr, "per_class_snr_test": args.test_per_class_snr,
            "options_overridden": opts, "effective_options": tr.info["options"],
            "accuracy": overall, "plateau_min_snr": args.plateau_min_snr, "plateau": plateau,
            "per_snr": {str(s): a for s, a in per_snr.items()}, "classes": list(classes),
            "confusion_high_snr": conf.tolist(), "train_loss": history,
            "seconds": time.perf_counter() - t0,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
