"""Rule aggregate_instructions: filter and deduplicate the candidate shards into instructions.parquet."""

from maximalcai.generation import run_aggregate_instructions
from maximalcai.job import run_job

run_job(snakemake, run_aggregate_instructions)
