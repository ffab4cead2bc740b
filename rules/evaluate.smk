rule evaluate_base:
    """Test-split accuracy (overall, per SNR, per class, confusion), MACs and params of a base model."""
    input:
        data=prepared_data(),
        checkpoint=os.path.join(run_dir(), "model.pt"),
    output:
        metrics=os.path.join(run_dir(), "metrics.json"),
    params:
        device=config["device"],
        extra=lambda wildcards: {"method": "base", "budget": None, "seed": int(wildcards.seed)},
    log:
        log_path("evaluate", "{dataset}", "{model}", "seed{seed}", "base.log"),
    benchmark:
        benchmark_path("evaluate", "{dataset}", "{model}", "seed{seed}", "base.tsv")
    threads: 1
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
        gpu=lambda wildcards: step_resources("evaluate", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/evaluate.py"


rule evaluate_method:
    """Metrics of a pipeline method's final (last fine-tuned) checkpoint at one budget."""
    input:
        data=prepared_data(),
        checkpoint=final_checkpoint,
    output:
        metrics=os.path.join(method_dir(), "metrics.json"),
    params:
        device=config["device"],
        extra=lambda wildcards: {
            "method": wildcards.method,
            "budget": None if wildcards.budget == UNBUDGETED else float(wildcards.budget),
            "seed": int(wildcards.seed),
        },
    log:
        log_path("evaluate", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}.log"),
    benchmark:
        benchmark_path("evaluate", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}.tsv")
    threads: 1
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
        gpu=lambda wildcards: step_resources("evaluate", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/evaluate.py"


rule evaluate_step:
    """Metrics of one intermediate checkpoint of a chain (after pruning, or after fine-tuning)."""
    input:
        data=prepared_data(),
        checkpoint=step_path("{step}", "{pruner}", "{kind}.pt"),
    output:
        metrics=step_path("{step}", "{pruner}", "{kind}.metrics.json"),
    params:
        device=config["device"],
        extra=lambda wildcards: {
            "method": f"{wildcards.method}:{wildcards.step}-{wildcards.pruner}{wildcards.kind}",
            "budget": None if wildcards.budget == UNBUDGETED else float(wildcards.budget),
            "seed": int(wildcards.seed),
        },
    wildcard_constraints:
        kind=r"(\.pruned)?",
    log:
        log_path("evaluate", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}", "{step}-{pruner}{kind}.log"),
    threads: 1
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
        gpu=lambda wildcards: step_resources("evaluate", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/evaluate.py"
