# Paths and parameter helpers shared by every rule. Rules ask these functions for paths; no rule
# builds one itself. Layout under config["results_dir"]:
#   data/{dataset}.h5                                         prepared (split) dataset
#   {dataset}/{model}/seed{seed}/base/model.pt, metrics.json  trained base model
#   {dataset}/{model}/seed{seed}/{method}/b{budget}/          a pipeline method at one MAC budget
#       {step}-{pruner}.pruned.pt/.json   step's pruned checkpoint and its record
#       {step}-{pruner}.pt                the same after recovery fine-tuning
#       *.metrics.json, metrics.json     per-checkpoint metrics; metrics.json = the final model
#   report/{dataset}/table.csv, table.md, snr_{model}.png     comparison report
#   logs/..., benchmarks/...                                  per-job logs and benchmarks
# Methods (other than "base") are chains of pruning steps, defined in fcos/prune/chains.yaml and
# read through the library (fcos.prune.chains: importing it does not import torch).
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)  # this checkout's fcos library
from fcos import model_entries as fcos_model_entries  # noqa: E402
from fcos.prune import chains as fcos_chains  # noqa: E402
from fcos.report import REPORT_FILES  # noqa: E402

CHAINS = fcos_chains.method_chains()

RESULTS = config["results_dir"]
DATASETS = sorted(config["datasets"])
try:
    MODEL_ENTRIES = {entry.name: entry for entry in fcos_model_entries.model_entries(config["models"], workflow.basedir)}
    fcos_model_entries.check_exclude(config["exclude"], list(MODEL_ENTRIES))
except fcos_model_entries.ConfigError as _err:
    refuse_config(str(_err))
MODELS = list(MODEL_ENTRIES)
SEEDS = [int(s) for s in config["seeds"]]
PRUNED_METHODS = [m for m in config["methods"] if m != "base"]
METHODS = ["base"] + PRUNED_METHODS
BUDGETS = [f"{float(b):g}" for b in config["budgets"]]
UNBUDGETED = "none"

for _method in PRUNED_METHODS:
    if _method not in CHAINS:
        refuse_config(
            f"config key 'methods': unknown method {_method!r}; expected base or one of "
            f"{', '.join(sorted(CHAINS))}"
        )
PRUNERS = fcos_chains.step_pruners()
try:
    fcos_chains.check_pruner_options(config["pruner_options"])
except fcos_chains.ConfigError as _err:
    refuse_config(str(_err))


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    seed=r"\d+",
    method="|".join(m.replace("-", "\\-") for m in CHAINS),
    pruner="|".join(s.replace("-", "\\-") for s in PRUNERS),
    budget=r"\d+(\.\d+)?|none",
    step=r"\d+",


def results(*parts):
    return os.path.join(RESULTS, *parts)


def log_path(*parts):
    return results("logs", *parts)


def benchmark_path(*parts):
    return results("benchmarks", *parts)


def prepared_data(dataset="{dataset}"):
    return results("data", f"{dataset}.h5")


def run_dir(dataset="{dataset}", model="{model}", seed="{seed}", method="base"):
    return results(dataset, model, f"seed{seed}", method)


def dataset_options(wildcards):
    """The prepare step's keyword arguments for one dataset entry of the config."""
    entry = dict(config["datasets"][wildcards.dataset])
    entry.pop("resources", None)
    return entry


def real_source_files(wildcards):
    """The real dataset file a prepare step reads (none for synthetic data)."""
    source = config["datasets"][wildcards.dataset]["source"]
    return [] if source == "synthetic" else [source]


def train_options(wildcards):
    """TrainConfig fields for one (model, seed): config.train, then train_overrides[model]."""
    options = dict(config["train"])
    options.update(config.get("train_overrides", {}).get(wildcards.model, {}))
    options["seed"] = int(wildcards.seed)
    options["device"] = config["device"]
    return options


def device_settings(options):
    """The device settings (fcos.device) in TrainConfig fields ``options``, as the keyword
    arguments of fcos.api's pruning and diagnosis steps: the config's ``device`` and the
    ``mixed_precision``/``loader_workers`` the training of the same run uses (those set)."""
    return {key: options[key] for key in ("device", "mixed_precision", "loader_workers") if key in options}


def builder_files(wildcards):
    """The user's builder file of a model (an input of its training: editing it retrains)."""
    path = MODEL_ENTRIES[wildcards.model].builder_file
    return [] if path is None else [path]


def model_builder(wildcards):
    """The UserBuilder of a user's model (None for a registry model); later steps rebuild it
    from the record its base checkpoint keeps."""
    return MODEL_ENTRIES[wildcards.model].builder


def step_resources(step, key):
    return config["resources"][step][key]


def method_steps(method):
    return CHAINS[method]["steps"]


def applies_to(method, model):
    return fcos_model_entries.method_applies(CHAINS[method], MODEL_ENTRIES[model])


def budgets_of(method):
    """The budgets a pipeline method runs at: the config's list, or once if it takes none."""
    return BUDGETS if fcos_chains.takes_budget(method) else [UNBUDGETED]


def method_dir(dataset="{dataset}", model="{model}", seed="{seed}", method="{method}", budget="{budget}"):
    return os.path.join(run_dir(dataset, model, seed, method), f"b{budget}")


