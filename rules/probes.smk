# LaCD probes outside the prune/fine-tune chains: the linear-probe diagnosis of the
# unpruned model and the probe-accuracy-by-depth figure that explains FCOS (probes on the base
# model vs. after stage 1, removed blocks marked).


rule diagnose_base:
    """LaCD linear probes on every block of the base model (reference curve)."""
    input:
        data=prepared_data(),
        checkpoint=os.path.join(run_dir(), "model.pt"),
    output:
        report=os.path.join(run_dir(), "lacd_probe.json"),
    params:
        options=lambda wildcards: dict(config["pruner_options"].get("lacd", {})),
        seed=lambda wildcards: int(wildcards.seed),
        devices=lambda wildcards: device_settings(train_options(wildcards)),
    log:
        log_path("diagnose_base", "{dataset}", "{model}", "seed{seed}.log"),
    benchmark:
        benchmark_path("diagnose_base", "{dataset}", "{model}", "seed{seed}.tsv")
    threads: config["threads"]["train"]
    resources:
        mem_mb=lambda wildcards: step_resources("train", "mem_mb"),
        runtime=lambda wildcards: step_resources("train", "runtime"),
        gpu=lambda wildcards: step_resources("train", "gpu"),
    conda:
        "../environment.yml"
    script:
        "../scripts/diagnose.py"


rule probe_curve:
    """Probe accuracy by depth: the base model, and the input of the chain's LaCD step."""
    input:
        base=os.path.join(run_dir(), "lacd_probe.json"),
        lacd=lacd_step_record,
    output:
        figure=report(
            os.path.join(method_dir(), "probe_curve.png"),
            category="LaCD probe curves",
            subcategory="{dataset}",
        ),
    params:
        labels=lambda wildcards: ["base model", f"{wildcards.method}: input of LaCD"],
        title=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}: {wildcards.method} (b={wildcards.budget})",
    log:
        log_path("probe_curve", "{dataset}", "{model}", "seed{seed}", "{method}", "b{budget}.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../scripts/probe_curve.py"
