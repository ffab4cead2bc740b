"""What a finished Snakemake run of this workflow cost: per rule, jobs, summed job wall time and
summed CPU time from the rules' benchmark files (results/benchmarks/<rule>/...tsv), and the
machine load recorded alongside (a file of `date loadavg` lines, optional).

On a shared machine the wall time of a run depends on what else ran; the summed CPU time of its
jobs does not (much), so both are reported: the CPU total divided by the core count is the wall
time the run needs on an otherwise idle machine with every core busy.

Usage: python bench/run_cost.py RESULTS_DIR [--cores 2] [--load-log FILE] [--started ISO]
       [--finished ISO] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from datetime import datetime
from pathlib import Path


def rule_costs(results: Path) -> dict[str, dict[str, float]]:
    costs: dict[str, dict[str, float]] = {}
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        entry = costs.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0})
        for row in rows:
            entry["jobs"] += 1
            entry["wall_s"] += float(row["s"])
            entry["cpu_s"] += float(row["cpu_time"]) if row.get("cpu_time") not in (None, "", "NA") else 0.0
    return costs


def load_summary(path: Path | None) -> dict[str, float] | None:
    if path is None or not path.is_file():
        return None
    ones = [float(line.split()[1]) for line in path.read_text().splitlines() if len(line.split()) > 1]
    if not ones:
        return None
    return {"samples": len(ones), "mean_1min_load": statistics.fmean(ones), "max_1min_load": max(ones)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--load-log", type=Path)
    parser.add_argument("--started")
    parser.add_argument("--finished")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    costs = rule_costs(args.results)
    total_cpu = sum(c["cpu_s"] for c in costs.values())
    total_wall = sum(c["wall_s"] for c in costs.values())
    summary = {"rules": costs, "jobs": sum(int(c["jobs"]) for c in costs.values()),
               "job_wall_s": total_wall, "job_cpu_s": total_cpu, "cores": args.cores,
               "ideal_wall_h": total_cpu / args.cores / 3600, "load": load_summary(args.load_log)}
    if args.started and args.finished:
        elapsed = datetime.fromisoformat(args.finished) - datetime.fromisoformat(args.started)
        summary["elapsed_h"] = elapsed.total_seconds() / 3600
    print("| rule | jobs | job wall (h) | job CPU (h) |\n|---|---|---|---|")
    for rule, c in sorted(costs.items(), key=lambda item: -item[1]["cpu_s"]):
        print(f"| {rule} | {int(c['jobs'])} | {c['wall_s'] / 3600:.2f} | {c['cpu_s'] / 3600:.2f} |")
    print(f"| total | {summary['jobs']} | {total_wall / 3600:.2f} | {total_cpu / 3600:.2f} |")
    print(f"\nCPU total / {args.cores} cores = {summary['ideal_wall_h']:.2f} h"
          + (f"; elapsed {summary['elapsed_h']:.2f} h" if "elapsed_h" in summary else "")
          + (f"; 1-min load mean {summary['load']['mean_1min_load']:.2f}, max {summary['load']['max_1min_load']:.2f}"
             if summary["load"] else ""))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
