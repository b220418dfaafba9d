"""Rule safety_label: safe/unsafe/malformed labels for every response and revision of a stage."""

from maximalcai.feedback.guard import run_safety_label
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_safety_label(
        cfg=snakemake.config,
        stage=snakemake.wildcards.stage,
        shard=int(snakemake.wildcards.shard),
        responses_path=snakemake.input.responses,
        critiques_path=snakemake.input.critiques,
        base_dir=snakemake.input.base,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
