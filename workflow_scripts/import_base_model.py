"""Rule import_base_model: materialise results/models/base/ from the configured source."""

from maximalcai.models import import_base_model
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    import_base_model(snakemake.params.source, snakemake.output[0])
