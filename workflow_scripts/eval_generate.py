"""Rule eval_generate: one model's answers to the held-out eval prompts."""

from maximalcai.evaluation.generate import run_eval_generate
from maximalcai.job import run_job

run_job(snakemake, run_eval_generate)
