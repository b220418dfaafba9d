"""Rule preference_label: AI preference labels of one shard's comparisons."""

from maximalcai.feedback.preference import run_preference_label
from maximalcai.job import run_job

run_job(snakemake, run_preference_label)
