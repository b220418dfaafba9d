"""Rule generate_responses: candidate responses for one shard of a stage's instructions."""

from maximalcai.generation import run_response_shard
from maximalcai.job import run_job

run_job(snakemake, run_response_shard)
