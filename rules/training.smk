# DPO on a LoRA adapter. Stage N+1 continues stage N's adapter (its frozen copy is the DPO reference).
# Checkpoints live in results/{stage}/checkpoints/, deliberately not a declared output: Snakemake deletes
# the outputs of a killed job, and a rerun must find the checkpoints to resume from.


rule train_dpo:
    input:
        unpack(training_inputs),
        base_model=BASE_MODEL,
        pairs="results/{stage}/pairs.parquet",
    output:
        adapter=directory("results/{stage}/adapter"),
        log_table="results/{stage}/training_log.parquet",
        manifest="results/{stage}/manifests/training.json",
    log:
        "logs/{stage}/train_dpo.log",
    benchmark:
        "results/benchmarks/{stage}/train_dpo.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("train_dpo"),
    params:
        settings=settings("training"),
        hardware=config["hardware"],
        trainer=config["trainer"],
        seed=config["seed"],
        deterministic=config["deterministic"],
        checkpoints="results/{stage}/checkpoints",
        runs="results/{stage}/runs",
    script:
        "../workflow_scripts/train_dpo.py"
