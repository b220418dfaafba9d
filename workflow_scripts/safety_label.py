"""Rule safety_label: safety labels of one shard's answers and revisions."""

from maximalcai.feedback.guard import run_safety_label
from maximalcai.job import run_job

run_job(snakemake, run_safety_label)
