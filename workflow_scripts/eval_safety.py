"""Rule eval_safety: the safety guard's labels for one model's eval answers."""

from maximalcai.evaluation.generate import run_eval_safety
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_eval_safety(
        cfg=snakemake.config,
        generations_path=snakemake.input.generations,
        base_dir=snakemake.input.base,
        table=snakemake.output.table,
        manifest=snakemake.output.manifest,
    )
