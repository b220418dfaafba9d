# A trained stage as a model others can run: merged safetensors + chat template, GGUF, Modelfile, card.


rule export_model:
    input:
        base_model=BASE_MODEL,
        adapter="results/{stage}/adapter",
        metrics="results/{stage}/eval/metrics.json",
        training="results/{stage}/manifests/training.json",
    output:
        export_dir=directory("results/{stage}/export"),
        manifest="results/{stage}/manifests/export.json",
    log:
        "logs/{stage}/export_model.log",
    benchmark:
        "results/benchmarks/{stage}/export_model.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("export_model"),
    params:
        export=config["export"],
        sampling=config["evaluation"]["sampling"],
    script:
        "../workflow_scripts/export_model.py"
