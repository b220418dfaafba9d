"""Rule generate_instructions: one shard of Self-Instruct candidates from the stage's generator."""

from maximalcai.generation import run_instruction_shard
from maximalcai.job import run_job

run_job(snakemake, run_instruction_shard)
