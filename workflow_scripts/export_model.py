"""Rule export_model: results/{stage}/export/ (merged model, chat template, GGUF, Modelfile, model card)."""

from maximalcai.export import run_export
from maximalcai.runlog import rule_log

with rule_log(snakemake.log[0], snakemake.threads):
    run_export(
        cfg=snakemake.config,
        stage=snakemake.wildcards.stage,
        base_dir=snakemake.input.base,
        adapter_dir=snakemake.input.adapter,
        metrics_path=snakemake.input.metrics,
        training_manifest=snakemake.input.training,
        out_dir=snakemake.output.export,
        manifest=snakemake.output.manifest,
    )
