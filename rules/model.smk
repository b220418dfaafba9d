# The base model, imported once: results/models/base/ (dense safetensors + tokenizer + maximalcai_model.json).


rule import_base_model:
    output:
        base_model=directory(BASE_MODEL),
    log:
        "logs/import_base_model.log",
    benchmark:
        "results/benchmarks/import_base_model.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("import_base_model"),
    params:
        source=config["base_model"],
    script:
        "../workflow_scripts/import_base_model.py"
