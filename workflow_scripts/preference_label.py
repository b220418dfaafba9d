"""Rule preference_label: RL-CAI soft labels from the constitution's preference questions, both orders."""

from maximalcai.feedback.preference import run_preference_label
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_preference_label(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        shard=int(snakemake.wildcards.shard),
        responses_path=snakemake.input.responses,
        critiques_path=snakemake.input.critiques,
        constitution_path=snakemake.input.constitution,
        demos_path=snakemake.input.demos,
        base_dir=snakemake.input.base,
        adapter_dir=snakemake.input.get("adapter"),
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
