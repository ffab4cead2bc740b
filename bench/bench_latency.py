"""Measured speedup against the MAC ratio, per method family and budget, and where FCOS's time goes.

For ResNet56 and CNN1D (RML2016 length 128): a briefly trained base model (speed does not depend
on accuracy, but LaCD's and LCP's choice of blocks depends on the features, so the weights are
not random), then for each MAC budget one pruned model per method family, made with
``fcos.prune.prune_model``:

- ``l1`` (channel pruning), ``lcp`` (layer pruning), ``fcos-stage1`` (channel fusion),
- ``fcos`` (fusion at the budget, then LaCD's collapse criterion removes blocks; the pipeline
  fine-tunes between the two stages, skipped here: it changes the weights, not the structure
  LaCD starts from, though it can change which blocks collapse).

Every pruned model is timed by the library's harness (``fcos.latency.measure_latency``)
interleaved with its base model in the same run, at batch 1 and a large batch, on real test
inputs; speedup = paired median of base time / model time, on wall-clock time and on process CPU
time (on a machine whose cores other jobs hold, the wall time of a starved call includes its
wait; CPU time does not). Efficiency = speedup / MAC ratio (1.0 = the time falls as fast as the
MACs). The final FCOS ResNet56 model at the largest budget is
also timed as TorchScript and under ONNX Runtime (same harness), and profiled per layer
(``fcos.latency.layer_profile``: torch.profiler).

    nice -n 19 python bench/bench_latency.py                       # ~10 min on one busy core
    python bench/bench_latency.py --budgets 0.5 0.9 --repeats 10   # quicker

Writes ``bench/results/latency_cpu.json`` (everything), ``latency_cpu.csv`` (the table),
``latency_cpu_speedup_vs_macs.png`` (``--prefix`` renames them) and prints the Markdown tables
used in bench/README.md. ``--lacd-target R`` makes FCOS's LaCD step remove blocks until the total
MAC reduction is R (e.g. the reduction a fully trained pipeline run reached) instead of applying
its collapse criterion, which on briefly trained weights removes more blocks than it would on
trained ones.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fcos.api import train_base_model
from fcos.checkpoint import model_from_checkpoint
from fcos.data import load_prepared, prepare_dataset
from fcos.export import export_checked
from fcos.latency import LatencyConfig, exported_runner, layer_profile, measure_latency, torch_runner
from fcos.metrics import macs_and_params
from fcos.prune import prune_model

RESULTS = Path(__file__).parent / "results"
MODELS = ("resnet56", "cnn1d")
METHODS = ("l1", "lcp", "fcos-stage1", "fcos")


def make_pruned(method: str, base: torch.nn.Module, model_name: str, budget: float, data,
                lacd_target: float | None = None) -> tuple:
    """(pruned model, record of what was done) for one method family at one budget.

    ``lacd_target``: FCOS's LaCD step removes its lowest-gain blocks until the total MAC
    reduction (against the base) reaches this, instead of applying its collapse criterion.
    """
    if method == "fcos":
        stage1 = prune_model("fcos-stage1", copy.deepcopy(base), model_name=model_name, budget=budget).model
        if lacd_target is None:
            result = prune_model("lacd", stage1, model_name=model_name, data=data)
        else:
            base_macs, _ = macs_and_params(base, data.length)
            result = prune_model("lacd", stage1, model_name=model_name, data=data, budget=lacd_target,
                                 options={"reference_macs": base_macs})
        return result.model, {"removed_blocks": result.record["selection"]["removed"]}
    result = prune_model(method, copy.deepcopy(base), model_name=model_name, budget=budget, data=data)
    return result.model, {"removed_blocks": sorted((result.architecture.get("removed_blocks") or {}))}


def profile_summary(profile: dict, groups) -> list[dict]:
    """Module rows of a layer profile summed into named groups: {group, self_ms, share, macs, mac_share}.

    ``groups(name, type) -> str`` names the group of a module; each module's *self* time is
    used, so that nothing is counted twice and residual adds etc. stay with their block.
    """
    rows: dict[str, dict] = {}
    for module in profile["modules"]:
        group = groups(module["name"], module["type"])
        entry = rows.setdefault(group, {"group": group, "self_ms": 0.0, "macs": 0})
        entry["self_ms"] += module["self_ms"]
        entry["macs"] += module["macs"]
    total_ms = sum(r["self_ms"] for r in rows.values()) or 1.0
    total_macs = sum(r["macs"] for r in rows.values()) or 1
    out = []
    for entry in sorted(rows.values(), key=lambda r: -r["self_ms"]):
        out.append({**entry, "share": entry["self_ms"] / total_ms, "mac_share": entry["macs"] / total_macs})
    return out


def by_operation(name: str, kind: str) -> str:
    if kind in ("BasicBlock", "ResidualStack", "StackProjection", "Sequential", "ResNet56", "CNN1D"):
        return "residual adds, functional ReLU/pool (block bodies)"
    if kind == "PoolPadShortcut":
        return "shortcut pool + channel map"
    return {"Conv2d": "convolution", "Conv1d": "convolution", "BatchNorm2d": "batch norm", "ReLU": "ReLU",
            "Linear": "linear (head)", "AdaptiveAvgPool2d": "global pool (head)",
            "MaxPool1d": "max pool", "MaxPool2d": "max pool", "AddPlaneDim": "input view",
            "Identity": "removed block (identity)", "Dropout": "dropout"}.get(kind, kind)


def by_stage(name: str, kind: str) -> str:
    top = name.split(".")[0]
    if top in ("layer1", "layer2", "layer3"):
        return top
    if top == "stacks":
        parts = name.split(".")
        return f"stacks.{parts[1]}" if len(parts) > 1 else "stacks"
    if top in ("fc", "avgpool", "dense", "drop", "classifier"):
        return "head"
    return top


def plot(table: pd.DataFrame, sizes: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(len(models), len(sizes), figsize=(5.2 * len(sizes), 4.4 * len(models)), dpi=120,
                             squeeze=False)
    style = {"l1": ("tab:blue", "s"), "lcp": ("tab:green", "^"), "fcos-stage1": ("tab:orange", "o"),
             "fcos": ("black", "*")}
    for row, model in enumerate(models):
        for col, size in enumerate(sizes):
            ax = axes[row][col]
            rows = table[table["model"] == model]
            limit = max(rows["mac_ratio"].max(), rows[f"speedup_b{size}"].max(),
                        rows[f"cpu_speedup_b{size}"].max()) * 1.3
            ax.plot([1, limit], [1, limit], ":", color="grey", label="speedup = MAC ratio")
            for method, group in rows.groupby("method", sort=False):
                group = group.sort_values("mac_ratio")
                colour, marker = style.get(method, ("tab:red", "x"))
                ax.plot(group["mac_ratio"], group[f"speedup_b{size}"], marker=marker, color=colour,
                        markersize=10 if method == "fcos" else 6, label=f"{method} (wall time)")
                ax.plot(group["mac_ratio"], group[f"cpu_speedup_b{size}"], marker=marker, color=colour,
                        markersize=10 if method == "fcos" else 6, linestyle="--", mfc="none",
                        label=f"{method} (CPU time)")
                for _, point in group.iterrows():
                    ax.annotate(f"{100 * point['budget']:.0f}", (point["mac_ratio"], point[f"speedup_b{size}"]),
                                textcoords="offset points", xytext=(4, -9), fontsize=6, color=colour)
            ax.set(xscale="log", yscale="log", xlabel="MAC ratio (base MACs / MACs)",
                   ylabel="measured speedup (base time / time)",
                   title=f"{model}, batch {size} (labels: budget %)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def markdown(table: pd.DataFrame, sizes: list[int]) -> str:
    header = ["model", "method", "budget", "MAC red. (%)", "MAC ratio"]
    for size in sizes:
        header += [f"b{size} ms", f"b{size} speedup (wall)", f"b{size} speedup (CPU)",
                   f"b{size} CPU speedup / MAC ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["model"], row["method"], f"{100 * row['budget']:.0f}%", f"{100 * row['macs_reduction']:.1f}",
                 f"{row['mac_ratio']:.1f}"]
        for size in sizes:
            cells += [f"{row[f'latency_ms_b{size}']:.2f}", f"{row[f'speedup_b{size}']:.2f}",
                      f"{row[f'cpu_speedup_b{size}']:.2f}", f"{row[f'cpu_efficiency_b{size}']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-class-snr", type=int, default=30, help="synthetic data size (frames per pair)")
    parser.add_argument("--train-batches", type=int, default=30, help="brief base training (batches of 128)")
    parser.add_argument("--lacd-target", type=float, default=None,
                        help="FCOS: LaCD removes blocks to this total MAC reduction (default: its criterion)")
    parser.add_argument("--skip-extras", action="store_true", help="no per-layer profile, no runtime comparison")
    parser.add_argument("--prefix", default="latency_cpu", help="name of the output files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = LatencyConfig(batch_sizes=tuple(args.batch_sizes), warmup=args.warmup, repeats=args.repeats,
                           threads=args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = list(os.getloadavg())
    record = {"config": config.as_dict(), "load_at_start": load_start, "pairs": [], "runtimes": None,
              "profiles": {}}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data_path = work / "rml2016.h5"
        prepare_dataset("rml2016", "synthetic", data_path, per_class_snr=args.per_class_snr, seed=0, progress=False)
        data = load_prepared(data_path)
        inputs = torch.from_numpy(data.split("test")[0][: max(args.batch_sizes)].astype(np.float32))
        final_fcos = {}
        for model_name in args.models:
            checkpoint = work / f"{model_name}.pt"
            train = train_base_model(data_path, model_name, checkpoint,
                                     {"epochs": 1, "max_batches_per_epoch": args.train_batches, "device": "cpu"},
                                     progress=False)
            base = model_from_checkpoint(checkpoint)
            base_macs, _ = macs_and_params(base, data.length)
            print(f"{model_name}: base val accuracy {train['best_val_accuracy']:.3f}, {base_macs:,} MACs", flush=True)
            base_runner = torch_runner(base)
            for budget in args.budgets:
                for method in args.methods:
                    tic = time.time()
                    pruned, what = make_pruned(method, base, model_name, budget, data, args.lacd_target)
                    pruned.eval()
                    macs, params = macs_and_params(pruned, data.length)
                    result = measure_latency({"base": base_runner, "model": torch_runner(pruned)}, inputs,
                                             config, reference="base")
                    row = {"model": model_name, "method": method, "budget": budget, "macs": macs, "params": params,
                           "macs_reduction": 1 - macs / base_macs, "mac_ratio": base_macs / macs,
                           "removed_blocks": len(what["removed_blocks"])}
                    for entry in result["batches"]:
                        size, stats = entry["batch_size"], entry["models"]
                        row[f"latency_ms_b{size}"] = stats["model"]["median_ms"]
                        row[f"base_ms_b{size}"] = stats["base"]["median_ms"]
                        row[f"speedup_b{size}"] = stats["model"]["speedup"]["median"]
                        row[f"speedup_p10_b{size}"] = stats["model"]["speedup"]["p10"]
                        row[f"speedup_p90_b{size}"] = stats["model"]["speedup"]["p90"]
                        row[f"efficiency_b{size}"] = row[f"speedup_b{size}"] / row["mac_ratio"]
                        row[f"cpu_speedup_b{size}"] = stats["model"]["cpu_speedup"]["median"]
                        row[f"cpu_efficiency_b{size}"] = row[f"cpu_speedup_b{size}"] / row["mac_ratio"]
                        row[f"load_b{size}"] = entry["load_before"][0]
                    rows.append(row)
                    record["pairs"].append({**row, "what": what, "latency": result})
                    print(f"  {method:12s} b={budget:.2f}: MAC ratio {row['mac_ratio']:6.1f}, "
                          + ", ".join(f"b{s} speedup {row[f'speedup_b{s}']:.2f} (CPU {row[f'cpu_speedup_b{s}']:.2f})"
                                      for s in args.batch_sizes)
                          + f" ({time.time() - tic:.0f} s, load {row[f'load_b{args.batch_sizes[0]}']:.2f})",
                          flush=True)
                    if method == "fcos":
                        final_fcos[model_name] = (budget, pruned, base)
        if args.skip_extras:
            final_fcos = {}
        # where the time goes: the final FCOS models at the largest budget, and the base for contrast
        for model_name, (budget, pruned, base) in final_fcos.items():
            for label, model in (("base", base), (f"fcos b{budget:g}", pruned)):
                for size in args.batch_sizes:
                    profile = layer_profile(model, inputs, batch_size=size, forwards=10 if size > 1 else 50,
                                            threads=args.threads)
                    record["profiles"][f"{model_name} {label} batch {size}"] = {
                        **profile, "by_operation": profile_summary(profile, by_operation),
                        "by_stage": profile_summary(profile, by_stage)}
        # runtimes: the final FCOS ResNet56 (or first model) as eager, TorchScript, ONNX Runtime
        name = "resnet56" if "resnet56" in final_fcos else next(iter(final_fcos), None)
        if name is not None:
            budget, pruned, base = final_fcos[name]
            runners = {"base": torch_runner(base), "eager": torch_runner(pruned)}
            for fmt in ("torchscript", "onnx"):
                path = work / f"{name}-fcos.{fmt}"
                export_checked(pruned, fmt, path, inputs[:64])
                runner = exported_runner(path, threads=args.threads)
                runners[runner.runtime] = runner
            record["runtimes"] = {"model": name, "budget": budget,
                                  "latency": measure_latency(runners, inputs, config, reference="base")}
    record["load_at_end"] = list(os.getloadavg())
    record["seconds"] = time.time() - started
    table = pd.DataFrame(rows)
    record["lacd_target"] = args.lacd_target
    table.to_csv(args.out_dir / f"{args.prefix}.csv", index=False, float_format="%.6g")
    (args.out_dir / f"{args.prefix}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    plot(table, args.batch_sizes, args.out_dir / f"{args.prefix}_speedup_vs_macs.png")
    print()
    print(markdown(table, args.batch_sizes))
    if record["runtimes"]:
        print(f"\nruntimes, {record['runtimes']['model']} fcos b{record['runtimes']['budget']:g}:")
        for entry in record["runtimes"]["latency"]["batches"]:
            print(f"  batch {entry['batch_size']}: " + ", ".join(
                f"{n} {s['median_ms']:.2f} ms ({s['speedup']['median']:.2f}x, CPU {s['cpu_speedup']['median']:.2f}x)"
                for n, s in entry["models"].items()))
    for key, profile in record["profiles"].items():
        print(f"\nprofile {key}: forward {profile['forward_ms']:.2f} ms")
        for entry in profile["by_operation"]:
            print(f"  {entry['group']:50s} {entry['self_ms']:8.3f} ms {100 * entry['share']:5.1f}% time "
                  f"{100 * entry['mac_share']:5.1f}% MACs")
    print(f"\nload average at start {load_start}, at end {record['load_at_end']}; {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()
