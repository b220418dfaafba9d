"""Preference pairs for DPO: labelled comparisons and pairs decided by construction -> filtered
chosen/rejected pairs; the rule build_pairs, which also writes the funnel and the SFT examples.

Pair sources: the labeller's comparisons, checks by code (``code_checks``: best-vs-worst, code revisions,
over-refusal negatives) and the construction principles' framings (``contrast``). Pairs are in TRL's preference format
(``prompt``, ``chosen``, ``rejected``, plain strings in the project's one format) with provenance columns.
Filters, in order, all from config (``pairs``):

0. ``verifiable``: checks by code decide every labelled pair they separate (``decide_by_checks``);
1. safety: a response labelled unsafe or malformed is never chosen. ``unsafe_chosen: swap`` makes the
   other response chosen when it is safe; otherwise (or with ``drop``) the pair is dropped;
2. ``min_margin``: the labeller must lean at least this far from 0.5 (safety-swapped pairs are kept: the
   safety policy overrides the labeller);
3. copied: the chosen text copies a few-shot example or demonstration: more than ``max_copy_similarity``
   of its words appear, in order, in one of them (small base models often copy their examples);
4. near-identical chosen and rejected (ROUGE-L F1 above ``max_similarity``, identical included);
5. length bounds on both texts (``min_chars``, ``max_chars``);
6. ``dedupe_by_prompt``: one pair per prompt, the one with the largest margin.

Then a seeded ``heldout_fraction`` of the pairs is marked ``split=heldout`` for the preference-accuracy
eval; training reads only ``split=train``. The funnel table records rows in and out of every step with
the reason (``funnel``); the SFT examples come from ``distillation``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maximalcai import formats, tables
from maximalcai import funnel as funnels
from maximalcai.code_checks import (
    BY_CONSTRUCTION,
    CandidateTexts,
    Text,
    Verifiable,
    best_worst_pairs,
    candidate_texts,
    check_text,
    code_revision_pairs,
    principle_of_check,
    refusal_negative_pairs,
    verifiable_winner,
)
from maximalcai.constitution import Labellings
from maximalcai.distillation import Sft, sft_examples
from maximalcai.errors import TableError
from maximalcai.reproducibility import derive_seed
from maximalcai.similarity import copy_index, rouge_l
from maximalcai.typed import Section


@dataclass(frozen=True)
class Pairs(Section):
    """A stage's ``pairs`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("pairs",)

    min_margin: float
    unsafe_chosen: str
    max_similarity: float
    max_copy_similarity: float
    min_chars: int
    max_chars: int
    dedupe_by_prompt: bool
    heldout_fraction: float
    contrast_balance: float | None
    verifiable: Verifiable
    sft: Sft


logger = logging.getLogger(__name__)


def attribute(pairs: Sequence[dict[str, Any]], principles: Labellings) -> None:
    """Set each pair's ``principle_id`` and ``mechanism`` from what decided it: a construction principle,
    a check by code (the principle that names the check), the guard (safety swaps), or the labeller (the
    first principle it was asked about)."""
    for pair in pairs:
        source, _, detail = pair["decided_by"].partition(":")
        if source == "construction":
            pair.update(principle_id=detail, mechanism="construction")
        elif source == "verifiable":
            pair.update(principle_id=principle_of_check(detail, principles), mechanism="checks")
        elif source == "safety":
            pair.update(principle_id="", mechanism="guard")
        else:
            pair.update(principle_id=(pair["principle_ids"] or [""])[0], mechanism="model")


def candidate_pairs(
    preferences: Sequence[dict[str, Any]], texts: dict[str, str], safety: dict[str, str], instructions: dict[str, str]
) -> list[dict[str, Any]]:
    """One candidate pair per comparison: chosen is the side the labeller preferred (ties: a)."""
    pairs = []
    for pref in sorted(preferences, key=lambda p: p["comparison_id"]):
        a_wins = pref["soft_label"] >= 0.5
        chosen, rejected = (pref["a_id"], pref["b_id"]) if a_wins else (pref["b_id"], pref["a_id"])
        soft = pref["soft_label"] if a_wins else 1.0 - pref["soft_label"]
        pairs.append(
            {
                "pair_id": f"{pref['comparison_id']}",
                "stage": pref["stage"],
                "prompt": formats.prompt(instructions[pref["instruction_id"]]),
                "chosen": texts[chosen],
                "rejected": texts[rejected],
                "instruction_id": pref["instruction_id"],
                "chosen_id": chosen,
                "rejected_id": rejected,
                "comparison_id": pref["comparison_id"],
                "kind": pref["kind"],
                "principle_ids": list(pref["principle_ids"]),
                "soft_label": round(soft, 6),
                "margin": round(abs(pref["soft_label"] - 0.5), 6),
                "chosen_safety": safety.get(chosen, "missing"),
                "rejected_safety": safety.get(rejected, "missing"),
                "safety_swapped": False,
                "decided_by": "labeller",
                "split": "train",
                "constitution_hash": pref["constitution_hash"],
            }
        )
    return pairs


