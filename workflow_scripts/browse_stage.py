"""Rule browse_stage: the stage's data in one self-contained HTML page to search and filter."""

from maximalcai.browse import run_browse
from maximalcai.job import run_job

run_job(snakemake, run_browse)
