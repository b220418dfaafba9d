"""Refusals in a stage's training data (issue 28): how many pairs choose or reject a refusal, by kind, and how
many SFT examples are refusals, by source, with the same refusal check the eval uses (``verifiable.is_refusal``).

A stage whose data chooses refusals on one kind of prompt and never rejects them on another teaches the model to
refuse by the look of a refusal, not by the request: the AMD run's stage 1 (contrast pairs choosing 120 refusals of
harmful requests, no everyday task with a refusal rejected) refused a third of the helpful eval prompts in its
refusal template. This script reads ``results/<stage>/pairs.parquet`` and ``sft.parquet`` of one or more runs and
prints the counts side by side, so a recipe change shows what it did to the data before any training.

    python benchmarks/refusals_in_data.py --run amd=/tmp/full3/results --run negatives=/tmp/full4/results \
        --stage stage1 --out benchmarks/results/refusals_in_data_stage1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def counts(results: Path, stage: str) -> dict:
    """Refusal counts of one run's stage: pairs by kind and split (chosen, rejected), SFT rows by source."""
    from maximalcai import tables, verifiable

    pairs = tables.read_table(str(results / stage / "pairs.parquet"), "pairs")
    sft = tables.read_table(str(results / stage / "sft.parquet"), "sft_examples")
    by_kind: dict[str, Counter] = {}
    train = Counter()
    for pair in pairs:
        chosen, rejected = verifiable.is_refusal(pair["chosen"]), verifiable.is_refusal(pair["rejected"])
        tally = by_kind.setdefault(pair["kind"], Counter())
        tally.update(pairs=1, train=pair["split"] == "train", chosen_refuses=chosen, rejected_refuses=rejected)
        if pair["split"] == "train":
            train.update(pairs=1, chosen_refuses=chosen, rejected_refuses=rejected)
    by_source: dict[str, Counter] = {}
    for row in sft:
        refuses = verifiable.is_refusal(row["completion"])
        by_source.setdefault(row["source"], Counter()).update(examples=1, refuses=refuses)
    return {
        "pairs": {k: dict(v) for k, v in sorted(by_kind.items())},
        "sft": {k: dict(v) for k, v in sorted(by_source.items())},
        "train_pairs": train["pairs"],
        "train_chosen_refuses": train["chosen_refuses"],
        "train_rejected_refuses": train["rejected_refuses"],
        "sft_examples": len(sft),
        "sft_refuses": sum(v["refuses"] for v in by_source.values()),
    }


def markdown(runs: dict[str, dict], stage: str) -> str:
    names = list(runs)
    lines = [
        f"Refusals in the training data of {stage} (`verifiable.is_refusal`, the eval's check)",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows = [
        ("DPO train pairs", lambda r: r["train_pairs"]),
        ("train pairs choosing a refusal", lambda r: r["train_chosen_refuses"]),
        ("train pairs rejecting a refusal", lambda r: r["train_rejected_refuses"]),
        ("SFT examples", lambda r: r["sft_examples"]),
        ("SFT examples that refuse", lambda r: r["sft_refuses"]),
    ]
    kinds = sorted({k for r in runs.values() for k in r["pairs"]})
    for kind in kinds:
        rows.append(
            (
                f"{kind} pairs (chosen / rejected refuses)",
                lambda r, k=kind: "{pairs} ({chosen_refuses} / {rejected_refuses})".format(
                    **({"pairs": 0, "chosen_refuses": 0, "rejected_refuses": 0} | r["pairs"].get(k, {}))
                ),
            )
        )
    sources = sorted({k for r in runs.values() for k in r["sft"]})
    for source in sources:
        rows.append(
            (
                f"SFT {source} (refuse)",
                lambda r, s=source: "{examples} ({refuses})".format(
                    **({"examples": 0, "refuses": 0} | r["sft"].get(s, {}))
                ),
            )
        )
    lines += [f"| {label} | " + " | ".join(str(value(runs[n])) for n in names) + " |" for label, value in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", action="append", required=True, help="NAME=RESULTS: a name and a run's results folder"
    )
    parser.add_argument("--stage", default="stage1")
    parser.add_argument("--source", default="", help="where the runs came from (config, commit): recorded")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (a .md table beside it)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    runs = {}
    for item in args.run:
        name, _, folder = item.partition("=")
        if not folder:
            parser.error(f"--run {item!r}: expected NAME=RESULTS, e.g. new=results")
        runs[name] = counts(Path(folder), args.stage)
    from maximalcai.manifest import result_stamp

    record = {
        "command": "python benchmarks/refusals_in_data.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **result_stamp(REPO),
        "stage": args.stage,
        "source": args.source,
        "runs": runs,
    }
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(runs, args.stage)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
