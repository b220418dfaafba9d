"""The pair funnel (results/<stage>/pairs_funnel.parquet): rows in and out of every step, with the reason,
so a user can see why 48 responses became 9 pairs; then the rows per construction principle and per
principle and mechanism of the kept pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WRITTEN = ("written_chosen", "written_rejected")  # pairs on a written answer, per side


def contrast_funnel(counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Funnel rows of the construction principles: requests paired, and why the others were not."""
    return [
        {
            "step": 0,
            "filter": f"contrast:{pid}",
            "rows_in": tally["requests"],
            "rows_out": tally["paired"],
            "dropped": tally["requests"] - tally["paired"],
            "reason": f"requests of principle {pid} paired by construction ({tally['written_chosen']} of them on a "
            f"written chosen answer, {tally['written_rejected']} on a written rejected one: no generated answer "
            "passed that side's checks); not paired: "
            + ", ".join(f"{n} {why}" for why, n in tally.items() if why not in ("requests", "paired", *WRITTEN)),
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


def format_funnel(funnel: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'step':>4}  {'filter':<17}{'in':>6}{'out':>6}{'dropped':>9}  reason"]
    lines += [
        f"{r['step']:>4}  {r['filter']:<17}{r['rows_in']:>6}{r['rows_out']:>6}{r['dropped']:>9}  {r['reason']}"
        for r in funnel
    ]
    return "\n".join(lines)


def pairs_funnel(
    responses: int,
    revisions: int,
    candidates: Sequence[dict[str, Any]],
    constructed: Sequence[dict[str, Any]],
    contrast_counts: dict[str, dict[str, int]],
    steps: Sequence[tuple[str, int, int, str]],
    kept: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The stage's funnel: texts into comparisons and pairs decided by construction, the construction
    principles' requests, each filter step (``pairs.filter_pairs``), the held-out split, and the kept pairs per
    principle and mechanism; steps numbered in order."""
    funnel = [
        {
            "step": 0,
            "filter": "comparisons",
            "rows_in": responses + revisions,
            "rows_out": len(candidates) + len(constructed),
            "dropped": 0,
            "reason": f"{responses} responses and {revisions} final revisions paired into "
            f"{len(candidates)} labelled comparisons"
            + "".join(
                f" and {n} {name} pairs decided by checks"
                for kind, name in (
                    ("best_worst", "best-vs-worst"),
                    ("code_revision", "code-revision"),
                    ("contrast", "contrast (by construction)"),
                    ("refusal_negative", "over-refusal negative"),
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
    return funnel
