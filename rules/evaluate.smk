rule evaluate:
    """Test-split accuracy (overall, per SNR, per class, confusion), MACs and params of a checkpoint."""
    input:
        data=prepared_data(),
        checkpoint=os.path.join(run_dir(method="{method}"), "model.pt"),
    output:
        metrics=os.path.join(run_dir(method="{method}"), "metrics.json"),
    params:
        device=config["device"],
    log:
        log_path("evaluate", "{dataset}", "{model}", "seed{seed}", "{method}.log"),
    benchmark:
        benchmark_path("evaluate", "{dataset}", "{model}", "seed{seed}", "{method}.tsv")
    threads: 1
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
    conda:
        "../environment.yml"
    script:
        "../scripts/evaluate.py"
