"""Rule build_pairs: filtered chosen/rejected pairs and the funnel that explains them."""

from maximalcai.pairs import run_build_pairs
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_build_pairs(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        responses_path=snakemake.input.responses,
        critiques_path=snakemake.input.critiques,
        safety_path=snakemake.input.safety,
        preferences_path=snakemake.input.preferences,
        instructions_path=snakemake.input.instructions,
        pool_paths=snakemake.input.pools,
        critique_demos_path=snakemake.input.critique_demos,
        table=snakemake.output.table,
        funnel_table=snakemake.output.funnel,
        sft_table=snakemake.output.sft,
        manifest=snakemake.output.manifest,
    )
