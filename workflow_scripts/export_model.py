"""Rule export_model: results/{stage}/export/ (merged model, chat template, GGUF, Modelfile, model card)."""

from maximalcai.export import run_export
from maximalcai.job import run_job

run_job(snakemake, run_export)
