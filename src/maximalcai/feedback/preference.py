"""AI preference labels (RL-CAI): which of two responses better satisfies a constitutional principle.

Comparisons are (a) sampled candidates of one instruction against each other and (b) each critiqued
response against its final revision. For each comparison, principles are drawn (seeded) and each
principle's ``preference_question`` is asked as a multiple-choice prompt; the label is read from the
next-token log-probabilities of "A" and "B" (a soft label, never parsed text). The question is asked in
both orders and the probabilities averaged to cancel position bias; both are recorded. Soft labels can be
clamped (the CAI paper uses 40-60%) and are averaged over the sampled principles (an ensemble).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import formats, tables
from maximalcai.backends import Backend
from maximalcai.constitution import Constitution, load_constitution, sample_principles
from maximalcai.errors import ResourceError
from maximalcai.feedback.critique import final_revisions
from maximalcai.hardware import Engine
from maximalcai.reproducibility import derive_seed
from maximalcai.resources import read_jsonl
from maximalcai.typed import Section

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preference(Section):
    """A stage's ``preference`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("preference",)

    principles_per_comparison: int
    clamp: tuple[float, float] | None
    fewshot_k: int
    comparisons: tuple[str, ...]


def load_preference_demos(path: str | Path) -> list[dict[str, Any]]:
    demos = read_jsonl(
        path,
        {"instruction": str, "question": str, "response_a": str, "response_b": str, "answer": str},
        "preference demonstrations",
    )
    for demo in demos:
        if demo["answer"] not in formats.PREFERENCE_OPTIONS:
            raise ResourceError(f"preference demonstrations {path}: demo '{demo['id']}' answer must be A or B")
    return demos


def build_comparisons(
    responses: Sequence[dict[str, Any]], critiques: Sequence[dict[str, Any]], kinds: Sequence[str]
) -> list[dict[str, Any]]:
    """The pairs of texts to label, with their ids and texts."""
    comparisons: list[dict[str, Any]] = []
    if "responses" in kinds:
        by_instruction: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(responses, key=lambda r: (r["instruction_id"], r["candidate_index"])):
            by_instruction.setdefault(row["instruction_id"], []).append(row)
        for instruction_id, rows in by_instruction.items():
            for a, b in zip(rows[0::2], rows[1::2]):  # candidates 0-1, 2-3, ...
                comparisons.append(
                    {
                        "comparison_id": f"{a['response_id']}-vs-r{b['candidate_index']}",
                        "kind": "responses",
                        "instruction_id": instruction_id,
                        "instruction": a["instruction"],
                        "a_id": a["response_id"],
                        "a_text": a["response"],
                        "b_id": b["response_id"],
                        "b_text": b["response"],
                    }
                )
    if "revision" in kinds:
        originals = {r["response_id"]: r for r in responses}
        for response_id, last in sorted(final_revisions(critiques).items()):
            original = originals[response_id]
            comparisons.append(
                {
                    "comparison_id": f"{response_id}-vs-revision",
                    "kind": "revision",
                    "instruction_id": original["instruction_id"],
                    "instruction": original["instruction"],
                    "a_id": response_id,
                    "a_text": original["response"],
                    "b_id": last["critique_id"],
                    "b_text": last["revision"],
                }
            )
    return comparisons


def normalise(logp_a: float, logp_b: float) -> float:
    """P(A) from the two options' log-probabilities, renormalised over {A, B}."""
    return 1.0 / (1.0 + math.exp(logp_b - logp_a))


def label_preferences(
    backend: Backend,
    comparisons: Sequence[dict[str, Any]],
    constitution: Constitution,
    demos: Sequence[dict[str, Any]],
    stage: str,
    settings: Preference,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per comparison: per-principle P(a) with a shown first and second, their mean, the soft label."""
    prefix = formats.preference_demos_prefix(
        random.Random(derive_seed(seed, stage, "preference-demos")).sample(
            list(demos), min(settings.fewshot_k, len(demos))
        )
    )
    plans = []
    prompts = []
    for comparison in comparisons:
        rng = random.Random(derive_seed(seed, stage, comparison["comparison_id"]))
        principles = sample_principles(constitution, settings.principles_per_comparison, rng)
        plans.append(principles)
        for principle in principles:
            q, i = principle.preference_question, comparison["instruction"]
            prompts.append((prefix, formats.preference_question(i, q, comparison["a_text"], comparison["b_text"])))
            prompts.append((prefix, formats.preference_question(i, q, comparison["b_text"], comparison["a_text"])))
    scores = iter(backend.continuation_logprobs(prompts, [list(formats.PREFERENCE_OPTIONS)] * len(prompts)))
    clamp = settings.clamp
    rows = []
    for comparison, principles in zip(comparisons, plans):
        first, second = [], []
        for _ in principles:
            a_first = next(scores)  # a shown as (A)
            a_second = next(scores)  # a shown as (B)
            first.append(normalise(*a_first))
            second.append(1.0 - normalise(*a_second))
        p_a = (sum(first) + sum(second)) / (2 * len(principles))
        soft = min(max(p_a, clamp[0]), clamp[1]) if clamp else p_a
        rows.append(
            {
                "comparison_id": comparison["comparison_id"],
                "instruction_id": comparison["instruction_id"],
                "stage": stage,
                "kind": comparison["kind"],
                "a_id": comparison["a_id"],
                "b_id": comparison["b_id"],
                "principle_ids": [p.id for p in principles],
                "p_a_first": [round(p, 6) for p in first],
                "p_a_second": [round(p, 6) for p in second],
                "p_a": round(p_a, 6),
                "soft_label": round(soft, 6),
                "labeller": backend.model_name,
                "seed": derive_seed(seed, stage, comparison["comparison_id"]),
                "constitution_hash": constitution.sha256,
            }
        )
    return rows


def position_bias(rows: Sequence[dict[str, Any]]) -> float:
    """Mean P(first option) minus 0.5 across both orders: how much the labeller favours position A."""
    values = [(f + (1 - s)) / 2 for r in rows for f, s in zip(r["p_a_first"], r["p_a_second"])]
    return round(sum(values) / len(values) - 0.5, 4) if values else 0.0


def labeller_model(labeller: str, base_model: str, adapter: str | None) -> tuple[str, str | None]:
    """The preference labeller (``feedback.labeller``): the fixed base model, or the stage's generator."""
    return (base_model, None) if labeller == "base" else (base_model, adapter)


def run_preference_label(
    engine: Engine,
    settings: Preference,
    labeller: str,
    seed: int,
    stage: str,
    shard: int,
    responses: str,
    critiques: str,
    constitution: str,
    demos: str,
    base_model: str,
    table: str,
    adapter: str | None = None,
) -> dict[str, Any]:
    """Rule preference_label: AI preference labels of one shard's comparisons under the constitution."""
    from maximalcai.backends import open_backend

    principles = load_constitution(constitution)
    examples = load_preference_demos(demos)
    comparisons = build_comparisons(
        tables.read_table(responses, "responses", require_rows=False),
        tables.read_table(critiques, "critiques", require_rows=False),
        settings.comparisons,
    )
    rows = []
    if comparisons:
        backend = open_backend(engine, *labeller_model(labeller, base_model, adapter))
        rows = label_preferences(backend, comparisons, principles, examples, stage, settings, seed)
    else:
        logger.info("preference.comparisons is empty: no model labels (pairs come from the verifiable checks)")
    tables.write_table(rows, table, "preferences")
    bias = position_bias(rows)
    logger.info("%d comparisons labelled; position bias (P(first) - 0.5) %.3f", len(rows), bias)
    return {"rows": len(rows), "position_bias": bias}
