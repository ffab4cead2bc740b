# Inference latency of every final model (fcos.latency harness, config `latency`). Each job times
# its model interleaved with the unpruned base model, so the speedup is a ratio measured within
# one run; the base model's own job times it against itself (the harness's noise floor). The
# JSON lands next to the model's metrics.json; the report joins it into the comparison table.


rule latency_base:
    """Latency of a base model (timed against itself: the measured speedup shows the noise)."""
    input:
        data=prepared_data(),
        checkpoint=os.path.join(run_dir(), "model.pt"),
        reference=os.path.join(run_dir(), "model.pt"),
    output:
        latency=os.path.join(run_dir(), "latency.json"),
    params:
        latency=config["latency"],
        extra=lambda wildcards: {"method": "base", "budget": None, "seed": int(wildcards.seed)},
    log:
        log_path("latency", "{dataset}", "{model}", "seed{seed}", "base.log"),
    benchmark:
        benchmark_path("latency", "{dataset}", "{model}", "seed{seed}", "base.tsv")
    threads: config["latency"]["threads"]
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
    conda:
        "../environment.yml"
    script:
        "../scripts/latency.py"


rule latency_method:
    """Latency of a pipeline method's final checkpoint, interleaved with its base model."""
    input:
        data=prepared_data(),
        checkpoint=final_checkpoint,
        reference=os.path.join(run_dir(), "model.pt"),
    output:
        latency=os.path.join(method_dir(), "latency.json"),
    params:
        latency=config["latency"],
        extra=lambda wildcards: {
            "method": wildcards.method,
            "budget": None if wildcards.budget == UNBUDGETED else float(wildcards.budget),
            "seed": int(wildcards.seed),
        },
    log:
        log_path("latency", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}.log"),
    benchmark:
        benchmark_path("latency", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}.tsv")
    threads: config["latency"]["threads"]
    resources:
        mem_mb=lambda wildcards: step_resources("evaluate", "mem_mb"),
        runtime=lambda wildcards: step_resources("evaluate", "runtime"),
    conda:
        "../environment.yml"
    script:
        "../scripts/latency.py"
