# maximalcai: turn a base language model into an aligned assistant by progressive Constitutional AI.
#
# This file only loads and validates the config, includes the rule files and defines the targets.
# All logic lives in src/maximalcai/ (see docs/ARCHITECTURE.md).
#
#   snakemake --cores 1 stage1_model                       # stage 1: data, pairs, adapter, eval
#   snakemake --cores 1 stage1_export                      # its merged model, GGUF, Modelfile and card
#   snakemake --cores 1 -n stage6_model                    # dry run of all six stages
#   snakemake --cores 1 --forcerun generate_responses -- results/stage1/responses.parquet   # regenerate one dataset

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library in src/ is what this checkout's rules run, also inside --use-conda environments.
# This workflow's own folder (also when it runs as a module of another workflow, whose basedir is elsewhere).
HERE = Path(str(workflow.current_basedir)).resolve()
SRC = str(HERE / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


from maximalcai.config import config_sources, default_configfile, load_config, stage_ids


# The working directory's config.yaml when it has one, else the workflow's own: the workflow runs from any
# folder (snakemake -s PATH/Snakefile, --directory, a module), with results/ there and resources found here.
configfile: default_configfile(HERE)


from maximalcai.plan import check_budget, check_size
from maximalcai.targets import check_forcerun, command_line_request
from maximalcai.allocator import job_environment
from maximalcai.hardware import check_hardware, wants_gpu
from maximalcai.preflight import check_resources

CONFIG_SOURCES = config_sources(workflow.overwrite_configfiles, workflow.config_settings.config)
config.update(load_config(config, sources=CONFIG_SOURCES, root=HERE))
check_resources(config, CONFIG_SOURCES, HERE)
check_size(config, CONFIG_SOURCES)  # before the DAG: a million shards would never finish planning
# Every job inherits this environment: glibc keeps freed memory for reuse (hardware.allocator, maximalcai.allocator).
os.environ.update(job_environment(config["hardware"]["allocator"]))


# With --software-deployment-method apptainer, every job runs in this image (config `container`; docs/RUNPOD.md).
container: config["container"]


wildcard_constraints:
    stage="stage[0-9]+",
    shard="[0-9]+",
    model="base|base_fewshot|stage[0-9]+",


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/generation.smk"
include: "rules/feedback.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"
include: "rules/export.smk"
include: "rules/plan.smk"


report: "report/workflow.rst"


# `--forcerun RULE path` with no target would build every stage: stop and print the intended command.
if (request := command_line_request()) is not None:
    check_forcerun(*request, [rule.name for rule in workflow.rules if rule.output])


# Before the first job (not in dry runs): a GPU run over budget.max_usd is refused (see `snakemake plan`),
# and GPU-only options on a machine without CUDA stop the run. The plan target, a cost estimate, runs
# anywhere. Cluster submission hosts skip the hardware check; each job checks again on its node.
onstart:
    if set(workflow.dag_settings.targets) != {"plan"}:
        if wants_gpu(config):
            check_budget(config)
        if workflow.local_exec:
            check_hardware(config)


rule all:
    default_target: True
    input:
        stage_model(STAGES[-1]),


for _stage in STAGES:

    rule:
        name:
            f"{_stage}_datasets"
        input:
            stage_datasets(_stage),

    rule:
        name:
            f"{_stage}_pairs"
        input:
            stage_pairs(_stage),

    rule:
        name:
            f"{_stage}_model"
        input:
            stage_model(_stage),

    rule:
        name:
            f"{_stage}_browse"
        input:
            f"results/{_stage}/browse.html",

    rule:
        name:
            f"{_stage}_export"
        input:
            f"results/{_stage}/export",
