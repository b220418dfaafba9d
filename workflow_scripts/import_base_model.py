"""Rule import_base_model: materialise results/models/base/ from the configured source."""

from maximalcai.job import run_job
from maximalcai.models import import_base_model

run_job(snakemake, import_base_model)
