"""Rule stage_report: a stage's training curves, pair funnel, eval figure and example answers."""

from maximalcai.report import run_stage_report
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_stage_report(
        stage=snakemake.wildcards.stage,
        training_log=snakemake.input.training_log,
        funnel=snakemake.input.funnel,
        metrics=snakemake.input.metrics,
        generations={
            snakemake.wildcards.stage: snakemake.input.generations_stage,
            "base": snakemake.input.generations_base,
            "base_fewshot": snakemake.input.generations_base_fewshot,
        },
        outputs=dict(snakemake.output.items()),
    )