def _swap(pair: dict[str, Any]) -> dict[str, Any]:
    return {
        **pair,
        "chosen": pair["rejected"],
        "rejected": pair["chosen"],
        "chosen_id": pair["rejected_id"],
        "rejected_id": pair["chosen_id"],
        "chosen_safety": pair["rejected_safety"],
        "rejected_safety": pair["chosen_safety"],
        "soft_label": round(1.0 - pair["soft_label"], 6),
        "safety_swapped": True,
        "decided_by": "safety",
    }


def decide_by_checks(
    pairs: list[dict[str, Any]], items: dict[str, Text], settings: Verifiable
) -> list[dict[str, Any]]:
    """Let the verifiable principles decide every pair they separate (chosen: the text meeting more checks,
    soft label 1, margin 0.5); the others keep the labeller's decision, or are dropped with
    ``undecided: drop``. ``decided_by`` records which source decided each pair."""
    checks = settings.checks
    decided = []
    for pair in pairs:
        if pair["decided_by"] != "labeller":  # a best-vs-worst pair was decided by the checks already
            decided.append(pair)
            continue
        a, b = (check_text(items[pair[k]], checks, settings.max_repetition) for k in ("chosen_id", "rejected_id"))
        outcome = verifiable_winner(a, b, checks)
        if outcome is None:
            if settings.undecided == "labeller":
                decided.append(pair)
            continue
        winner, check = outcome
        flipped = _swap(pair) if winner == "b" else dict(pair)
        decided.append(
            {**flipped, "safety_swapped": False, "soft_label": 1.0, "margin": 0.5, "decided_by": f"verifiable:{check}"}
        )
    return decided


def filter_pairs(
    pairs: Sequence[dict[str, Any]],
    settings: Pairs,
    fewshot_texts: Sequence[str] = (),
    items: dict[str, Text] | None = None,
    answering: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], list[tuple[str, int, int, str]]]:
    """Apply the filters in order; returns the kept pairs and (filter, rows in, rows out, reason) steps.

    ``fewshot_texts``: the example responses and demonstration revisions the generator was shown.
    ``items``: text id -> Text, for the verifiable principles (``settings.verifiable``).
    ``answering``: the construction principles whose chosen answer answers (``settings.contrast_balance``).
    """
    steps: list[tuple[str, int, int, str]] = []

    def step(name: str, kept: list[dict[str, Any]], before: int, reason: str) -> list[dict[str, Any]]:
        steps.append((name, before, len(kept), reason))
        return kept

    current = list(pairs)
    rules = settings.verifiable
    if rules.enabled:
        decided = decide_by_checks(current, items or {}, rules)
        current = step("verifiable", decided, len(current), checks_reason(decided, rules))
    safe, swapped = safe_side(current, settings.unsafe_chosen)
    current = step(
        "safety",
        safe,
        len(current),
        f"preferred response labelled unsafe or malformed: {swapped} swapped to the safe side "
        f"(unsafe_chosen={settings.unsafe_chosen}), the rest dropped",
    )
    current = step(
        "min_margin",
        [p for p in current if p["safety_swapped"] or p["margin"] >= settings.min_margin],
        len(current),
        f"labeller margin |p - 0.5| below min_margin={settings.min_margin}",
    )
    copies = copy_index(fewshot_texts, settings.max_copy_similarity)
    current = step(
        "copied",
        [p for p in current if copies.closest(p["chosen"]) is None],
        len(current),
        f"chosen copies a few-shot example or demonstration (more than "
        f"max_copy_similarity={settings.max_copy_similarity} of its words, in order)",
    )
    current = step(
        "near_identical",
        [p for p in current if differs(p, settings.max_similarity)],
        len(current),
        f"chosen and rejected identical, or (unless a check decided them: the difference is "
        f"the point) ROUGE-L F1 above max_similarity={settings.max_similarity}",
    )
    lo, hi = settings.min_chars, settings.max_chars
    current = step(
        "length",
        [p for p in current if all(lo <= len(p[k].strip()) <= hi for k in ("chosen", "rejected"))],
        len(current),
        f"chosen or rejected outside [{lo}, {hi}] characters",
    )
    if settings.dedupe_by_prompt:
        current = step(
            "dedupe_by_prompt",
            best_per_prompt(current),
            len(current),
            "another pair for the same prompt had a larger margin",
        )
    if settings.contrast_balance is not None:
        from maximalcai.contrast import balance_contrast

        current = step(
            "contrast_balance",
            balance_contrast(current, settings.contrast_balance, answering),
            len(current),
            f"answering contrast pairs over contrast_balance={settings.contrast_balance} per refusing one "
            "(written over-refusals first)",
        )
    return current, steps


