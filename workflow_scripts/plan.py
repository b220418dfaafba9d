"""Rule plan: print and save the estimated GPU hours and dollars per stage."""

from maximalcai.job import run_job
from maximalcai.plan import run_plan

run_job(snakemake, run_plan)
