# Paths and parameter helpers shared by every rule. Rules ask these functions for paths; no rule
# builds one itself. Layout under config["results_dir"]:
#   data/{dataset}.h5                                           prepared (split) dataset
#   {dataset}/{model}/seed{seed}/base/model.pt, metrics.json    trained base model
#   {dataset}/{model}/seed{seed}/{method}/b{budget}/...         pruned variants (pruning methods)
#   report/{dataset}/table.csv, table.md, snr_{model}.png       comparison report
#   logs/..., benchmarks/...                                    per-job logs and benchmarks
import os

RESULTS = config["results_dir"]
DATASETS = sorted(config["datasets"])
MODELS = list(config["models"])
SEEDS = [int(s) for s in config["seeds"]]
METHODS = list(config["methods"])


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    seed=r"\d+",


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


def step_resources(step, key):
    return config["resources"][step][key]


def metrics_files(dataset):
    """Every metrics JSON that the report of ``dataset`` compares."""
    return [
        os.path.join(run_dir(dataset, model, seed, method), "metrics.json")
        for model in MODELS
        for seed in SEEDS
        for method in METHODS
    ]


def report_outputs(dataset):
    base = results("report", dataset)
    return [os.path.join(base, "table.csv"), os.path.join(base, "table.md")] + [
        os.path.join(base, f"snr_{model}.png") for model in MODELS
    ]


def all_report_outputs():
    return [path for dataset in DATASETS for path in report_outputs(dataset)]
