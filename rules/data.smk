rule prepare_dataset:
    """Synthesise (or load the real file of) one dataset, split it train/val/test, write HDF5."""
    input:
        real_source_files,
    output:
        prepared_data(),
    params:
        options=dataset_options,
    log:
        log_path("prepare_dataset", "{dataset}.log"),
    benchmark:
        benchmark_path("prepare_dataset", "{dataset}.tsv")
    threads: 1
    resources:
        mem_mb=lambda wildcards: step_resources("prepare", "mem_mb"),
        runtime=lambda wildcards: step_resources("prepare", "runtime"),
    conda:
        "../environment.yml"
    script:
        "../scripts/prepare_dataset.py"
