# Every pipeline method (FCOS, its ablations, the channel and layer baselines) is a chain of
# pruning steps from fcos/prune/chains.yaml; each step is prune -> recovery fine-tune. These two
# rules serve all of them, so every method gets the same fine-tuning schedule and the same
# recovery budget (config finetune.epochs, counted over the whole chain).


rule prune_step:
    """Apply one pruning step (a registered fcos.prune method) to the parent checkpoint."""
    input:
        data=prepared_data(),
        parent=parent_checkpoint,
    output:
        checkpoint=step_path("{step}", "{pruner}", ".pruned.pt"),
        record=step_path("{step}", "{pruner}", ".pruned.json"),
    params:
        budget=step_budget,
        options=step_options,
        seed=lambda wildcards: int(wildcards.seed),
        devices=lambda wildcards: device_settings(finetune_options(wildcards)),
    log:
        log_path("prune", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}", "{step}-{pruner}.log"),
    benchmark:
        benchmark_path("prune", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}", "{step}-{pruner}.tsv")
    threads: config["threads"]["train"]
    resources:
        mem_mb=lambda wildcards: step_resources("train", "mem_mb"),
        runtime=lambda wildcards: step_resources("train", "runtime"),
        gpu=lambda wildcards: step_resources("train", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/prune_step.py"


rule finetune_step:
    """Recovery fine-tuning of a pruned checkpoint (best-on-validation)."""
    input:
        data=prepared_data(),
        checkpoint=step_path("{step}", "{pruner}", ".pruned.pt"),
    output:
        checkpoint=step_path("{step}", "{pruner}", ".pt"),
    params:
        train=finetune_options,
        recovery_share=step_recovery_share,
    log:
        log_path("finetune", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}", "{step}-{pruner}.log"),
    benchmark:
        benchmark_path("finetune", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}", "{step}-{pruner}.tsv")
    threads: config["threads"]["train"]
    resources:
        mem_mb=lambda wildcards: step_resources("train", "mem_mb"),
        runtime=lambda wildcards: step_resources("train", "runtime"),
        gpu=lambda wildcards: step_resources("train", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/finetune_step.py"
