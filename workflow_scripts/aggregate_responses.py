"""Rule aggregate_responses: join the response shards into responses.parquet."""

from maximalcai.generation import run_aggregate_responses
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_aggregate_responses(
        cfg=snakemake.config,
        stage=snakemake.wildcards.stage,
        shard_paths=snakemake.input.shards,
        shard_manifests=snakemake.input.manifests,
        instructions_path=snakemake.input.instructions,
        per_instruction=snakemake.params.per_instruction,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
