"""Rule aggregate_feedback: join the shards of one feedback step into critiques, safety or preferences.parquet."""

from maximalcai.feedback.aggregate import run_aggregate_feedback
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_aggregate_feedback(
        cfg=snakemake.config,
        stage=snakemake.wildcards.stage,
        name=snakemake.wildcards.feedback,
        shard_paths=snakemake.input.shards,
        shard_manifests=snakemake.input.manifests,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
