"""Rule critique_revise: critiques and revisions of one response shard under the constitution."""

from maximalcai.feedback.critique import run_critique_revise
from maximalcai.job import run_job

run_job(snakemake, run_critique_revise)
