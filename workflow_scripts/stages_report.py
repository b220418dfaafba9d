"""Rule stages_report: every metric across stages, with intervals."""

from maximalcai.job import run_job
from maximalcai.report import run_stages_report

run_job(snakemake, run_stages_report)
