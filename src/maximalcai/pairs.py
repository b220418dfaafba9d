"""Preference pairs for DPO: labelled comparisons -> filtered chosen/rejected pairs, and the funnel.

Pairs are in TRL's preference format (``prompt``, ``chosen``, ``rejected``, plain strings in the project's
one format) with provenance columns. Filters, in order, all from config (``pairs``):

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
the reason, so a user can see why 48 responses became 9 pairs.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maximalcai import formats, tables, verifiable
from maximalcai.errors import TableError
from maximalcai.reproducibility import derive_seed
from maximalcai.similarity import NearDuplicateIndex, rouge_l

logger = logging.getLogger(__name__)

# Verifiable principles, in priority order: checks by code that can decide a preference without a model.
CHECKS = ("not_empty", "stops", "no_loop", "constraint")
# The safety column of a contrast pair: checks by code on the request's framing stand in for the guard.
BY_CONSTRUCTION = "by_construction"


def principle_of_check(check: str, principles: dict[str, dict]) -> str:
    """The constitution principle a check by code carries (constitution.yaml's ``check:``), else
    ``verifiable:<check>``."""
    return next(
        (pid for pid, p in principles.items() if p["mechanism"] == "checks" and p["check"] == check),
        f"verifiable:{check}",
    )


def attribute(pairs: Sequence[dict[str, Any]], principles: dict[str, dict]) -> None:
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
        if check == "not_empty":
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


def best_worst_pairs(
    responses: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    settings: dict[str, Any],
    stage: str,
) -> list[dict[str, Any]]:
    """A pair source labelled by construction, with no model: for each instruction, the safe candidate that
    meets the most checks against the candidate that meets the fewest, when the checks separate them
    (ties: the earlier candidate is best, the later worst)."""
    checks = settings["checks"]
    by_instruction = candidates_by_instruction(responses)
    pairs = []
    for instruction_id, rows in by_instruction.items():
        results = {
            r["response_id"]: check_text(items[r["response_id"]], checks, settings["max_repetition"]) for r in rows
        }
        score = {rid: (sum(res.values()), [res.get(c, True) for c in checks]) for rid, res in results.items()}
        safe = [r["response_id"] for r in rows if safety.get(r["response_id"]) == "safe"]
        if not safe:
            continue
        best = max(safe, key=lambda rid: score[rid])  # max/min keep the first of equals: the earlier candidate
        worst = min(
            reversed([r["response_id"] for r in rows if r["response_id"] != best]),
            key=lambda rid: score[rid],
            default=None,
        )
        outcome = verifiable_winner(results[best], results[worst], checks) if worst else None
        if outcome is None or outcome[0] != "a":
            continue
        pairs.append(
            {
                "pair_id": f"{instruction_id}-best-vs-worst",
                "stage": stage,
                "prompt": formats.prompt(items[best].instruction),
                "chosen": items[best].text,
                "rejected": items[worst].text,
                "instruction_id": instruction_id,
                "chosen_id": best,
                "rejected_id": worst,
                "comparison_id": f"{instruction_id}-best-vs-worst",
                "kind": "best_worst",
                "principle_ids": [f"verifiable:{c}" for c in checks],
                "soft_label": 1.0,
                "margin": 0.5,
                "chosen_safety": safety.get(best, "missing"),
                "rejected_safety": safety.get(worst, "missing"),
                "safety_swapped": False,
                "decided_by": f"verifiable:{outcome[1]}",
                "split": "train",
                "constitution_hash": "",
            }
        )
    return pairs


def code_revisions(
    responses: Sequence[dict[str, Any]], items: dict[str, Text], safety: dict[str, str], settings: dict[str, Any]
) -> dict[str, tuple[str, Text]]:
    """Revisions by code: for each instruction with a constraint that no candidate meets, its first safe
    candidate that otherwise passes the checks, rewritten by ``verifiable.revise`` to meet the constraint
    (case, quotes, a title, bullets from its own sentences, ...). Returns revision id -> (original id, Text)."""
    checks = [c for c in settings["checks"] if c != "constraint"]
    by_instruction = candidates_by_instruction(responses)
    revisions = {}
    for rows in by_instruction.values():
        first = items[rows[0]["response_id"]]
        if not first.instruction_ids:
            continue
        usable = usable_answers(rows, items, safety, checks, settings["max_repetition"])
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
            {
                "pair_id": revision_id,
                "stage": stage,
                "prompt": formats.prompt(revised.instruction),
                "chosen": revised.text,
                "rejected": items[original_id].text,
                "instruction_id": instruction_of[original_id],
                "chosen_id": revision_id,
                "rejected_id": original_id,
                "comparison_id": revision_id,
                "kind": "code_revision",
                "principle_ids": ["verifiable:constraint"],
                "soft_label": 1.0,
                "margin": 0.5,
                "chosen_safety": safety.get(original_id, "missing"),
                "rejected_safety": safety.get(original_id, "missing"),
                "safety_swapped": False,
                "decided_by": "verifiable:constraint",
                "split": "train",
                "constitution_hash": "",
            }
        )
    return pairs


def constraint_variants(
    responses: Sequence[dict[str, Any]],
    items: dict[str, Text],
    safety: dict[str, str],
    settings: dict[str, Any],
    count: int,
    seed: int,
) -> dict[str, tuple[str, Text]]:
    """Verifiable SFT data made by code (as Tülu 3 builds its instruction-following data, without a model):
    for each instruction without a constraint, its first safe candidate that stops, does not loop and is not
    empty, under up to ``count`` new prompts - the instruction with one constraint that code can meet attached
    (``verifiable.REVISERS``, distinct types in a seeded order) - rewritten by ``verifiable.revise`` and accepted
    only when IFEval's checker passes it. Answers to constrained instructions are not used: they often echo or
    half-follow their own constraint, which would contradict the new one. Returns variant id -> (original id,
    Text under the new prompt)."""
    checks = [c for c in CHECKS if c != "constraint"]
    revisable = [t for t in verifiable.training_types() if t in verifiable.REVISERS]
    by_instruction = candidates_by_instruction(responses)
    variants = {}
    for instruction_id, rows in by_instruction.items():
        usable = usable_answers(rows, items, safety, checks, settings["max_repetition"])
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
    pairs: list[dict[str, Any]], items: dict[str, Text], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """Let the verifiable principles decide every pair they separate (chosen: the text meeting more checks,
    soft label 1, margin 0.5); the others keep the labeller's decision, or are dropped with
    ``undecided: drop``. ``decided_by`` records which source decided each pair."""
    checks = settings["checks"]
    decided = []
    for pair in pairs:
        if pair["decided_by"] != "labeller":  # a best-vs-worst pair was decided by the checks already
            decided.append(pair)
            continue
        a, b = (check_text(items[pair[k]], checks, settings["max_repetition"]) for k in ("chosen_id", "rejected_id"))
        outcome = verifiable_winner(a, b, checks)
        if outcome is None:
            if settings["undecided"] == "labeller":
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
    settings: dict[str, Any],
    fewshot_texts: Sequence[str] = (),
    items: dict[str, Text] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, int, int, str]]]:
    """Apply the filters in order; returns the kept pairs and (filter, rows in, rows out, reason) steps.

    ``fewshot_texts``: the example responses and demonstration revisions the generator was shown.
    ``items``: text id -> Text, for the verifiable principles (``settings["verifiable"]``).
    """
    steps: list[tuple[str, int, int, str]] = []

    def step(name: str, kept: list[dict[str, Any]], before: int, reason: str) -> list[dict[str, Any]]:
        steps.append((name, before, len(kept), reason))
        return kept

    current = list(pairs)
    rules = settings["verifiable"]
    if rules["enabled"]:
        decided = decide_by_checks(current, items or {}, rules)
        current = step("verifiable", decided, len(current), checks_reason(decided, rules))
    safe, swapped = safe_side(current, settings["unsafe_chosen"])
    current = step(
        "safety",
        safe,
        len(current),
        f"preferred response labelled unsafe or malformed: {swapped} swapped to the safe side "
        f"(unsafe_chosen={settings['unsafe_chosen']}), the rest dropped",
    )
    current = step(
        "min_margin",
        [p for p in current if p["safety_swapped"] or p["margin"] >= settings["min_margin"]],
        len(current),
        f"labeller margin |p - 0.5| below min_margin={settings['min_margin']}",
    )
    copies = copy_index(fewshot_texts, settings["max_copy_similarity"])
    current = step(
        "copied",
        [p for p in current if copies.closest(p["chosen"]) is None],
        len(current),
        f"chosen copies a few-shot example or demonstration (more than "
        f"max_copy_similarity={settings['max_copy_similarity']} of its words, in order)",
    )
    current = step(
        "near_identical",
        [
            p
            for p in current
            if p["chosen"].strip() != p["rejected"].strip()
            and (
                p["decided_by"].startswith("verifiable")
                or rouge_l(p["chosen"], p["rejected"]) <= settings["max_similarity"]
            )
        ],
        len(current),
        f"chosen and rejected identical, or (unless a check decided them: the difference is "
        f"the point) ROUGE-L F1 above max_similarity={settings['max_similarity']}",
    )
    lo, hi = settings["min_chars"], settings["max_chars"]
    current = step(
        "length",
        [p for p in current if all(lo <= len(p[k].strip()) <= hi for k in ("chosen", "rejected"))],
        len(current),
        f"chosen or rejected outside [{lo}, {hi}] characters",
    )
    if settings["dedupe_by_prompt"]:
        current = step(
            "dedupe_by_prompt",
            best_per_prompt(current),
            len(current),
            "another pair for the same prompt had a larger margin",
        )
    return current, steps


def checks_reason(decided: Sequence[dict[str, Any]], rules: dict[str, Any]) -> str:
    """The verifiable step's funnel reason: how many pairs each check decided, and what became of the rest."""
    by_check: dict[str, int] = {}
    for pair in decided:
        by_check[pair["decided_by"]] = by_check.get(pair["decided_by"], 0) + 1
    return (
        f"checks by code ({', '.join(rules['checks'])}) decided "
        + ", ".join(f"{n} by {k.split(':')[1]}" for k, n in sorted(by_check.items()) if k.startswith("verifiable:"))
        + f"; undecided pairs: {'left to the labeller' if rules['undecided'] == 'labeller' else 'dropped'}"
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
    rules: dict[str, Any],
) -> CandidateTexts:
    items = text_items(responses, critiques, instructions)
    labels = {row["text_id"]: row["label"] for row in safety}
    revisions = code_revisions(responses, items, labels, rules) if rules["enabled"] and rules["code_revisions"] else {}
    items |= {rid: text for rid, (_, text) in revisions.items()}
    labels |= {rid: labels.get(original, "missing") for rid, (original, _) in revisions.items()}
    return CandidateTexts(items, labels, revisions)


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


def contrast_funnel(counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Funnel rows of the construction principles: requests paired, and why the others were not."""
    return [
        {
            "step": 0,
            "filter": f"contrast:{pid}",
            "rows_in": tally["requests"],
            "rows_out": tally["paired"],
            "dropped": tally["requests"] - tally["paired"],
            "reason": f"requests of principle {pid} paired by construction ({tally['written']} of them on a written "
            "chosen answer: no framed answer passed); not paired: "
            + ", ".join(f"{n} {why}" for why, n in tally.items() if why not in ("requests", "paired", "written")),
        }
        for pid, tally in sorted(counts.items())
    ]


def principle_funnel(kept: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Funnel rows of the kept pairs per principle and mechanism."""
    by_principle: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pair in kept:
        by_principle.setdefault((pair["principle_id"], pair["mechanism"]), []).append(pair)
    return [
        {
            "step": 0,
            "filter": f"principle:{pid or '-'}",
            "rows_in": len(rows),
            "rows_out": len(rows),
            "dropped": 0,
            "reason": f"pairs decided by {mechanism} ({sum(p['split'] == 'train' for p in rows)} train)",
        }
        for (pid, mechanism), rows in sorted(by_principle.items())
    ]


def build_pairs(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    safety: Sequence[dict[str, Any]],
    preferences: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    seed: int,
    stage: str,
    fewshot_texts: Sequence[str] = (),
    instructions: Sequence[dict[str, Any]] = (),
    candidates_texts: CandidateTexts | None = None,
    contrast: Sequence[dict[str, Any]] = (),
    principles: dict[str, dict] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs rows, funnel rows). ``candidates_texts``: see ``candidate_texts`` (built here when not given).
    ``contrast``: rows of the contrast table (labels by construction); ``principles``: the constitution's
    mechanisms (``constitution.principles_by_mechanism``), for each pair's principle."""
    from maximalcai.contrast import contrast_pairs

    principles = principles or {}
    rules = settings["verifiable"]
    texts = candidates_texts or candidate_texts(responses, critiques, safety, instructions, rules)
    prompts = {r["instruction_id"]: r["instruction"] for r in responses}
    plain = {r["response_id"]: r["response"] for r in responses} | {c["critique_id"]: c["revision"] for c in critiques}
    candidates = candidate_pairs(preferences, plain, texts.labels, prompts)
    constructed = []
    if rules["enabled"] and rules["best_worst"]:
        constructed += best_worst_pairs(responses, texts.items, texts.labels, rules, stage)
    if texts.revisions:
        instruction_of = {r["response_id"]: r["instruction_id"] for r in responses}
        constructed += code_revision_pairs(texts.revisions, texts.items, texts.labels, instruction_of, stage)
    by_construction, _, contrast_counts = contrast_pairs(contrast, principles, rules["max_repetition"], stage)
    constructed += by_construction
    kept, steps = filter_pairs(candidates + constructed, settings, fewshot_texts, texts.items)
    assign_split(kept, settings["heldout_fraction"], seed, stage)
    attribute(kept, principles)
    revisions = len({c["response_id"] for c in critiques})
    funnel = [
        {
            "step": 0,
            "filter": "comparisons",
            "rows_in": len(responses) + revisions,
            "rows_out": len(candidates) + len(constructed),
            "dropped": 0,
            "reason": f"{len(responses)} responses and {revisions} final revisions paired into "
            f"{len(candidates)} labelled comparisons"
            + "".join(
                f" and {n} {name} pairs decided by checks"
                for kind, name in (
                    ("best_worst", "best-vs-worst"),
                    ("code_revision", "code-revision"),
                    ("contrast", "contrast (by construction)"),
                )
                if (n := sum(p["kind"] == kind for p in constructed))
            ),
        },
    ]
    funnel += contrast_funnel(contrast_counts)
    funnel += [
        {"step": i, "filter": name, "rows_in": before, "rows_out": after, "dropped": before - after, "reason": reason}
        for i, (name, before, after, reason) in enumerate(steps, start=1)
    ]
    heldout = sum(p["split"] == "heldout" for p in kept)
    funnel.append(
        {
            "step": len(funnel),
            "filter": "split",
            "rows_in": len(kept),
            "rows_out": len(kept),
            "dropped": 0,
            "reason": f"{len(kept) - heldout} train, {heldout} held out for evaluation",
        }
    )
    funnel += principle_funnel(kept)
    for number, row in enumerate(funnel):
        row["step"] = number
    return kept, funnel


def contrast_examples(
    contrast: Sequence[dict[str, Any]],
    principles: dict[str, dict],
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


def copy_index(fewshot_texts: Sequence[str], limit: float) -> NearDuplicateIndex:
    """The few-shot examples and demonstrations a chosen text or SFT completion must not copy (containment)."""
    copies = NearDuplicateIndex(limit, measure="containment")
    for index, text in enumerate(fewshot_texts):
        copies.add(str(index), text)
    return copies


def sft_candidates(
    responses: Sequence[dict[str, Any]],
    critiques: Sequence[dict[str, Any]],
    texts: CandidateTexts,
    rules: dict[str, Any],
    sft: dict[str, Any],
    seed: int,
) -> tuple[list[tuple[str, str, str]], dict[str, Text], dict[str, str]]:
    """(text id, instruction id, source) of every SFT candidate from ``sft["sources"]``, and the texts and
    guard labels by id (with the constraint variants' added)."""
    from maximalcai.feedback.critique import final_revisions

    items, labels = dict(texts.items), dict(texts.labels)
    candidates = []
    if "responses" in sft["sources"]:
        candidates += [
            (r["response_id"], r["instruction_id"], "response")
            for r in sorted(responses, key=lambda r: (r["instruction_id"], r["candidate_index"]))
        ]
    if "revisions" in sft["sources"]:
        candidates += [
            (c["critique_id"], c["instruction_id"], "revision") for _, c in sorted(final_revisions(critiques).items())
        ]
    instruction_of = {r["response_id"]: r["instruction_id"] for r in responses}
    if "code_revisions" in sft["sources"]:
        candidates += [
            (rid, instruction_of[original], "code_revision") for rid, (original, _) in texts.revisions.items()
        ]
    if "constraint_variants" in sft["sources"]:
        variants = constraint_variants(responses, items, labels, rules, sft["variants_per_instruction"], seed)
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
    settings: dict[str, Any],
    fewshot_texts: Sequence[str] = (),
    seed: int = 0,
    contrast: Sequence[dict[str, Any]] = (),
    principles: dict[str, dict] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """SL-CAI / context distillation data: the better answers, under the *zero-shot* prompt.

    ``contrast``: the contrast table's rows; each request's chosen answer (``contrast.contrast_pairs``) is an
    example of its construction principle, whether or not a rejected answer made a pair. Every row records the
    principle and the mechanism that decided it (checks: instruction-following where the prompt has a
    constraint, else helpfulness; model revisions: the critique's principle).

    Candidates come from ``settings["sft"]["sources"]``: ``responses`` (the few-shot-prompted samples),
    ``revisions`` (final critique revisions), ``code_revisions`` (answers rewritten by code to meet their
    constraint) and ``constraint_variants`` (answers rewritten by code to meet a newly attached constraint,
    under that new prompt: ``variants_per_instruction`` each, see ``constraint_variants``). A candidate is kept
    when it is non-empty, the guard labels it safe, it meets every verifiable check when ``verifiable.enabled``
    (the constraint one where its prompt has one), it does not copy a few-shot example, and its instruction is
    not held out for the preference eval; at most ``per_instruction`` per instruction, in that order of sources
    (constraint variants, each under its own prompt, are not counted). Returns (rows, counts of why dropped).
    """
    principles = principles or {}
    rules, sft = settings["verifiable"], settings["sft"]
    checks = rules["checks"] if rules["enabled"] else ()
    heldout = {p["instruction_id"] for p in pairs if p["split"] == "heldout"}
    copies = copy_index(fewshot_texts, settings["max_copy_similarity"])
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
            if not all(check_text(item, checks, rules["max_repetition"]).values()) or not item.text.strip()
            else "copied"
            if copies.closest(item.text)
            else "per_instruction"
            if source != "constraint_variant"
            and sum(r["source"] != "constraint_variant" for r in kept.get(instruction_id, []))
            >= sft["per_instruction"]
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
    examples, dropped["contrast_heldout"], dropped["contrast_copied"] = contrast_examples(
        contrast, principles, rules["max_repetition"], heldout, copies
    )
    for row in examples:
        kept.setdefault(row["instruction_id"], []).append(row)
    return [row for rows in kept.values() for row in rows], dropped


def format_funnel(funnel: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'step':>4}  {'filter':<17}{'in':>6}{'out':>6}{'dropped':>9}  reason"]
    lines += [
        f"{r['step']:>4}  {r['filter']:<17}{r['rows_in']:>6}{r['rows_out']:>6}{r['dropped']:>9}  {r['reason']}"
        for r in funnel
    ]
    return "\n".join(lines)


def run_build_pairs(
    settings: dict,
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
    principles: dict | None = None,
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
    texts = candidate_texts(answers, revisions, labels, tasks, settings["verifiable"])
    pairs, steps = build_pairs(
        answers, revisions, labels, preferred, settings, seed, stage, fewshot, tasks, texts, framed, principles
    )
    logger.info("pair funnel for %s:\n%s", stage, format_funnel(steps))
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
            f"dropped them:\n{format_funnel(steps)}\nLoosen pairs.* in the config or generate more data."
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
