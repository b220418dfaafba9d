"""Rule evaluate: a stage against the base and the previous stage, with intervals and verdicts."""

from maximalcai.evaluation.evaluate import run_evaluate
from maximalcai.runlog import rule_log

models = [m for m in ("base", "base_fewshot", snakemake.wildcards.stage, snakemake.params.previous) if m]
with rule_log(snakemake.log[0], snakemake.threads):
    run_evaluate(
        cfg=snakemake.config,
        stage=snakemake.wildcards.stage,
        previous=snakemake.params.previous,
        base_dir=snakemake.input.base,
        adapters={m: snakemake.input[f"adapter_{m}"] for m in models if f"adapter_{m}" in snakemake.input.keys()},
        generations_paths={m: snakemake.input[f"generations_{m}"] for m in models},
        safety_paths={m: snakemake.input[f"safety_{m}"] for m in models},
        pairs_path=snakemake.input.pairs,
        constitution_path=snakemake.input.constitution,
        demos_path=snakemake.input.demos,
        metrics_path=snakemake.output.metrics,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
