# maximalcai: turn a base language model into an aligned assistant by progressive Constitutional AI.
#
# This file only loads and validates the config, includes the rule files and defines the targets.
# All logic lives in src/maximalcai/ (see docs/ARCHITECTURE.md).
#
#   snakemake --cores 1 stage1_model                       # stage 1: data, pairs, adapter, eval
#   snakemake --cores 1 -n stage6_model                    # dry run of all six stages
#   snakemake --cores 1 --forcerun generate_responses results/stage1/responses.parquet

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library in src/ is what this checkout's rules run, also inside --use-conda environments.
SRC = str(Path(workflow.basedir, "src"))
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


configfile: "config.yaml"


from maximalcai.config import load_config, stage_ids
from maximalcai.training import check_hardware

config.update(
    load_config(
        config,
        sources=", ".join(map(str, workflow.overwrite_configfiles)) or "config.yaml",
        root=workflow.basedir,
    )
)
# GPU-only options on a machine without CUDA stop the run here, before any job. Dry runs and cluster
# submission hosts skip it: the jobs themselves run on the GPU nodes, where the check runs again.
if workflow.local_exec and not workflow.dryrun:
    check_hardware(config)


wildcard_constraints:
    stage="stage[0-9]+",
    shard="[0-9]+",
    model="base|stage[0-9]+",


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/generation.smk"
include: "rules/feedback.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


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
