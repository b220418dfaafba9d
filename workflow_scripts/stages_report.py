"""Rule stages_report: every metric across stages, with intervals."""

from maximalcai.report import run_stages_report
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0]):
    run_stages_report(snakemake.input.metrics, snakemake.output.figure, snakemake.output.table)
