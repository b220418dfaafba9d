"""Rule aggregate_responses: join the response shards into responses.parquet."""

from maximalcai.generation import run_aggregate_responses
from maximalcai.job import run_job

run_job(snakemake, run_aggregate_responses)
