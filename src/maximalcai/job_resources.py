"""What each job asks a scheduler for: memory, run time, CPUs and GPUs, from the config's ``resources`` section.

Jobs are of two kinds. Model jobs load a model; on a GPU config they ask for GPUs: as many as
``generation.vllm.tensor_parallel_size`` where the model is served by vLLM, one for training. Small jobs only
read and write tables and run on the submitting host (``localrules`` in rules/common.smk). With
``resources.runtime_from_plan`` a model job's time limit is the plan's estimate of its own share of the
stage's work (``maximalcai.plan.rule_hours``), times ``runtime_margin``, plus ``load_minutes``, where that is
more than the configured runtime, so that a cluster does not kill a job the plan itself expects to run for
hours. A profile's ``set-resources`` still
override all of this.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from maximalcai.config import stage_config
from maximalcai.generation import shard_count
from maximalcai.hardware import wants_gpu
from maximalcai.typed import Section


@dataclass(frozen=True)
class JobResources:
    """What one job asks a scheduler for (``resources.small_jobs``, ``resources.model_jobs``)."""

    mem_mb: int
    runtime: int
    cpus: int


@dataclass(frozen=True)
class Resources(Section):
    """The config's ``resources`` section, typed (keys and meaning: the config schema, docs/CONFIG.md).
    ``rules``: per rule, the keys of JobResources it overrides."""

    PATH = ("resources",)
    STAGE = False

    small_jobs: JobResources
    model_jobs: JobResources
    rules: dict[str, dict[str, int]]
    runtime_from_plan: bool
    runtime_margin: float
    load_minutes: float


# Rules whose jobs load a model through the generation backend (vLLM on a GPU config).
SERVED_MODEL_RULES = (
    "generate_instructions",
    "generate_responses",
    "generate_contrast",
    "critique_revise",
    "safety_label",
    "preference_label",
    "eval_generate",
    "eval_safety",
    "evaluate",
)
MODEL_RULES = (*SERVED_MODEL_RULES, "import_base_model", "train_dpo", "export_model")
SMALL_RULES = (
    "aggregate_instructions",
    "aggregate_responses",
    "aggregate_feedback",
    "build_pairs",
    "stage_report",
    "stages_report",
    "browse_stage",
)


def gpus(cfg: dict[str, Any], rule: str) -> int:
    """GPUs one job of ``rule`` asks for."""
    if not wants_gpu(cfg):
        return 0
    if rule in SERVED_MODEL_RULES:
        return cfg["generation"]["vllm"]["tensor_parallel_size"] if cfg["generation"]["backend"] == "vllm" else 1
    return 1 if rule == "train_dpo" else 0


def jobs_per_stage(cfg: dict[str, Any], rule: str, stage: str) -> int:
    """How many jobs of ``rule`` a stage runs (generation and feedback run in shards)."""
    return shard_count(stage_config(cfg, stage), rule)


def planned_minutes(cfg: dict[str, Any], rule: str, stage: str) -> float | None:
    """The plan's estimate of one job's work in minutes (no load time); None for rules the plan leaves out."""
    from maximalcai.plan import StagePlan, rule_hours

    hours = rule_hours(StagePlan.of(stage_config(cfg, stage)), cfg).get(rule)
    return None if hours is None else hours * 60 / jobs_per_stage(cfg, rule, stage)


def job_resources(cfg: dict[str, Any], rule: str, stage: str | None = None) -> dict[str, int]:
    """``mem_mb``, ``runtime`` (minutes), ``cpus_per_task`` and ``gpu`` of one job of ``rule``; ``stage`` (the
    job's stage, where it has one) lets the runtime follow the plan."""
    if rule not in MODEL_RULES + SMALL_RULES:
        raise KeyError(f"resources: no such rule '{rule}'")
    resources = Resources.from_section(cfg["resources"])
    kind = resources.model_jobs if rule in MODEL_RULES else resources.small_jobs
    chosen = dataclasses.asdict(kind) | resources.rules.get(rule, {})
    runtime = chosen["runtime"]
    if resources.runtime_from_plan and stage is not None:  # the plan only ever raises the limit
        minutes = planned_minutes(cfg, rule, stage)
        if minutes is not None:
            runtime = max(runtime, math.ceil(minutes * resources.runtime_margin + resources.load_minutes))
    return {"mem_mb": chosen["mem_mb"], "runtime": runtime, "cpus_per_task": chosen["cpus"], "gpu": gpus(cfg, rule)}
