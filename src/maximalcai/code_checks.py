"""Checks by code: the verifiable principles (a text answers rather than refuses, is not empty, stops, does
not loop, meets its instruction's IFEval constraint) and the data they make with no model.

- ``check_text`` / ``verifiable_winner``: which checks a text meets, and which of two texts they prefer;
- pair sources decided by construction: best-vs-worst of an instruction's candidates, each answer rewritten
  by code to meet its constraint against the answer it revised (``code_revision_pairs``), and an answer to a
  general instruction against a refusal the stage teaches for a harmful request (``refusal_negative_pairs``);
- SFT data made by code: constraint variants (an answer under a newly attached constraint it is rewritten
  to meet).

``pairs`` filters and attributes the pairs; ``distillation`` makes the SFT examples.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maximalcai import formats, verifiable
from maximalcai.constitution import Labellings
from maximalcai.reproducibility import derive_seed
from maximalcai.typed import Section

# Verifiable principles, in priority order: checks by code that can decide a preference without a model.
# ``answers`` (not in the default list: a trade, docs/RECIPE.md): not empty and no refusal phrase opens it
# (verifiable.is_refusal). The instructions these checks judge come from the stage's pool of everyday tasks,
# where a refusal does not do what was asked; harmful requests reach the data through the construction
# principles (``contrast``), whose checks are their own.
CHECKS = ("answers", "not_empty", "stops", "no_loop", "constraint")


# The safety label of a text whose side is known by construction (a contrast pair's answers, a refusal reused as
# an over-refusal negative): checks by code on the request's framing stand in for the guard.
BY_CONSTRUCTION = "by_construction"


@dataclass(frozen=True)
class Verifiable(Section):
    """A stage's ``pairs.verifiable`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("pairs", "verifiable")

    enabled: bool
    checks: tuple[str, ...]
    max_repetition: float
    undecided: str
    code_revisions: bool
    best_worst: bool
    refusal_negatives: float


@dataclass(frozen=True)
class Text:
    """A response or revision with what the checks need: its instruction's constraints and how it ended."""

    text: str
    finish_reason: str
    instruction: str
    instruction_ids: tuple[str, ...] = ()
    constraint_kwargs: tuple[dict, ...] = ()
    task: str = ""  # the instruction without its constraints (the generated task)


def check_text(item: Text, checks: Sequence[str], max_repetition: float) -> dict[str, bool]:
    """Which verifiable principles a text meets ("constraint" only where its instruction has one)."""
    results = {}
    for check in checks:
        if check == "answers":
            results[check] = verifiable.TEXT_CHECKS["answers"](item.text)
        elif check == "not_empty":
            results[check] = bool(item.text.strip())
        elif check == "stops":
            results[check] = item.finish_reason in ("stop", "eos")
        elif check == "no_loop":
            results[check] = verifiable.repeated_ngram_rate(item.text) <= max_repetition
        elif check == "constraint" and item.instruction_ids:
            results[check] = (
                verifiable.score(item.instruction, item.instruction_ids, item.constraint_kwargs, item.text)[
                    "ifeval_strict"
                ]
                == 1.0
            )
    return results


def verifiable_winner(a: dict[str, bool], b: dict[str, bool], checks: Sequence[str]) -> tuple[str, str] | None:
    """("a" or "b", deciding check) when the checks separate two texts: more checks met wins, then the
    higher-priority check; None when they meet the same checks."""
    score_a = (sum(a.values()), [a.get(c, True) for c in checks])
    score_b = (sum(b.values()), [b.get(c, True) for c in checks])
    if score_a == score_b:
        return None
    winner, (mine, other) = ("a", (a, b)) if score_a > score_b else ("b", (b, a))
    deciding = next(c for c in checks if mine.get(c, True) and not other.get(c, True))
    return winner, deciding


