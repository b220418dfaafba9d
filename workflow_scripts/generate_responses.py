"""Rule generate_responses: candidate responses for one shard of a stage's instructions."""

from maximalcai.generation import run_response_shard
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_response_shard(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        shard=int(snakemake.wildcards.shard),
        pool_path=snakemake.input.pool,
        instructions_path=snakemake.input.instructions,
        model_dir=snakemake.input.base,
        adapter_dir=snakemake.input.get("adapter"),
        constraint_pool_path=snakemake.input.get("constraint_pool"),
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
