#!/usr/bin/env bash
# Version a finished run's results with DVC and push them to the default remote.
#
#   tools/version-results.sh [RESULTS_DIR]      (default: results, the config's results_dir)
#
# Run it after `snakemake` has finished (never from inside a rule): it refuses while Snakemake
# still has jobs to run for the default config (or the one in FCOS_CONFIGFILE), then
# `dvc add RESULTS_DIR` (prepared data, base checkpoints, every pruned and fine-tuned model,
# metrics, latency, logs, benchmarks and the report: one directory entry, RESULTS_DIR.dvc) and
# `dvc push`. Commit RESULTS_DIR.dvc; in another clone `dvc pull` restores the tree and
# `snakemake -n` has nothing to do: profiles/default decides reruns on inputs, parameters, code
# and software environment, not on the modification times that `dvc pull` sets.
set -euo pipefail

die() { echo "version-results: $*" >&2; exit 2; }

results=${1:-results}
results=${results%/}
[[ -d $results ]] || die "$results: no such results directory (run snakemake first)"
command -v dvc >/dev/null || die "dvc not on PATH (it is in the project's venv: .venv/bin)"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$(pwd): not a git repository"
[[ -d .dvc ]] || die "$(pwd): no .dvc directory (dvc init)"
if git check-ignore -q "$results.dvc"; then
    die "$results.dvc would be ignored by git; results_dir must not lie in an ignored directory"
fi

configargs=()
[[ -n ${FCOS_CONFIGFILE:-} ]] && configargs=(--configfile "$FCOS_CONFIGFILE")
plan=$(snakemake --dry-run "${configargs[@]}" 2>&1) \
    || die "snakemake --dry-run failed: $(tail -1 <<<"$plan")"
grep -q "Nothing to be done" <<<"$plan" \
    || die "snakemake still has jobs to run; finish the run before versioning it"

dvc add -q "$results"
dvc push -q
echo "version-results: $results versioned in $results.dvc and pushed;" \
     "commit it: git add $results.dvc .gitignore && git commit" >&2
