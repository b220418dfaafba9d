# Evaluation on held-out prompts. Each model (the base zero-shot, the base with few-shot examples in its
# prompt, base + stage K's adapter) answers the eval sets once (results/eval/{model}/); each stage's
# evaluation compares it with the base, the in-context baseline and the previous stage.


rule eval_generate:
    input:
        unpack(eval_model),
        helpful=config["evaluation"]["helpful"],
        redteam=config["evaluation"]["redteam"],
        borderline=config["evaluation"]["borderline"],
        honesty=config["evaluation"]["honesty"],
    output:
        table="results/eval/{model}/generations.parquet",
        manifest="results/eval/{model}/manifests/generations.json",
    log:
        "logs/eval/{model}/eval_generate.log",
    benchmark:
        "results/benchmarks/eval/{model}-eval_generate.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("eval_generate"),
    params:
        engine=ENGINE,
        sampling=config["evaluation"]["sampling"],
        max_prompts=config["evaluation"]["max_prompts"],
        fewshot=eval_fewshot,
        seed=config["seed"],
    script:
        "../workflow_scripts/eval_generate.py"


rule eval_safety:
    input:
        base_model=BASE_MODEL,
        generations="results/eval/{model}/generations.parquet",
        demos=config["safety"]["demos"],
    output:
        table="results/eval/{model}/safety.parquet",
        manifest="results/eval/{model}/manifests/safety.json",
    log:
        "logs/eval/{model}/eval_safety.log",
    benchmark:
        "results/benchmarks/eval/{model}-eval_safety.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("eval_safety"),
    params:
        engine=ENGINE,
        safety=job_settings("safety", config["safety"]),
        seed=config["seed"],
    script:
        "../workflow_scripts/eval_safety.py"


rule evaluate:
    input:
        unpack(evaluation_inputs),
        base_model=BASE_MODEL,
        pairs="results/{stage}/pairs.parquet",
        helpful=config["evaluation"]["helpful"],
        redteam=config["evaluation"]["redteam"],
        borderline=config["evaluation"]["borderline"],
        honesty=config["evaluation"]["honesty"],
        constitution=config["constitution"],
        demos=config["feedback"]["preference_demos"],
    output:
        metrics="results/{stage}/eval/metrics.json",
        table="results/{stage}/eval/per_prompt.parquet",
        manifest="results/{stage}/manifests/evaluation.json",
    log:
        "logs/{stage}/evaluate.log",
    benchmark:
        "results/benchmarks/{stage}/evaluate.tsv"
    conda:
        CONDA_ENV
    threads: compute_threads
    resources:
        **rule_resources("evaluate"),
    params:
        engine=ENGINE,
        evaluation=job_settings("evaluation", config["evaluation"]),
        labeller=config["feedback"]["labeller"],
        previous=lambda wc: previous_stage(wc.stage),
        seed=config["seed"],
    script:
        "../workflow_scripts/evaluate.py"
