"""Rule train_dpo: one stage of DPO on a LoRA adapter (resumable from results/{stage}/checkpoints)."""

from maximalcai.runlog import rule_log
from maximalcai.training.dpo import run_train_dpo

with rule_log(snakemake.log[0], snakemake.threads):
    run_train_dpo(
        cfg=snakemake.config,
        settings=snakemake.params.settings,
        stage=snakemake.wildcards.stage,
        base_dir=snakemake.input.base,
        pairs_path=snakemake.input.pairs,
        previous_adapter=snakemake.input.get("previous_adapter"),
        sft_path=snakemake.input.get("sft"),
        adapter_dir=snakemake.output.adapter,
        log_table=snakemake.output.log_table,
        checkpoint_dir=snakemake.params.checkpoints,
        runs_dir=snakemake.params.runs,
        manifest=snakemake.output.manifest,
    )