def differs(pair: dict[str, Any], max_similarity: float) -> bool:
    """Chosen and rejected are not the same text, and (unless a check decided the pair: then the small
    difference is the point) their ROUGE-L F1 is at most ``max_similarity``."""
    if pair["chosen"].strip() == pair["rejected"].strip():
        return False
    return pair["decided_by"].startswith("verifiable") or rouge_l(pair["chosen"], pair["rejected"]) <= max_similarity


def checks_reason(decided: Sequence[dict[str, Any]], rules: Verifiable) -> str:
    """The verifiable step's funnel reason: how many pairs each check decided, and what became of the rest."""
    by_check: dict[str, int] = {}
    for pair in decided:
        by_check[pair["decided_by"]] = by_check.get(pair["decided_by"], 0) + 1
    return (
        f"checks by code ({', '.join(rules.checks)}) decided "
        + ", ".join(f"{n} by {k.split(':')[1]}" for k, n in sorted(by_check.items()) if k.startswith("verifiable:"))
        + f"; undecided pairs: {'left to the labeller' if rules.undecided == 'labeller' else 'dropped'}"
        + f" ({by_check.get('labeller', 0)} kept)"
    )


def safe_side(pairs: Sequence[dict[str, Any]], unsafe_chosen: str) -> tuple[list[dict[str, Any]], int]:
    """Pairs whose chosen side is safe (or safe by construction); with ``unsafe_chosen: swap``, a pair whose
    rejected side is the safe one is swapped. Returns (pairs, how many were swapped)."""
    kept: list[dict[str, Any]] = []
    swapped = 0
    for pair in pairs:
        if pair["chosen_safety"] in ("safe", BY_CONSTRUCTION):
            kept.append(pair)
        elif unsafe_chosen == "swap" and pair["rejected_safety"] == "safe":
            kept.append(_swap(pair))
            swapped += 1
    return kept, swapped


