"""Rule eval_safety: safety labels of one model's red-team answers."""

from maximalcai.evaluation.generate import run_eval_safety
from maximalcai.job import run_job

run_job(snakemake, run_eval_safety)
