"""Rule eval_generate: one model's zero-shot answers to the held-out eval prompts."""

from maximalcai.evaluation.generate import run_eval_generate
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_eval_generate(
        cfg=snakemake.config,
        model=snakemake.wildcards.model,
        base_dir=snakemake.input.base,
        adapter_dir=snakemake.input.get("adapter"),
        pool_path=snakemake.input.get("pool"),
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
