#!/usr/bin/env bash
# Version a finished run's results with DVC and push them to the default remote.
#
#   tools/version-results.sh [RESULTS_DIR]             (default: results, the config's results_dir)
#   tools/version-results.sh --restore [RESULTS_DIR]   (in another clone: pull and mark up to date)
#
# Run it after `snakemake` has finished (never from inside a rule): it refuses while Snakemake
# still has jobs to run for the default config (or the one in FCOS_CONFIGFILE), then
# `dvc add RESULTS_DIR` (prepared data, base checkpoints, every pruned and fine-tuned model,
# metrics, latency, logs, benchmarks and the report: one directory entry, RESULTS_DIR.dvc) and
# `dvc push`. Commit RESULTS_DIR.dvc. In another clone `--restore` runs `dvc pull`, then
# `snakemake --touch`: the pulled files get the modification times of the pull in no particular
# order and the clone has no .snakemake metadata, so without it Snakemake would rerun jobs whose
# inputs look newer. Touching is safe here because versioning refused any tree that still had
# jobs to run; `--restore` then checks that a dry run has nothing to do.
set -euo pipefail

die() { echo "version-results: $*" >&2; exit 2; }

restore=0
if [[ ${1:-} == --restore ]]; then restore=1; shift; fi
results=${1:-results}
results=${results%/}
configargs=()
[[ -n ${FCOS_CONFIGFILE:-} ]] && configargs=(--configfile "$FCOS_CONFIGFILE")
if (( restore )); then
    command -v dvc >/dev/null || die "dvc not on PATH (it is in the project's venv: .venv/bin)"
    [[ -f $results.dvc ]] || die "$results.dvc: no such file (version the results first)"
    dvc pull -q "$results.dvc" || die "dvc pull $results.dvc failed"
    snakemake --touch --cores 1 "${configargs[@]}" >/dev/null 2>&1 || die "snakemake --touch failed"
    plan=$(snakemake --dry-run "${configargs[@]}" 2>&1) || die "snakemake --dry-run failed: $(tail -1 <<<"$plan")"
    grep -q "Nothing to be done" <<<"$plan" \
        || die "$results: restored, but snakemake still has jobs to run (config or code changed since it was versioned?)"
    echo "version-results: $results restored from DVC; snakemake has nothing to do" >&2
    exit 0
fi
[[ -d $results ]] || die "$results: no such results directory (run snakemake first)"
command -v dvc >/dev/null || die "dvc not on PATH (it is in the project's venv: .venv/bin)"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$(pwd): not a git repository"
[[ -d .dvc ]] || die "$(pwd): no .dvc directory (dvc init)"
if git check-ignore -q "$results.dvc"; then
    die "$results.dvc would be ignored by git; results_dir must not lie in an ignored directory"
fi

plan=$(snakemake --dry-run "${configargs[@]}" 2>&1) \
    || die "snakemake --dry-run failed: $(tail -1 <<<"$plan")"
grep -q "Nothing to be done" <<<"$plan" \
    || die "snakemake still has jobs to run; finish the run before versioning it"

dvc add -q "$results"
dvc push -q
echo "version-results: $results versioned in $results.dvc and pushed;" \
     "commit it: git add $results.dvc .gitignore && git commit" >&2
