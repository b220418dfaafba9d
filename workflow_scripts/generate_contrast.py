"""Rule generate_contrast: a stage's requests answered under each construction principle's two framings."""

from maximalcai.contrast import run_generate_contrast
from maximalcai.job import run_job

run_job(snakemake, run_generate_contrast)