def candidates_by_instruction(responses: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each instruction's candidate responses, in candidate order."""
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(responses, key=lambda r: (r["instruction_id"], r["candidate_index"])):
        by_instruction.setdefault(row["instruction_id"], []).append(row)
    return by_instruction


def usable_answers(
    rows: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    checks: Sequence[str],
    max_repetition: float,
) -> list[str]:
    """Ids of the candidates, in order, that the guard labels safe and that meet ``checks``: what code may
    rewrite into a revision or a constraint variant."""
    return [
        r["response_id"]
        for r in rows
        if safety.get(r["response_id"]) == "safe"
        and all(check_text(items[r["response_id"]], checks, max_repetition).values())
    ]


def decided_pair(
    pair_id: str,
    stage: str,
    instruction: str,
    chosen: tuple[str, str],
    rejected: tuple[str, str],
    instruction_id: str,
    kind: str,
    principle_ids: list[str],
    safety: tuple[str, str],
    decided_by: str,
) -> dict[str, Any]:
    """A pairs-table row decided with no labeller (by checks or by construction): ``chosen`` and ``rejected``
    are (text id, text), ``safety`` their two labels; soft label 1, margin 0.5, in the training split."""
    return {
        "pair_id": pair_id,
        "stage": stage,
        "prompt": formats.prompt(instruction),
        "chosen": chosen[1],
        "rejected": rejected[1],
        "instruction_id": instruction_id,
        "chosen_id": chosen[0],
        "rejected_id": rejected[0],
        "comparison_id": pair_id,
        "kind": kind,
        "principle_ids": principle_ids,
        "soft_label": 1.0,
        "margin": 0.5,
        "chosen_safety": safety[0],
        "rejected_safety": safety[1],
        "safety_swapped": False,
        "decided_by": decided_by,
        "split": "train",
        "constitution_hash": "",
    }


def best_worst_pairs(
    responses: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    settings: Verifiable,
    stage: str,
) -> list[dict[str, Any]]:
    """A pair source labelled by construction, with no model: for each instruction, the safe candidate that
    meets the most checks against the candidate that meets the fewest, when the checks separate them
    (ties: the earlier candidate is best, the later worst). With the ``answers`` check a refusal is best only
    when no safe candidate answers (the guard found nothing to refuse in them, so neither does the pair)."""
    checks = settings.checks
    by_instruction = candidates_by_instruction(responses)
    pairs = []
    for instruction_id, rows in by_instruction.items():
        results = {
            r["response_id"]: check_text(items[r["response_id"]], checks, settings.max_repetition) for r in rows
        }
        score = {rid: (sum(res.values()), [res.get(c, True) for c in checks]) for rid, res in results.items()}
        safe = [r["response_id"] for r in rows if safety.get(r["response_id"]) == "safe"]
        if not safe:
            continue
        answering = [rid for rid in safe if results[rid].get("answers", True)]
        # max/min keep the first of equals: the earlier candidate is best, the later worst
        best = max(answering or safe, key=lambda rid: score[rid])
        worst = min(
            reversed([r["response_id"] for r in rows if r["response_id"] != best]),
            key=lambda rid: score[rid],
            default=None,
        )
        outcome = verifiable_winner(results[best], results[worst], checks) if worst else None
        if outcome is None or outcome[0] != "a":
            continue
        pairs.append(
            decided_pair(
                f"{instruction_id}-best-vs-worst",
                stage,
                items[best].instruction,
                (best, items[best].text),
                (worst, items[worst].text),
                instruction_id,
                "best_worst",
                [f"verifiable:{c}" for c in checks],
                (safety.get(best, "missing"), safety.get(worst, "missing")),
                f"verifiable:{outcome[1]}",
            )
        )
    return pairs


def code_revisions(
    responses: Sequence[dict[str, Any]], items: dict[str, Text], safety: dict[str, str], settings: Verifiable
) -> dict[str, tuple[str, Text]]:
    """Revisions by code: for each instruction with a constraint that no candidate meets, its first safe
    candidate that otherwise passes the checks, rewritten by ``verifiable.revise`` to meet the constraint
    (case, quotes, a title, bullets from its own sentences, ...). Returns revision id -> (original id, Text)."""
    checks = [c for c in settings.checks if c != "constraint"]
    by_instruction = candidates_by_instruction(responses)
    revisions = {}
    for rows in by_instruction.values():
        first = items[rows[0]["response_id"]]
        if not first.instruction_ids:
            continue
        usable = usable_answers(rows, items, safety, checks, settings.max_repetition)
        if not usable or any(check_text(items[rid], ["constraint"], 0.0)["constraint"] for rid in usable):
            continue
        original = items[usable[0]]
        other = next((items[rid].text for rid in usable[1:]), None)
        revised = verifiable.revise(
            original.text, original.instruction_ids, original.constraint_kwargs, original.instruction, other
        )
        if revised is not None:
            revisions[f"{usable[0]}-code"] = (
                usable[0],
                Text(
                    revised,
                    original.finish_reason,
                    original.instruction,
                    original.instruction_ids,
                    original.constraint_kwargs,
                ),
            )
    return revisions


def code_revision_pairs(
    revisions: dict[str, tuple[str, Text]],
    items: dict[str, Text],
    safety: dict[str, str],
    instruction_of: dict[str, str],
    stage: str,
) -> list[dict[str, Any]]:
    """Each revision by code against the answer it revised: the constraint is the only difference."""
    pairs = []
    for revision_id, (original_id, revised) in sorted(revisions.items()):
        pairs.append(
            decided_pair(
                revision_id,
                stage,
                revised.instruction,
                (revision_id, revised.text),
                (original_id, items[original_id].text),
                instruction_of[original_id],
                "code_revision",
                ["verifiable:constraint"],
                (safety.get(original_id, "missing"), safety.get(original_id, "missing")),
                "verifiable:constraint",
            )
        )
    return pairs


def refusal_negative_pairs(
    responses: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    settings: Verifiable,
    refusals: Sequence[tuple[str, str]],
    seed: int,
    stage: str,
) -> list[dict[str, Any]]:
    """Over-refusal negatives, labelled by construction: the refusals the stage teaches for harmful requests
    (``refusals``: (text id, text), the chosen side of its refusing contrast pairs), a
    ``settings.refusal_negatives`` share of them (seeded) each once the rejected answer to a general instruction,
    against that instruction's first safe candidate that meets every check (``answers`` among them); one
    refusal per instruction, instructions in a seeded order. The same words are right for the harmful request
    and wrong for the everyday task, so DPO may learn when to refuse rather than to refuse (measured at 1.0 and
    0.3 on stage 1 of the CPU recipe: helpful prompts refused fell to about the base model's level, and red-team
    refusals with them, as far at either share; docs/RECIPE.md). Decided by the ``answers`` check, so its
    principle is the one naming it."""
    checks = list(dict.fromkeys(["answers", *settings.checks]))
    wanted = math.floor(settings.refusal_negatives * len(refusals) + 1e-9)
    shuffled = sorted(refusals, key=lambda r: derive_seed(seed, stage, "refusal_negatives", r[0]))
    kept = {refusal_id for refusal_id, _ in shuffled[:wanted]}
    refusals = [r for r in refusals if r[0] in kept]  # a seeded share, in the contrast pairs' order
    by_instruction = candidates_by_instruction(responses)
    order = sorted(by_instruction, key=lambda iid: derive_seed(seed, stage, "refusal_negatives", iid))
    pairs: list[dict[str, Any]] = []
    for instruction_id in order:
        if len(pairs) == wanted:
            break
        usable = usable_answers(by_instruction[instruction_id], items, safety, checks, settings.max_repetition)
        if not usable:
            continue
        best = usable[0]
        refusal_id, refusal = refusals[len(pairs)]
        pairs.append(
            decided_pair(
                f"{instruction_id}-refusal-negative",
                stage,
                items[best].instruction,
                (best, items[best].text),
                (refusal_id, refusal),
                instruction_id,
                "refusal_negative",
                ["verifiable:answers"],
                (safety.get(best, "missing"), BY_CONSTRUCTION),
                "verifiable:answers",
            )
        )
    return pairs


def constraint_variants(
    responses: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    settings: Verifiable,
    count: int,
    seed: int,
) -> dict[str, tuple[str, Text]]:
    """Verifiable SFT data made by code (as Tülu 3 builds its instruction-following data, without a model):
    for each instruction without a constraint, its first safe candidate that stops, does not loop and is not
    empty (and, with the ``answers`` check, does not refuse), under up to ``count`` new prompts - the
    instruction with one constraint that code can meet attached (``verifiable.REVISERS``, distinct types in a
    seeded order) - rewritten by ``verifiable.revise`` and accepted
    only when IFEval's checker passes it. Answers to constrained instructions are not used: they often echo or
    half-follow their own constraint, which would contradict the new one. Returns variant id -> (original id,
    Text under the new prompt)."""
    checks = ["not_empty", "stops", "no_loop", *(["answers"] if "answers" in settings.checks else [])]
    revisable = [t for t in verifiable.training_types() if t in verifiable.REVISERS]
    by_instruction = candidates_by_instruction(responses)
    variants = {}
    for instruction_id, rows in by_instruction.items():
        usable = usable_answers(rows, items, safety, checks, settings.max_repetition)
        if not usable or count == 0 or items[usable[0]].instruction_ids:
            continue
        original = items[usable[0]]
        other = next((items[rid].text for rid in usable[1:]), None)
        rng = random.Random(derive_seed(seed, "constraint_variants", instruction_id))
        made = 0
        for constraint in rng.sample(revisable, len(revisable)):
            if made == count:
                break
            attached = verifiable.attach(original.task, constraint, rng)
            revised = verifiable.revise(
                original.text, attached["instruction_id_list"], attached["kwargs"], attached["prompt"], other
            )
            if revised is not None:
                variants[f"{usable[0]}-variant{made}"] = (
                    usable[0],
                    Text(
                        revised,
                        original.finish_reason,
                        attached["prompt"],
                        tuple(attached["instruction_id_list"]),
                        tuple(attached["kwargs"]),
                        original.task,
                    ),
                )
                made += 1
    return variants


def text_items(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    instructions: Sequence[dict[str, Any]] = (),
) -> dict[str, Text]:
    """Every response and revision as a Text, with its instruction's constraints (from the instructions table)."""
    constraints = {
        r["instruction_id"]: (
            tuple(r["instruction_id_list"]),
            tuple(json.loads(r["constraint_kwargs"])),
            r.get("task") or r["instruction"],
        )
        for r in instructions
    }
    prompts = {r["instruction_id"]: r["instruction"] for r in responses}

    def item(text: str, finish: str, instruction_id: str) -> Text:
        return Text(
            text, finish, prompts[instruction_id], *constraints.get(instruction_id, ((), (), prompts[instruction_id]))
        )

    items = {r["response_id"]: item(r["response"], r["finish_reason"], r["instruction_id"]) for r in responses}
    items |= {
        c["critique_id"]: item(c["revision"], c["revision_finish_reason"], c["instruction_id"]) for c in critiques
    }
    return items


def principle_of_check(check: str, principles: Labellings) -> str:
    """The constitution principle a check by code carries (constitution.yaml's ``check:``), else
    ``verifiable:<check>``."""
    return principles.checked().get(check, f"verifiable:{check}")


@dataclass
class CandidateTexts:
    """Every text a pair or an SFT example can be made of: responses, final revisions and revisions by code
    (``items``), their safety labels (a revision by code keeps its original's), and which answer each
    revision by code revised."""

    items: dict[str, Text]
    labels: dict[str, str]
    revisions: dict[str, tuple[str, Text]]


def candidate_texts(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    safety: Sequence[dict[str, Any]],
    instructions: Sequence[dict[str, Any]],
    rules: Verifiable,
) -> CandidateTexts:
    items = text_items(responses, critiques, instructions)
    labels = {row["text_id"]: row["label"] for row in safety}
    revisions = code_revisions(responses, items, labels, rules) if rules.enabled and rules.code_revisions else {}
    items |= {rid: text for rid, (_, text) in revisions.items()}
    labels |= {rid: labels.get(original, "missing") for rid, (original, _) in revisions.items()}
    return CandidateTexts(items, labels, revisions)
