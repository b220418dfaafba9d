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
        eval_sets=[config["evaluation"][name] for name in SETS],
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
        per_instruction=lambda wc: candidates_per_instruction(
            Responses.from_section(stage_config(config, wc.stage)["responses"])
        ),
    script:
        "../workflow_scripts/aggregate_responses.py"


# Labels by construction (RLCD): the construction principles' requests answered under the framing that
# follows each principle and the one that violates it (docs/CONSTITUTION.md). One job per stage.
rule generate_contrast:
    input:
        unpack(generator_model),
        resources=contrast_files,
        eval_sets=[config["evaluation"][name] for name in SETS],
    output:
        table="results/{stage}/contrast.parquet",
        manifest="results/{stage}/manifests/contrast.json",
    log:
        "logs/{stage}/generate_contrast.log",
    benchmark:
        "results/benchmarks/{stage}/generate_contrast.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("generate_contrast"),
    params:
        engine=ENGINE,
        settings=settings("contrast"),
        principles=contrast_principles,
        seed=config["seed"],
    script:
        "../workflow_scripts/generate_contrast.py"
