"""Rule generate_instructions: one shard of Self-Instruct candidates from the stage's generator."""

from maximalcai.generation import run_instruction_shard
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_instruction_shard(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        shard=int(snakemake.wildcards.shard),
        pool_path=snakemake.input.pool,
        model_dir=snakemake.input.base,
        adapter_dir=snakemake.input.get("adapter"),
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
