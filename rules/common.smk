# Helpers shared by all rules (stage lookups, the generator of a stage, thread counts, inputs).
from pathlib import Path

from maximalcai.config import previous_stage, stage_config, stage_ids
from maximalcai.constitution import Labellings, load_constitution
from maximalcai.evaluation.sets import SETS, Evaluation, compared_models
from maximalcai.feedback.guard import Safety
from maximalcai.generation import Responses, candidates_per_instruction, shard_count
from maximalcai.hardware import wants_gpu
from maximalcai.job_resources import job_resources

STAGES = stage_ids(config)
BASE_MODEL = "results/models/base"
GPU = wants_gpu(config)
# For --use-conda: the dependency set of this config's hardware (the library itself comes from src/).
CONDA_ENV = "../envs/maximalcai-gpu.yaml" if GPU else "../envs/maximalcai-cpu.yaml"
# How a model job runs (maximalcai.hardware.Engine, typed where the job starts). Device, dtype, backend and
# batch sizes change the numbers a model job produces, so each model job has them in its params.
ENGINE = {"hardware": config["hardware"], "generation": config["generation"]}
REPORT_FILES = ("training.svg", "funnel.svg", "eval.svg", "examples.html")
# How each principle is labelled (constitution.yaml; maximalcai.constitution.Labellings, typed where the job
# starts): build_pairs names the principle of every pair from it, and generate_contrast reads the construction
# principles. In params as plain data, so only a change of mechanism reruns them.
LABELLINGS = Labellings.of(load_constitution(config["constitution"], HERE))
PRINCIPLES = LABELLINGS.as_dict()


# Keys that are not job settings: each typed section's INPUTS (maximalcai.typed.Section). File paths go in
# as inputs, never as params: an absolute path in params would rerun a job whenever the checkout moves, though
# nothing changed. evaluation.report_stages only picks the inputs of stages_report.
NOT_SETTINGS = {cls.PATH[-1]: cls.INPUTS for cls in (Evaluation, Safety, Responses)}


def job_settings(name, values):
    """A config section without its file paths (they are the rule's inputs) and other non-settings."""
    return {k: v for k, v in values.items() if k not in NOT_SETTINGS.get(name, ())}


def settings(section):
    """Input function: the resolved settings of one section of the wildcard's stage (file paths left out)."""
    return lambda wildcards: job_settings(section, stage_config(config, wildcards.stage)[section])


def pick(section, *keys):
    """Input function: only the named keys of a stage section, so params hold exactly what a rule uses."""
    return lambda wildcards: {k: stage_config(config, wildcards.stage)[section][k] for k in keys}


def generator_model(wildcards):
    """Input function: the model that writes a stage's data, the base model plus the previous stage's adapter."""
    inputs = {"base_model": BASE_MODEL}
    previous = previous_stage(wildcards.stage)
    if previous:
        inputs["adapter"] = f"results/{previous}/adapter"
    return inputs


def constraint_pool(wildcards):
    """The examples that verifiable instructions are prompted with, when the stage names a pool for them."""
    path = stage_config(config, wildcards.stage)["responses"]["constraint_pool"]
    return {"constraint_pool": path} if path else {}


def construction(stage):
    """The construction principles a stage's contrast data uses (none when contrast is off), id -> construction."""
    contrast = stage["contrast"]
    return LABELLINGS.constructions(contrast["principles"]) if contrast["enabled"] else {}


def contrast_principles(wildcards):
    """Params of generate_contrast: the stage's construction principles, as plain data."""
    return {pid: PRINCIPLES[pid] for pid in construction(stage_config(config, wildcards.stage))}


def contrast_files(wildcards):
    """The requests and framing pools of a stage's construction principles (inputs: an edit reruns the data)."""
    specs = construction(stage_config(config, wildcards.stage)).values()
    keys = ("requests", "follow", "violate", "written")
    return sorted({getattr(spec, k) for spec in specs for k in keys if getattr(spec, k)})


def contrast_table(wildcards):
    """build_pairs' contrast input, when the stage makes contrast data."""
    stage = stage_config(config, wildcards.stage)
    return {"contrast": f"results/{wildcards.stage}/contrast.parquet"} if construction(stage) else {}


