rule report_dataset:
    """Comparison table (CSV + Markdown) and accuracy-vs-SNR figures for one dataset."""
    input:
        metrics=lambda wildcards: metrics_files(wildcards.dataset),
        step_metrics=lambda wildcards: step_metrics_files(wildcards.dataset),
        latency=lambda wildcards: latency_files(wildcards.dataset),
    output:
        csv=report(
            results("report", "{dataset}", "table.csv"),
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "kind": "table (CSV)"},
        ),
        markdown=results("report", "{dataset}", "table.md"),
        steps=results("report", "{dataset}", "steps.csv"),
        pareto=report(
            results("report", "{dataset}", "pareto.png"),
            category="Accuracy vs MACs",
            subcategory="{dataset}",
        ),
        figures=[
            report(path, category="Accuracy vs SNR", subcategory="{dataset}")
            for path in expand(results("report", "{{dataset}}", "snr_{model}.png"), model=MODELS)
        ],
    params:
        models=MODELS,
    log:
        log_path("report", "{dataset}.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../scripts/report.py"
