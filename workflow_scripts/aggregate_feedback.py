"""Rule aggregate_feedback: join the shards of one feedback step into critiques, safety or preferences.parquet."""

from maximalcai.feedback.aggregate import run_aggregate_feedback
from maximalcai.job import run_job

run_job(snakemake, run_aggregate_feedback)
