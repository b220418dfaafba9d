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

import logging
from typing import Any, Sequence

from maximalcai import formats, tables
from maximalcai.manifest import write_manifest
from maximalcai.reproducibility import derive_seed
from maximalcai.similarity import NearDuplicateIndex, rouge_l

logger = logging.getLogger(__name__)


def candidate_pairs(
    preferences: Sequence[dict[str, Any]], texts: dict[str, str], safety: dict[str, str], instructions: dict[str, str]
) -> list[dict[str, Any]]:
    """One candidate pair per comparison: chosen is the side the labeller preferred (ties: a)."""
    pairs = []
    for pref in sorted(preferences, key=lambda p: p["comparison_id"]):
        a_wins = pref["soft_label"] >= 0.5
        chosen, rejected = (pref["a_id"], pref["b_id"]) if a_wins else (pref["b_id"], pref["a_id"])
        soft = pref["soft_label"] if a_wins else 1.0 - pref["soft_label"]
        pairs.append({
            "pair_id": f"{pref['comparison_id']}", "stage": pref["stage"],
            "prompt": formats.prompt(instructions[pref["instruction_id"]]),
            "chosen": texts[chosen], "rejected": texts[rejected], "instruction_id": pref["instruction_id"],
            "chosen_id": chosen, "rejected_id": rejected, "comparison_id": pref["comparison_id"],
            "kind": pref["kind"], "principle_ids": list(pref["principle_ids"]), "soft_label": round(soft, 6),
            "margin": round(abs(pref["soft_label"] - 0.5), 6),
            "chosen_safety": safety.get(chosen, "missing"), "rejected_safety": safety.get(rejected, "missing"),
            "safety_swapped": False, "split": "train", "constitution_hash": pref["constitution_hash"],
        })
    return pairs


def _swap(pair: dict[str, Any]) -> dict[str, Any]:
    return {
        **pair, "chosen": pair["rejected"], "rejected": pair["chosen"], "chosen_id": pair["rejected_id"],
        "rejected_id": pair["chosen_id"], "chosen_safety": pair["rejected_safety"],
        "rejected_safety": pair["chosen_safety"], "soft_label": round(1.0 - pair["soft_label"], 6),
        "safety_swapped": True,
    }


def filter_pairs(
    pairs: Sequence[dict[str, Any]], settings: dict[str, Any], fewshot_texts: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[tuple[str, int, int, str]]]:
    """Apply the filters in order; returns the kept pairs and (filter, rows in, rows out, reason) steps.

    ``fewshot_texts``: the example responses and demonstration revisions the generator was shown.
    """
    steps: list[tuple[str, int, int, str]] = []

    def step(name: str, kept: list[dict[str, Any]], before: int, reason: str) -> list[dict[str, Any]]:
        steps.append((name, before, len(kept), reason))
        return kept

    current = list(pairs)
    safe_side: list[dict[str, Any]] = []
    swapped = 0
    for pair in current:
        if pair["chosen_safety"] == "safe":
            safe_side.append(pair)
        elif settings["unsafe_chosen"] == "swap" and pair["rejected_safety"] == "safe":
            safe_side.append(_swap(pair))
            swapped += 1
    current = step("safety", safe_side, len(current),
                   f"preferred response labelled unsafe or malformed: {swapped} swapped to the safe side "
                   f"(unsafe_chosen={settings['unsafe_chosen']}), the rest dropped")
    current = step("min_margin", [p for p in current if p["safety_swapped"] or p["margin"] >= settings["min_margin"]],
                   len(current), f"labeller margin |p - 0.5| below min_margin={settings['min_margin']}")
    copies = NearDuplicateIndex(settings["max_copy_similarity"], measure="containment")
    for index, text in enumerate(fewshot_texts):
        copies.add(str(index), text)
    current = step("copied", [p for p in current if copies.closest(p["chosen"]) is None], len(current),
                   f"chosen copies a few-shot example or demonstration (more than "
                   f"max_copy_similarity={settings['max_copy_similarity']} of its words, in order)")
    current = step("near_identical",
                   [p for p in current if p["chosen"].strip() != p["rejected"].strip()
                    and rouge_l(p["chosen"], p["rejected"]) <= settings["max_similarity"]],
                   len(current), f"chosen and rejected identical or ROUGE-L F1 above max_similarity={settings['max_similarity']}")
    lo, hi = settings["min_chars"], settings["max_chars"]
    current = step("length", [p for p in current if all(lo <= len(p[k].strip()) <= hi for k in ("chosen", "rejected"))],
                   len(current), f"chosen or rejected outside [{lo}, {hi}] characters")
    if settings["dedupe_by_prompt"]:
        best: dict[str, dict[str, Any]] = {}
        for pair in current:
            kept = best.get(pair["prompt"])
            if kept is None or (pair["margin"], pair["pair_id"]) > (kept["margin"], kept["pair_id"]):
                best[pair["prompt"]] = pair
        current = step("dedupe_by_prompt", sorted(best.values(), key=lambda p: p["pair_id"]), len(current),
                       "another pair for the same prompt had a larger margin")
    return current, steps