def step_path(step, pruner, suffix, **where):
    """A file of step ``step`` (1-based) of a method's chain; suffix e.g. ".pt", ".pruned.json"."""
    return os.path.join(method_dir(**where), f"{step}-{pruner}{suffix}")


def parent_checkpoint(wildcards):
    """What step ``wildcards.step`` prunes: the base model, or the previous fine-tuned step."""
    steps = method_steps(wildcards.method)
    index = int(wildcards.step)
    if not 1 <= index <= len(steps) or steps[index - 1]["pruner"] != wildcards.pruner:
        raise WorkflowError(f"{wildcards.method} has no step {index}-{wildcards.pruner}")
    if index == 1:
        return os.path.join(run_dir(wildcards.dataset, wildcards.model, wildcards.seed), "model.pt")
    where = dict(wildcards.items())
    del where["step"], where["pruner"]
    return step_path(index - 1, steps[index - 2]["pruner"], ".pt", **where)


def step_budget(wildcards):
    """The MAC reduction (against the base model) this step aims at; None if unbudgeted."""
    budget = None if wildcards.budget == UNBUDGETED else float(wildcards.budget)
    return fcos_chains.step_budget(wildcards.method, int(wildcards.step), budget)


def step_recovery_share(wildcards):
    """The most of the recovery budget (config finetune.epochs) this step's fine-tuning may use."""
    return fcos_chains.recovery_share(wildcards.method, int(wildcards.step))


def step_options(wildcards):
    return dict(config["pruner_options"].get(wildcards.pruner, {}))


def finetune_options(wildcards):
    """TrainConfig of recovery fine-tuning: config.train, then config.finetune, same seed.
    Its ``epochs`` is the recovery budget of the whole chain (fcos.api.finetune_checkpoint)."""
    options = train_options(wildcards)
    options.update(config["finetune"])
    return options


def final_checkpoint(wildcards):
    steps = method_steps(wildcards.method)
    where = {k: v for k, v in wildcards.items()}
    return step_path(len(steps), steps[-1]["pruner"], ".pt", **where)


def lacd_step_record(wildcards):
    """The record of the LaCD step of a method's chain (it holds the probe report)."""
    for index, step in enumerate(method_steps(wildcards.method), start=1):
        if step["pruner"] == "lacd":
            return step_path(index, "lacd", ".pruned.json", **dict(wildcards.items()))
    raise WorkflowError(f"method {wildcards.method} has no LaCD step")


def chain_outputs(dataset, model, seed, method, budget):
    """Metrics of every checkpoint along a method's chain: each step right after pruning (before
    recovery), each intermediate fine-tuned step, and the final model (metrics.json)."""
    where = dict(dataset=dataset, model=model, seed=seed, method=method, budget=budget)
    files = [os.path.join(method_dir(**where), "metrics.json")]
    steps = method_steps(method)
    for index, step in enumerate(steps, start=1):
        files.append(step_path(index, step["pruner"], ".pruned.metrics.json", **where))
        if index < len(steps):  # the last fine-tuned step is the method's own metrics.json
            files.append(step_path(index, step["pruner"], ".metrics.json", **where))
    return files


def models_for(dataset):
    """The models run on ``dataset``: config models minus the config's ``exclude`` pairs."""
    excluded = {(pair["dataset"], pair["model"]) for pair in config["exclude"]}
    return [model for model in MODELS if (dataset, model) not in excluded]


def metrics_files(dataset):
    """Every final metrics JSON that the report of ``dataset`` compares."""
    files = []
    for model in models_for(dataset):
        for seed in SEEDS:
            files.append(os.path.join(run_dir(dataset, model, seed), "metrics.json"))
            for method in PRUNED_METHODS:
                if not applies_to(method, model):
                    continue
                for budget in budgets_of(method):
                    files.append(os.path.join(method_dir(dataset, model, seed, method, budget), "metrics.json"))
    return files


def step_metrics_files(dataset):
    """Metrics of every intermediate checkpoint (after each pruning step and each fine-tune);
    none when config ``step_metrics`` is false."""
    if not config["step_metrics"]:
        return []
    return [
        path
        for model in models_for(dataset)
        for seed in SEEDS
        for method in PRUNED_METHODS
        if applies_to(method, model)
        for budget in budgets_of(method)
        for path in chain_outputs(dataset, model, seed, method, budget)
    ]


def report_file(dataset, key):
    """One file of a dataset's report (keys and names: fcos.report.REPORT_FILES)."""
    return results("report", dataset, REPORT_FILES[key])


def report_outputs(dataset):
    return [report_file(dataset, key) for key in REPORT_FILES] + [
        results("report", dataset, f"snr_{model}.png") for model in MODELS
    ]


def all_report_outputs():
    return [path for dataset in DATASETS for path in report_outputs(dataset)]


def all_probe_curves():
    """One probe-curve figure per run of a method whose chain has a LaCD step."""
    return [
        os.path.join(method_dir(dataset, model, seed, method, budget), "probe_curve.png")
        for dataset in DATASETS
        for model in models_for(dataset)
        for seed in SEEDS
        for method in PRUNED_METHODS
        if applies_to(method, model) and any(step["pruner"] == "lacd" for step in method_steps(method))
        for budget in budgets_of(method)
    ]


def latency_files(dataset):
    """The latency JSON of every final model the report of ``dataset`` compares, each next to
    that model's metrics.json (rules/latency.smk)."""
    return [os.path.join(os.path.dirname(path), "latency.json") for path in metrics_files(dataset)]
