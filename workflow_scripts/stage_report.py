"""Rule stage_report: a stage's training curves, pair funnel, eval figure and example answers."""

from maximalcai.job import run_job
from maximalcai.report import run_stage_report

run_job(snakemake, run_stage_report)
