"""Pairs by construction from one contrast table, with and without written over-refusals (issue 28).

``contrast.balance`` sets how many answer-the-question requests there are per refusing one, but DPO sees pairs:
a benign request makes a pair only when some answer to it refuses (the rejected side). A small model seldom
refuses a benign request even after examples that do, so without a stand-in many benign requests made no pair
and the pairs leaned towards refusing. This script pairs one contrast table (``results/<stage>/contrast.parquet``)
both ways - without the written over-refusals (the baseline: the recipe before them) and with them - and prints
the answering pairs per refusing pair against the balance the config asked for; with ``--cap R``, also with
them and the answering pairs capped at R per refusing pair (``pairs.contrast_balance``). The table must hold the
written over-refusals (made with ``contrast.written: true``, or a list naming ``rejected``).

    python benchmarks/contrast_balance.py --contrast results/stage1/contrast.parquet --cap 1.5 \
        --out benchmarks/results/contrast_balance.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maximalcai.constitution import Labellings

REPO = Path(__file__).resolve().parents[1]
ANSWERING = "answer-the-question"  # its written over-refusals (constitution.yaml) are the lever measured


def pair_sides(rows: list[dict], principles: Labellings, max_repetition: float, cap: float | None = None) -> dict:
    """Pairs of one table: answering (chosen answers) and refusing (chosen refuses), and the answering
    principle's funnel counts; ``cap``: the answering pairs capped as pairs.contrast_balance does."""
    from maximalcai.contrast import answering_principles, balance_contrast, contrast_pairs

    pairs, _, counts = contrast_pairs(rows, principles, max_repetition, "stage")
    if cap is not None:
        capped = balance_contrast(pairs, cap, answering_principles(principles))
        counts.setdefault(ANSWERING, {})["capped"] = len(pairs) - len(capped)
        pairs = capped
    chosen = {pid: spec.chosen for pid, spec in principles.constructions().items()}
    sides = Counter(chosen[p["principle_ids"][0]] for p in pairs)
    return {
        "pairs": len(pairs),
        "answer_pairs": sides["answers"],
        "refusal_pairs": sides["refuses"],
        "answer_per_refusal": round(sides["answers"] / sides["refuses"], 3) if sides["refuses"] else None,
        ANSWERING: counts.get(ANSWERING, {}),
    }


def balance_of(rows: list[dict], principles: Labellings, max_repetition: float, cap: float | None = None) -> dict:
    """Both ways on one table: ``without`` drops the answering principle's written rows (the baseline); with
    ``cap``, a third: with them, the answering pairs capped (pairs.contrast_balance)."""
    baseline = [r for r in rows if not (r["principle_id"] == ANSWERING and r["framing"] == "written")]
    requests = {(r["principle_id"], r["request_id"]) for r in rows}
    answering = sum(pid == ANSWERING for pid, _ in requests)
    ways = {
        "requests": {"answering": answering, "refusing": len(requests) - answering},
        "without_written_overrefusals": pair_sides(baseline, principles, max_repetition),
        "with_written_overrefusals": pair_sides(rows, principles, max_repetition),
    }
    if cap is not None:
        ways["with_written_overrefusals_capped"] = pair_sides(rows, principles, max_repetition, cap) | {"cap": cap}
    return ways


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--contrast", type=Path, required=True, help="a contrast table (results/<stage>/contrast.parquet)"
    )
    parser.add_argument("--constitution", type=Path, default=REPO / "constitution.yaml")
    parser.add_argument("--max-repetition", type=float, default=0.2, help="pairs.verifiable.max_repetition")
    parser.add_argument("--cap", type=float, help="also pair with the answering pairs capped at this ratio")
    parser.add_argument("--source", default="", help="where the table came from (run, config, commit): recorded")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)

    from maximalcai import tables
    from maximalcai.constitution import Labellings, load_constitution
    from maximalcai.manifest import result_stamp

    rows = tables.read_table(args.contrast, "contrast")
    principles = Labellings.of(load_constitution(args.constitution))
    result = {
        "command": "python benchmarks/contrast_balance.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **result_stamp(REPO),
        "source": args.source,
        **balance_of(rows, principles, args.max_repetition, args.cap),
    }
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.write_text(json.dumps(result, indent=1) + "\n")
    asked = result["requests"]["answering"] / max(1, result["requests"]["refusing"])
    for way in [k for k in result if k.startswith(("without_", "with_"))]:
        side = result[way]
        print(
            f"{way}: {side['answer_pairs']} answering / {side['refusal_pairs']} refusing pairs = "
            f"{side['answer_per_refusal']} (requests: {asked:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
