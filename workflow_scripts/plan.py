"""Rule plan: print and save the estimated GPU hours and dollars per stage."""

from maximalcai.plan import run_plan
from maximalcai.runlog import rule_log

run_plan(snakemake.config, snakemake.output.markdown, snakemake.output.json)
with rule_log(snakemake.log[0]) as log:
    log.info("plan written to %s", snakemake.output.markdown)
