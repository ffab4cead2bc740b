"""No step but evaluation reads the test split.

Every pipeline step (base training with best-on-val checkpoint selection, every registered
pruner -- fusion and its budget search, LaCD's probes and block selection, the channel
and layer baselines --, the LaCD diagnosis and recovery fine-tuning) is run through its
``fcos.api`` entry point, as the Snakemake scripts call it, while ``PreparedDataset.split`` (the
one accessor of a prepared file's arrays) logs which split each step asked for.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from fcos.api import (diagnose_checkpoint, evaluate_to_json, finetune_checkpoint, prune_checkpoint,
                      train_base_model)
from fcos.data.prepared import PreparedDataset
from fcos.prune import PRUNERS, load_pruners

# Which splits a step reads does not depend on how much of them it uses: every step runs with
# the least work that still exercises each of its reads (two epochs, so that checkpoint
# selection compares epochs on val; probes fit on train and score on val; one batch per phase).
TRAIN = {"epochs": 2, "max_batches_per_epoch": 1, "batch_size": 16, "device": "cpu", "seed": 0}
PROBES = {"max_train": 48, "max_val": 24, "probe_steps": 5}
OPTIONS = {"lacd": PROBES, "lcp": PROBES, "sr-init": {"val_samples": 8},
           "slimming": {"sparsity_epochs": 1, "max_batches": 1, "batch_size": 8},
           "taylor": {"num_batches": 1, "batch_size": 8}}
BUDGET = 0.3

# One ResNet56 through every step: the slowest file of the suite on a loaded machine.
pytestmark = pytest.mark.slow


def registered_methods() -> list[str]:
    load_pruners()
    return sorted(PRUNERS)


@pytest.fixture(scope="module")
def reads(tiny_rml2016, tmp_path_factory) -> dict[str, set[str]]:
    """{step: splits it read}, for one ResNet56 (it has BatchNorm, so slimming applies)."""
    work = tmp_path_factory.mktemp("split-access")
    log: dict[str, set[str]] = defaultdict(set)
    current = {"step": None}
    original = PreparedDataset.split

    def logged_split(self, name):
        log[current["step"]].add(name)
        return original(self, name)

    def step(name, fn, *args, **kwargs):
        current["step"] = name
        log[name]  # a step that reads nothing is listed too
        try:
            return fn(*args, **kwargs)
        finally:
            current["step"] = None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PreparedDataset, "split", logged_split)
        base = work / "base.pt"
        step("train_base", train_base_model, tiny_rml2016, "resnet56", base, TRAIN, progress=False)
        step("diagnose", diagnose_checkpoint, base, tiny_rml2016, work / "diagnosis.json",
             options=PROBES, progress=False)
        for method in registered_methods():
            step(f"prune:{method}", prune_checkpoint, base, tiny_rml2016, method,
                 work / f"{method}.pruned.pt", work / f"{method}.pruned.json",
                 budget=None if method == "none" else BUDGET, options=OPTIONS.get(method, {}),
                 progress=False)
        step("finetune", finetune_checkpoint, work / "fcos-stage1.pruned.pt", tiny_rml2016,
             work / "fcos-stage1.pt", TRAIN, progress=False)
        step("evaluate", evaluate_to_json, work / "fcos-stage1.pt", tiny_rml2016, work / "metrics.json",
             device="cpu")
    assert None not in log, "a split was read outside any step"
    return dict(log)


def test_every_registered_method_was_run(reads):
    pruned = {name.removeprefix("prune:") for name in reads if name.startswith("prune:")}
    assert pruned == set(registered_methods())
    assert {"fcos-stage1", "lacd", "lcp", "sr-init", "slimming", "taylor"} <= pruned


@pytest.mark.parametrize("step", ["train_base", "finetune"])
def test_checkpoint_selection_trains_on_train_and_selects_on_val(reads, step):
    assert reads[step] == {"train", "val"}


def test_probes_fit_on_train_and_score_on_val(reads):
    assert reads["diagnose"] == {"train", "val"}
    assert reads["prune:lacd"] == reads["prune:lcp"] == {"train", "val"}


def test_no_pruning_step_reads_the_test_split(reads):
    leaking = {name: sorted(splits) for name, splits in reads.items()
               if name.startswith("prune:") and "test" in splits}
    assert not leaking, f"pruning steps that read the test split: {leaking}"
    assert any(reads[name] for name in reads if name.startswith("prune:"))  # the log sees them


def test_evaluation_is_the_only_reader_of_test(reads):
    assert reads["evaluate"] == {"test"}
    assert [name for name, splits in reads.items() if "test" in splits] == ["evaluate"]
