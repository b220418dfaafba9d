"""SL-CAI / context distillation data: the better answers of a stage, under the *zero-shot* prompt, for
the SFT warm-up (results/<stage>/sft.parquet). Candidates are the few-shot-prompted responses, critique
revisions, revisions and constraint variants made by code, and the construction principles' chosen answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maximalcai import formats
from maximalcai.code_checks import (
    CandidateTexts,
    Text,
    Verifiable,
    check_text,
    constraint_variants,
    principle_of_check,
)
from maximalcai.constitution import Labellings
from maximalcai.similarity import NearDuplicateIndex, copy_index
from maximalcai.typed import Section

if TYPE_CHECKING:
    from maximalcai.pairs import Pairs


@dataclass(frozen=True)
class Sft(Section):
    """A stage's ``pairs.sft`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("pairs", "sft")

    sources: tuple[str, ...]
    per_instruction: int
    variants_per_instruction: int


def contrast_examples(
    contrast: Sequence[dict[str, Any]],
    principles: Labellings,
    max_repetition: float,
    heldout: set[str],
    copies: NearDuplicateIndex,
) -> tuple[list[dict[str, Any]], int, int]:
    """SFT examples of the construction principles: each request's chosen answer, unless its pair is held out or
    it copies a framing example. Returns (rows, held out, copied)."""
    from maximalcai.contrast import contrast_pairs

    rows, held, copied = [], 0, 0
    for row in contrast_pairs(contrast, principles, max_repetition, "")[1]:
        if row["request_id"] in heldout:
            held += 1
        elif copies.closest(row["response"]):
            copied += 1
        else:
            rows.append(
                {
                    "example_id": row["contrast_id"],
                    "instruction_id": row["request_id"],
                    "source": "contrast",
                    "prompt": formats.prompt(row["request"]),
                    "completion": row["response"],
                    "principle_id": row["principle_id"],
                    "mechanism": "construction",
                }
            )
    return rows, held, copied


def sft_candidates(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    texts: CandidateTexts,
    rules: Verifiable,
    sft: Sft,
    seed: int,
) -> tuple[list[tuple[str, str, str]], dict[str, Text], dict[str, str]]:
    """(text id, instruction id, source) of every SFT candidate from ``sft.sources``, and the texts and
    guard labels by id (with the constraint variants' added)."""
    from maximalcai.feedback.critique import final_revisions

    items, labels = dict(texts.items), dict(texts.labels)
    candidates = []
    if "responses" in sft.sources:
        candidates += [
            (r["response_id"], r["instruction_id"], "response")
            for r in sorted(responses, key=lambda r: (r["instruction_id"], r["candidate_index"]))
        ]
    if "revisions" in sft.sources:
        candidates += [
            (c["critique_id"], c["instruction_id"], "revision") for _, c in sorted(final_revisions(critiques).items())
        ]
    instruction_of = {r["response_id"]: r["instruction_id"] for r in responses}
    if "code_revisions" in sft.sources:
        candidates += [
            (rid, instruction_of[original], "code_revision") for rid, (original, _) in texts.revisions.items()
        ]
    if "constraint_variants" in sft.sources:
        variants = constraint_variants(responses, items, labels, rules, sft.variants_per_instruction, seed)
        items |= {vid: text for vid, (_, text) in variants.items()}
        labels |= {vid: labels.get(original, "missing") for vid, (original, _) in variants.items()}
        candidates += [
            (vid, instruction_of[original], "constraint_variant") for vid, (original, _) in variants.items()
        ]
    return candidates, items, labels


def sft_examples(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    texts: CandidateTexts,
    pairs: Sequence[dict[str, Any]],
    settings: Pairs,
    fewshot_texts: Sequence[str] = (),
    seed: int = 0,
    contrast: Sequence[dict[str, Any]] = (),
    principles: Labellings | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """SL-CAI / context distillation data: the better answers, under the *zero-shot* prompt.

    ``contrast``: the contrast table's rows; with that source each request's chosen answer (``contrast_pairs``)
    is an example of its construction principle, whether or not a rejected answer made a pair. Every row records the
    principle and the mechanism that decided it (checks: instruction-following where the prompt has a
    constraint, else helpfulness; model revisions: the critique's principle).

    Candidates come from ``settings.sft["sources"]``: ``responses`` (the few-shot-prompted samples),
    ``revisions`` (final critique revisions), ``code_revisions`` (answers rewritten by code to meet their
    constraint) and ``constraint_variants`` (answers rewritten by code to meet a newly attached constraint,
    under that new prompt: ``variants_per_instruction`` each, see ``constraint_variants``) and ``contrast`` (the
    construction principles' chosen answers, above). A candidate is kept
    when it is non-empty, the guard labels it safe, it meets every verifiable check when ``verifiable.enabled``
    (the constraint one where its prompt has one), it does not copy a few-shot example, and its instruction is
    not held out for the preference eval; at most ``per_instruction`` per instruction, in that order of sources
    (constraint variants, each under its own prompt, are not counted). Returns (rows, counts of why dropped).
    """
    principles = principles or Labellings()
    rules, sft = settings.verifiable, settings.sft
    checks = rules.checks if rules.enabled else ()
    heldout = {p["instruction_id"] for p in pairs if p["split"] == "heldout"}
    copies = copy_index(fewshot_texts, settings.max_copy_similarity)
    candidates, items, labels = sft_candidates(responses, critiques, texts, rules, sft, seed)
    critique_principle = {c["critique_id"]: c["principle_id"] for c in critiques}
    order = {"response": 0, "revision": 1, "code_revision": 2, "constraint_variant": 3}
    kept: dict[str, list[dict[str, Any]]] = {}
    dropped = {"unsafe": 0, "checks": 0, "copied": 0, "heldout": 0, "per_instruction": 0}
    for text_id, instruction_id, source in sorted(candidates, key=lambda c: (c[1], order[c[2]], c[0])):
        item = items[text_id]
        reason = (
            "heldout"
            if instruction_id in heldout
            else "unsafe"
            if labels.get(text_id) != "safe"
            else "checks"
            if not all(check_text(item, checks, rules.max_repetition).values()) or not item.text.strip()
            else "copied"
            if copies.closest(item.text)
            else "per_instruction"
            if source != "constraint_variant"
            and sum(r["source"] != "constraint_variant" for r in kept.get(instruction_id, [])) >= sft.per_instruction
            else None
        )
        if reason:
            dropped[reason] += 1
            continue
        if source == "revision":
            principle, mechanism = critique_principle.get(text_id, ""), "model"
        else:
            check = "constraint" if item.instruction_ids else "not_empty"
            principle, mechanism = principle_of_check(check, principles), "checks"
        kept.setdefault(instruction_id, []).append(
            {
                "example_id": text_id,
                "instruction_id": instruction_id,
                "source": source,
                "prompt": formats.prompt(item.instruction),
                "completion": item.text,
                "principle_id": principle,
                "mechanism": mechanism,
            }
        )
    framed = contrast if "contrast" in sft.sources else ()
    examples, dropped["contrast_heldout"], dropped["contrast_copied"] = contrast_examples(
        framed, principles, rules.max_repetition, heldout, copies
    )
    for row in examples:
        kept.setdefault(row["instruction_id"], []).append(row)
    return [row for rows in kept.values() for row in rows], dropped
