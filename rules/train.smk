rule train_base:
    """Train one base (unpruned) model per (dataset, model, seed); best-on-validation checkpoint."""
    input:
        data=prepared_data(),
        builder=builder_files,
    output:
        checkpoint=os.path.join(run_dir(), "model.pt"),
    params:
        train=train_options,
        builder=model_builder,
    log:
        log_path("train_base", "{dataset}", "{model}", "seed{seed}.log"),
    benchmark:
        benchmark_path("train_base", "{dataset}", "{model}", "seed{seed}.tsv")
    threads: config["threads"]["train"]
    resources:
        mem_mb=lambda wildcards: step_resources("train", "mem_mb"),
        runtime=lambda wildcards: step_resources("train", "runtime"),
        gpu=lambda wildcards: step_resources("train", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/train_base.py"
