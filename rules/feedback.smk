# Constitutional feedback: critiques and revisions, safety labels, AI preference labels, filtered pairs.
# Each step is its own table, so editing one principle reruns critiques and what follows (never the
# instruction or response generation), and editing the pair filters reruns only build_pairs onward.
# The three model steps run in shards, shard k on the answers of response shard k (so a cluster spreads
# them over GPUs and a killed shard reruns alone); aggregate_feedback joins each step's shards.


rule critique_revise:
    input:
        unpack(generator_model),
        responses="results/{stage}/shards/responses/{shard}.parquet",
        constitution=config["constitution"],
        demos=config["feedback"]["critique_demos"],
    output:
        table="results/{stage}/shards/critiques/{shard}.parquet",
        manifest="results/{stage}/manifests/critiques-shard{shard}.json",
    log:
        "logs/{stage}/critique_revise/{shard}.log",
    benchmark:
        "results/benchmarks/{stage}/critique_revise-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("critique_revise"),
    params:
        engine=ENGINE,
        settings=settings("critique"),
        seed=config["seed"],
    script:
        "../workflow_scripts/critique_revise.py"


rule safety_label:
    input:
        base_model=BASE_MODEL,
        responses="results/{stage}/shards/responses/{shard}.parquet",
        critiques="results/{stage}/shards/critiques/{shard}.parquet",
        demos=config["safety"]["demos"],
    output:
        table="results/{stage}/shards/safety/{shard}.parquet",
        manifest="results/{stage}/manifests/safety-shard{shard}.json",
    log:
        "logs/{stage}/safety_label/{shard}.log",
    benchmark:
        "results/benchmarks/{stage}/safety_label-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("safety_label"),
    params:
        engine=ENGINE,
        safety=job_settings("safety", config["safety"]),
        seed=config["seed"],
    script:
        "../workflow_scripts/safety_label.py"


rule preference_label:
    input:
        unpack(generator_model),
        responses="results/{stage}/shards/responses/{shard}.parquet",
        critiques="results/{stage}/shards/critiques/{shard}.parquet",
        constitution=config["constitution"],
        demos=config["feedback"]["preference_demos"],
    output:
        table="results/{stage}/shards/preferences/{shard}.parquet",
        manifest="results/{stage}/manifests/preferences-shard{shard}.json",
    log:
        "logs/{stage}/preference_label/{shard}.log",
    benchmark:
        "results/benchmarks/{stage}/preference_label-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("preference_label"),
    params:
        engine=ENGINE,
        settings=settings("preference"),
        labeller=config["feedback"]["labeller"],
        seed=config["seed"],
    script:
        "../workflow_scripts/preference_label.py"


rule aggregate_feedback:
    input:
        shard_tables=lambda wc: shard_files(wc.feedback, "table")(wc),
        shard_manifests=lambda wc: shard_files(wc.feedback, "manifest")(wc),
    output:
        table="results/{stage}/{feedback}.parquet",
        manifest="results/{stage}/manifests/{feedback}.json",
    log:
        "logs/{stage}/aggregate_{feedback}.log",
    wildcard_constraints:
        feedback="critiques|safety|preferences",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("aggregate_feedback"),
    script:
        "../workflow_scripts/aggregate_feedback.py"


rule build_pairs:
    input:
        unpack(contrast_table),
        responses="results/{stage}/responses.parquet",
        critiques="results/{stage}/critiques.parquet",
        safety="results/{stage}/safety.parquet",
        preferences="results/{stage}/preferences.parquet",
        instructions="results/{stage}/instructions.parquet",
        pools=fewshot_pools,
        critique_demos=config["feedback"]["critique_demos"],
    output:
        table="results/{stage}/pairs.parquet",
        funnel="results/{stage}/pairs_funnel.parquet",
        sft="results/{stage}/sft.parquet",
        manifest="results/{stage}/manifests/pairs.json",
    log:
        "logs/{stage}/build_pairs.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("build_pairs"),
    params:
        settings=settings("pairs"),
        principles=PRINCIPLES,
        seed=config["seed"],
    script:
        "../workflow_scripts/build_pairs.py"