def fewshot_pools(wildcards):
    """Every pool a stage's generator saw examples from (the copy filters compare chosen texts with them)."""
    stage = stage_config(config, wildcards.stage)
    pools = [stage["pool"]] + (
        [stage["responses"]["constraint_pool"]] if stage["responses"]["constraint_pool"] else []
    )
    specs = construction(stage).values()
    return pools + sorted({getattr(spec, k) for spec in specs for k in ("follow", "violate") if getattr(spec, k)})


def rule_resources(rule_name):
    """A rule's memory, time limit, CPUs and GPUs from the config's `resources` section (maximalcai.job_resources).
    The time limit is per job: with resources.runtime_from_plan it follows the plan's estimate for the stage."""

    def runtime(wildcards):
        model = wildcards.get("model", "")
        stage = wildcards.get("stage") or (model if model.startswith("stage") else STAGES[0])
        return job_resources(config, rule_name, stage)["runtime"]

    return {**job_resources(config, rule_name), "runtime": runtime}


def compute_threads(wildcards):
    """Model jobs ask for every core of --cores, so they run one at a time; inside, torch uses
    hardware.threads (auto: every core of the machine, also under --cores 1)."""
    return max(1, workflow.cores)


def shard_files(table, kind):
    """Input function: the shard tables (kind 'table') or shard manifests (kind 'manifest') of a stage."""
    pattern = {
        "table": "results/{stage}/shards/{table}/{i}.parquet",
        "manifest": "results/{stage}/manifests/{table}-shard{i}.json",
    }[kind]

    def files(wildcards):
        n = shard_count(stage_config(config, wildcards.stage), table)
        return [pattern.format(stage=wildcards.stage, table=table, i=i) for i in range(n)]

    return files


def training_inputs(wildcards):
    """The previous stage's adapter (continued by this stage) and, for the SFT warm-up, its examples."""
    inputs = {}
    previous = previous_stage(wildcards.stage)
    if previous:
        inputs["previous_adapter"] = f"results/{previous}/adapter"
    if stage_config(config, wildcards.stage)["training"]["sft_warmup"]["enabled"]:
        inputs["sft"] = f"results/{wildcards.stage}/sft.parquet"
    return inputs


def eval_model(wildcards):
    """What an eval run loads: the base, plus the stage's adapter for a stage model, or the pool of the
    in-context baseline (base_fewshot)."""
    inputs = {"base_model": BASE_MODEL}
    if wildcards.model == "base_fewshot":
        inputs["pool"] = config["evaluation"]["fewshot_pool"]
    elif wildcards.model != "base":
        inputs["adapter"] = f"results/{wildcards.model}/adapter"
    return inputs


def eval_fewshot(wildcards):
    """Params: the in-context baseline's settings (nothing for the other models, so they don't rerun)."""
    evaluation = config["evaluation"]
    if wildcards.model != "base_fewshot":
        return None
    return {k: evaluation[k] for k in ("fewshot_k", "fewshot_share")}


def evaluation_inputs(wildcards):
    """A stage's evaluation: the generations and safety labels of each model it compares (the stage, the base,
    the in-context baseline, the previous stage; in the order of compared_models) and the stage adapters."""
    models = compared_models(wildcards.stage, previous_stage(wildcards.stage))
    return {
        "generations": [f"results/eval/{m}/generations.parquet" for m in models],
        "safety": [f"results/eval/{m}/safety.parquet" for m in models],
        "adapters": [f"results/{m}/adapter" for m in models if m.startswith("stage")],
    }


def stage_model(stage):
    """What `stageK_model` yields: the adapter, its evaluation, the report figures and the data browser."""
    return [
        f"results/{stage}/adapter",
        f"results/{stage}/eval/metrics.json",
        *[f"results/{stage}/report/{name}" for name in REPORT_FILES],
        f"results/{stage}/browse.html",
    ]


def stage_datasets(stage):
    return [f"results/{stage}/instructions.parquet", f"results/{stage}/responses.parquet"]


def stage_pairs(stage):
    return [f"results/{stage}/pairs.parquet", f"results/{stage}/pairs_funnel.parquet"]
