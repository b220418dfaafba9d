# The base model, imported once: results/models/base/ (dense safetensors + tokenizer + maximalcai_model.json).


rule import_base_model:
    output:
        directory(BASE_MODEL),
    params:
        source=config["base_model"],
    log:
        "logs/import_base_model.log",
    benchmark:
        "results/benchmarks/import_base_model.tsv"
    threads: compute_threads
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/import_base_model.py"
