rule report_dataset:
    """Comparison tables (CSV, Markdown, LaTeX), paired verdicts and figures for one dataset."""
    input:
        metrics=lambda wildcards: metrics_files(wildcards.dataset),
        step_metrics=lambda wildcards: step_metrics_files(wildcards.dataset),
        latency=lambda wildcards: latency_files(wildcards.dataset),
    output:
        csv=report(
            report_file("{dataset}", "csv"),
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "kind": "table (CSV)"},
        ),
        markdown=report_file("{dataset}", "markdown"),
        latex=report_file("{dataset}", "latex"),
        verdicts_csv=report(
            report_file("{dataset}", "verdicts_csv"),
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "kind": "paired verdicts (CSV)"},
        ),
        verdicts_markdown=report_file("{dataset}", "verdicts_markdown"),
        steps_csv=report_file("{dataset}", "steps_csv"),
        pareto=report(
            report_file("{dataset}", "pareto"),
            category="Accuracy vs MACs",
            subcategory="{dataset}",
        ),
        verdicts_figure=report(
            report_file("{dataset}", "verdicts_figure"),
            category="Paired verdicts",
            subcategory="{dataset}",
        ),
        curves=report(
            report_file("{dataset}", "curves"),
            category="Training curves",
            subcategory="{dataset}",
        ),
        snr_figures=[
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
