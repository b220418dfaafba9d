"""Rule evaluate: a stage against the base, the in-context baseline and the previous stage, with intervals."""

from maximalcai.evaluation.evaluate import run_evaluate
from maximalcai.job import run_job

run_job(snakemake, run_evaluate)
