"""Rule train_dpo: one stage of DPO on a LoRA adapter (resumable from results/{stage}/checkpoints)."""

from maximalcai.job import run_job
from maximalcai.training.dpo import run_train_dpo

run_job(snakemake, run_train_dpo)
