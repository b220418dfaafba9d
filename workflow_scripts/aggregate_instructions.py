"""Rule aggregate_instructions: filter and deduplicate the candidate shards into instructions.parquet."""

from maximalcai.generation import run_aggregate_instructions
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_aggregate_instructions(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        shard_paths=snakemake.input.shards,
        shard_manifests=snakemake.input.manifests,
        pool_path=snakemake.input.pool,
        eval_paths=snakemake.input.eval_sets,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