def best_per_prompt(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pair with the largest margin for each prompt (ties: the larger pair id), in pair-id order."""
    best: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        kept = best.get(pair["prompt"])
        if kept is None or (pair["margin"], pair["pair_id"]) > (kept["margin"], kept["pair_id"]):
            best[pair["prompt"]] = pair
    return sorted(best.values(), key=lambda p: p["pair_id"])


def assign_split(pairs: list[dict[str, Any]], fraction: float, seed: int, stage: str) -> None:
    """Mark round(fraction * n) pairs (at least one when fraction > 0 and n > 1) as held out, by seeded hash."""
    count = round(fraction * len(pairs))
    if fraction > 0 and len(pairs) > 1:
        count = min(max(count, 1), len(pairs) - 1)
    ranked = sorted(pairs, key=lambda p: derive_seed(seed, stage, "split", p["pair_id"]))
    for pair in ranked[:count]:
        pair["split"] = "heldout"


def build_pairs(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    safety: Sequence[dict[str, Any]],
    preferences: Sequence[dict[str, Any]],
    settings: Pairs,
    seed: int,
    stage: str,
    fewshot_texts: Sequence[str] = (),
    instructions: Sequence[dict[str, Any]] = (),
    candidates_texts: CandidateTexts | None = None,
    contrast: Sequence[dict[str, Any]] = (),
    principles: Labellings | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs rows, funnel rows). ``candidates_texts``: see ``candidate_texts`` (built here when not given).
    ``contrast``: rows of the contrast table (labels by construction); ``principles``: the constitution's
    labellings, for each pair's principle (None: none, every pair's principle from what decided it)."""
    from maximalcai.contrast import answering_principles, contrast_pairs, principles_choosing

    principles = principles or Labellings()
    rules = settings.verifiable
    texts = candidates_texts or candidate_texts(responses, critiques, safety, instructions, rules)
    prompts = {r["instruction_id"]: r["instruction"] for r in responses}
    plain = {r["response_id"]: r["response"] for r in responses} | {c["critique_id"]: c["revision"] for c in critiques}
    candidates = candidate_pairs(preferences, plain, texts.labels, prompts)
    constructed = []
    if rules.enabled and rules.best_worst:
        constructed += best_worst_pairs(responses, texts.items, texts.labels, rules, stage)
    if texts.revisions:
        instruction_of = {r["response_id"]: r["instruction_id"] for r in responses}
        constructed += code_revision_pairs(texts.revisions, texts.items, texts.labels, instruction_of, stage)
    by_construction, _, contrast_counts = contrast_pairs(contrast, principles, rules.max_repetition, stage)
    constructed += by_construction
    if rules.enabled and rules.refusal_negatives > 0:
        refusing = principles_choosing(principles, "refuses")
        refusals = [
            (p["chosen_id"], p["chosen"]) for p in by_construction if p["decided_by"].partition(":")[2] in refusing
        ]
        constructed += refusal_negative_pairs(responses, texts.items, texts.labels, rules, refusals, seed, stage)
    answering = answering_principles(principles)
    kept, steps = filter_pairs(candidates + constructed, settings, fewshot_texts, texts.items, answering)
    assign_split(kept, settings.heldout_fraction, seed, stage)
    attribute(kept, principles)
    revisions = len({c["response_id"] for c in critiques})
    return kept, funnels.pairs_funnel(len(responses), revisions, candidates, constructed, contrast_counts, steps, kept)


def run_build_pairs(
    settings: Pairs,
    seed: int,
    stage: str,
    responses: str,
    critiques: str,
    safety: str,
    preferences: str,
    instructions: str,
    pools: Sequence[str],
    critique_demos: str,
    table: str,
    funnel: str,
    sft: str,
    principles: Labellings,
    contrast: str | None = None,
) -> dict[str, Any]:
    """Rule build_pairs: the stage's chosen/rejected pairs (``table``), the funnel of what each filter
    dropped (``funnel``) and the SFT warm-up examples (``sft``). ``contrast``: the stage's contrast table,
    when the stage makes one; ``principles``: the constitution's mechanisms."""
    from maximalcai.feedback.critique import load_critique_demos
    from maximalcai.prompting import load_pool

    answers = tables.read_table(responses, "responses")
    revisions = tables.read_table(critiques, "critiques", require_rows=False)
    labels = tables.read_table(safety, "safety")
    preferred = tables.read_table(preferences, "preferences", require_rows=False)
    tasks = tables.read_table(instructions, "instructions")
    fewshot = [e.response for path in pools for e in load_pool(path)]
    fewshot += [d["revision"] for d in load_critique_demos(critique_demos)]
    framed = tables.read_table(contrast, "contrast") if contrast else []
    texts = candidate_texts(answers, revisions, labels, tasks, settings.verifiable)
    pairs, steps = build_pairs(
        answers, revisions, labels, preferred, settings, seed, stage, fewshot, tasks, texts, framed, principles
    )
    logger.info("pair funnel for %s:\n%s", stage, funnels.format_funnel(steps))
    demonstrations, dropped = sft_examples(
        answers, revisions, texts, pairs, settings, fewshot, seed, framed, principles
    )
    logger.info(
        "SFT examples for %s: %d kept (%s); dropped: %s",
        stage,
        len(demonstrations),
        ", ".join(
            f"{sum(r['source'] == s for r in demonstrations)} {s}s"
            for s in ("response", "revision", "code_revision", "constraint_variant", "contrast")
        ),
        dropped,
    )
    tables.write_table(demonstrations, sft, "sft_examples")
    tables.write_table(steps, funnel, "pairs_funnel")
    if not any(p["split"] == "train" for p in pairs):
        raise TableError(
            f"{table}: no training pair survived the filters; the funnel ({funnel}) says which filter "
            f"dropped them:\n{funnels.format_funnel(steps)}\nLoosen pairs.* in the config or generate more data."
        )
    tables.write_table(pairs, table, "pairs")
    return {
        "rows": len(pairs),
        "funnel": steps,
        "sft_examples": len(demonstrations),
        "sft_dropped": dropped,
        "decided_by": {k: sum(p["decided_by"] == k for p in pairs) for k in sorted({p["decided_by"] for p in pairs})},
        "principles": {
            k: sum(p["principle_id"] == k for p in pairs) for k in sorted({p["principle_id"] for p in pairs})
        },
        "sft_principles": {
            k: sum(r["principle_id"] == k for r in demonstrations)
            for k in sorted({r["principle_id"] for r in demonstrations})
        },
    }
