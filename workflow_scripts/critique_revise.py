"""Rule critique_revise: SL-CAI critiques and revisions of a stage's responses by its generator."""

from maximalcai.feedback.critique import run_critique_revise
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_critique_revise(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        shard=int(snakemake.wildcards.shard),
        responses_path=snakemake.input.responses,
        constitution_path=snakemake.input.constitution,
        demos_path=snakemake.input.demos,
        model_dir=snakemake.input.base,
        adapter_dir=snakemake.input.get("adapter"),
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
