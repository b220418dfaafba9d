"""What is evaluated: the held-out prompts (resources/eval/: helpful with IFEval constraints, red-team,
borderline) and the models a stage is compared with.

They never enter a few-shot pool or demonstration file (tests/test_resources.py), and generated training
instructions close to any of them are dropped (``generation.filter_instructions``). Each set is cut to
``evaluation.max_prompts`` in file order (null: the whole set), so the same prompts are used for every
model and stage; the files are ordered so that any first N prompts spread over constraint types, hazard
categories and borderline kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maximalcai.backends.base import Sampling
from maximalcai.errors import ResourceError
from maximalcai.resources import read_jsonl
from maximalcai.typed import Section

SETS = ("helpful", "redteam", "borderline", "honesty")
# The sets the form metrics (stop, loops, distinct-2, length) and the judge read: honesty has its own metric.
FORM_SETS = ("helpful", "redteam", "borderline")
# ``base``: the base model zero-shot; ``base_fewshot``: the same model aligned in context (URIAL-style).
BASE, BASE_FEWSHOT = "base", "base_fewshot"


def compared_models(stage: str, previous: str | None) -> list[str]:
    """The models a stage's evaluation reads, in the order of its inputs: the stage, then its baselines."""
    return [stage, BASE, BASE_FEWSHOT] + ([previous] if previous else [])


@dataclass(frozen=True)
class Evaluation(Section):
    """The config's ``evaluation`` section, typed (keys and meaning: the config schema, docs/CONFIG.md). The
    set files and the few-shot pool are the rules' inputs; ``report_stages`` picks the report's."""

    PATH = ("evaluation",)
    STAGE = False
    INPUTS = (*SETS, "fewshot_pool", "report_stages")

    max_prompts: dict[str, int | None]
    sampling: Sampling
    fewshot_k: int
    fewshot_share: int
    judge_principles: int
    scored_prompts: int | None
    min_items: int
    confidence: float


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    set: str
    prompt: str
    instruction_id_list: list[str] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    kind: str = ""  # the row's kind, where its set has kinds (honesty: false_premise, ..., true_premise, true_claim)


def eval_set_paths(evaluation: dict[str, Any]) -> dict[str, str]:
    """The eval set files named in a config's ``evaluation`` section, by set."""
    return {name: evaluation[name] for name in SETS}


def load_eval_prompts(paths: dict[str, str], max_prompts: dict[str, int | None]) -> list[EvalPrompt]:
    """The held-out prompts of each set in SETS (``paths``: set -> JSONL file), the first ``max_prompts[set]``
    of each (None: all)."""
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    prompts: list[EvalPrompt] = []
    for name in SETS:
        path = paths[name]
        rows = read_jsonl(path, {"prompt": str}, f"{name} eval set")[: max_prompts[name]]
        for row in rows:
            ids, kwargs = row.get("instruction_id_list", []), row.get("kwargs", [])
            if name == "helpful":
                unknown = [i for i in ids if i not in INSTRUCTION_DICT]
                if not ids or unknown or len(kwargs) != len(ids):
                    raise ResourceError(
                        f"helpful eval set {path}: prompt '{row['id']}' needs instruction_id_list of IFEval "
                        f"instruction ids with one kwargs entry each (unknown: {unknown})"
                    )
            prompts.append(EvalPrompt(row["id"], name, row["prompt"], list(ids), list(kwargs), row.get("kind", "")))
    return prompts