def assign_split(pairs: list[dict[str, Any]], fraction: float, seed: int, stage: str) -> None:
    """Mark round(fraction * n) pairs (at least one when fraction > 0 and n > 1) as held out, by seeded hash."""
    count = round(fraction * len(pairs))
    if fraction > 0 and len(pairs) > 1:
        count = min(max(count, 1), len(pairs) - 1)
    ranked = sorted(pairs, key=lambda p: derive_seed(seed, stage, "split", p["pair_id"]))
    for pair in ranked[:count]:
        pair["split"] = "heldout"


def build_pairs(
    responses: Sequence[dict[str, Any]], critiques: Sequence[dict[str, Any]], safety: Sequence[dict[str, Any]],
    preferences: Sequence[dict[str, Any]], settings: dict[str, Any], seed: int, stage: str,
    fewshot_texts: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs rows, funnel rows)."""
    texts = {r["response_id"]: r["response"] for r in responses} | {c["critique_id"]: c["revision"] for c in critiques}
    instructions = {r["instruction_id"]: r["instruction"] for r in responses}
    labels = {row["text_id"]: row["label"] for row in safety}
    candidates = candidate_pairs(preferences, texts, labels, instructions)
    kept, steps = filter_pairs(candidates, settings, fewshot_texts)
    assign_split(kept, settings["heldout_fraction"], seed, stage)
    revisions = len({c["response_id"] for c in critiques})
    funnel = [
        {"step": 0, "filter": "comparisons", "rows_in": len(responses) + revisions, "rows_out": len(candidates),
         "dropped": 0, "reason": f"{len(responses)} responses and {revisions} final revisions paired into comparisons"},
    ]
    funnel += [
        {"step": i, "filter": name, "rows_in": before, "rows_out": after, "dropped": before - after, "reason": reason}
        for i, (name, before, after, reason) in enumerate(steps, start=1)
    ]
    heldout = sum(p["split"] == "heldout" for p in kept)
    funnel.append({"step": len(funnel), "filter": "split", "rows_in": len(kept), "rows_out": len(kept), "dropped": 0,
                   "reason": f"{len(kept) - heldout} train, {heldout} held out for evaluation"})
    return kept, funnel


def format_funnel(funnel: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'step':>4}  {'filter':<17}{'in':>6}{'out':>6}{'dropped':>9}  reason"]
    lines += [f"{r['step']:>4}  {r['filter']:<17}{r['rows_in']:>6}{r['rows_out']:>6}{r['dropped']:>9}  {r['reason']}" for r in funnel]
    return "\n".join(lines)


def run_build_pairs(
    cfg: dict, settings: dict, stage: str, responses_path: str, critiques_path: str, safety_path: str,
    preferences_path: str, pool_path: str, critique_demos_path: str, table: str, funnel_table: str, manifest: str,
) -> None:
    from maximalcai.feedback.critique import load_critique_demos
    from maximalcai.prompting import load_pool

    responses = tables.read_table(responses_path, "responses")
    critiques = tables.read_table(critiques_path, "critiques", require_rows=False)
    safety = tables.read_table(safety_path, "safety")
    preferences = tables.read_table(preferences_path, "preferences")
    fewshot = [e.response for e in load_pool(pool_path)] + [d["revision"] for d in load_critique_demos(critique_demos_path)]
    pairs, funnel = build_pairs(responses, critiques, safety, preferences, settings, cfg["seed"], stage, fewshot)
    logger.info("pair funnel for %s:\n%s", stage, format_funnel(funnel))
    tables.write_table(funnel, funnel_table, "pairs_funnel")
    if not any(p["split"] == "train" for p in pairs):
        raise tables.TableError(
            f"{table}: no training pair survived the filters; the funnel ({funnel_table}) says which filter "
            f"dropped them:\n{format_funnel(funnel)}\nLoosen pairs.* in the config or generate more data."
        )
    tables.write_table(pairs, table, "pairs")
    write_manifest(manifest, cfg, {"rule": "build_pairs", "stage": stage, "rows": len(pairs), "funnel": funnel})
