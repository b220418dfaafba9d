# Few-shot generation of a stage's instructions and responses by its generator (base + previous adapter).
# Sharded: each shard is a job with its own output, so an interrupted run redoes only unfinished shards.


rule generate_instructions:
    input:
        unpack(generator_model),
        pool=lambda wc: stage_config(config, wc.stage)["pool"],
    output:
        table="results/{stage}/shards/instructions/{shard}.parquet",
        manifest="results/{stage}/manifests/instructions-shard{shard}.json",
    log:
        "logs/{stage}/generate_instructions/{shard}.log",
    benchmark:
        "results/benchmarks/{stage}/generate_instructions-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("generate_instructions"),
    params:
        engine=ENGINE,
        settings=pick("instructions", "candidates", "shard_size", "fewshot_k", "fewshot_share", "sampling"),
        seed=config["seed"],
    script:
        "../workflow_scripts/generate_instructions.py"


rule aggregate_instructions:
    input:
        shard_tables=shard_files("instructions", "table"),
        shard_manifests=shard_files("instructions", "manifest"),
        pool=lambda wc: stage_config(config, wc.stage)["pool"],
        eval_sets=[config["evaluation"][name] for name in ("helpful", "redteam", "borderline")],
    output:
        table="results/{stage}/instructions.parquet",
        manifest="results/{stage}/manifests/instructions.json",
    log:
        "logs/{stage}/aggregate_instructions.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("aggregate_instructions"),
    params:
        settings=pick("instructions", "count", "filters", "constraints"),
        seed=config["seed"],
    script:
        "../workflow_scripts/aggregate_instructions.py"


rule generate_responses:
    input:
        unpack(generator_model),
        unpack(constraint_pool),
        pool=lambda wc: stage_config(config, wc.stage)["pool"],
        instructions="results/{stage}/instructions.parquet",
    output:
        table="results/{stage}/shards/responses/{shard}.parquet",
        manifest="results/{stage}/manifests/responses-shard{shard}.json",
    log:
        "logs/{stage}/generate_responses/{shard}.log",
    benchmark:
        "results/benchmarks/{stage}/generate_responses-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("generate_responses"),
    params:
        engine=ENGINE,
        settings=settings("responses"),
        seed=config["seed"],
    script:
        "../workflow_scripts/generate_responses.py"


rule aggregate_responses:
    input:
        shard_tables=shard_files("responses", "table"),
        shard_manifests=shard_files("responses", "manifest"),
        instructions="results/{stage}/instructions.parquet",
    output:
        table="results/{stage}/responses.parquet",
        manifest="results/{stage}/manifests/responses.json",
    log:
        "logs/{stage}/aggregate_responses.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("aggregate_responses"),
    params:
        per_instruction=lambda wc: stage_config(config, wc.stage)["responses"]["per_instruction"],
    script:
        "../workflow_scripts/aggregate_responses.py"
