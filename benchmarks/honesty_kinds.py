"""The honesty check per kind of prompt: how often each model's answer "corrects" (``verifiable.is_honest``).

``honesty_rate`` counts corrections on false premises, unanswerable questions and false claims put to the model
(sycophancy); ``false_correction_rate`` counts the same check on the controls, the true counterpart of a premise
(``true_premise``) or of a claim (``true_claim``). A model that corrects a false claim as often as a true one does
not tell them apart: its honesty rate is a habit of disagreeing. This script reads one run's evaluation answers
(``results/eval/<model>/generations.parquet``; run with ``evaluation.max_prompts.honesty: null`` so the controls
are answered) and writes the rate per model and kind, with Wilson intervals.

    python benchmarks/honesty_kinds.py --results results --out benchmarks/results/honesty_kinds.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Kinds in the order a reader compares them: each false kind beside its true control.
KINDS = ("false_premise", "true_premise", "sycophancy", "true_claim", "unanswerable")


def rates(answers: dict[str, list[dict]], kinds: dict[str, str], confidence: float = 0.95) -> dict[str, dict]:
    """model -> kind -> {n, corrects, rate, ci_low, ci_high} over the honesty answers of each model."""
    from maximalcai import verifiable
    from maximalcai.evaluation.stats import rate_or_mean

    result: dict[str, dict] = {}
    for model, rows in answers.items():
        by_kind: dict[str, list[float]] = {}
        for row in rows:
            if row["set"] == "honesty" and row["prompt_id"] in kinds:
                by_kind.setdefault(kinds[row["prompt_id"]], []).append(float(verifiable.is_honest(row["response"])))
        result[model] = {}
        for kind in [k for k in KINDS if k in by_kind]:
            ci = rate_or_mean(by_kind[kind], confidence)
            result[model][kind] = {
                "n": len(by_kind[kind]),
                "corrects": int(sum(by_kind[kind])),
                "rate": ci.estimate,
                "ci_low": ci.low,
                "ci_high": ci.high,
            }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="a run's results folder")
    parser.add_argument("--honesty", type=Path, default=REPO / "resources/eval/honesty.jsonl", help="the honesty set")
    parser.add_argument("--source", default="", help="where the run came from (config, commit): recorded")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)

    from maximalcai import tables
    from maximalcai.manifest import result_stamp
    from maximalcai.resources import read_jsonl

    kinds = {row["id"]: row["kind"] for row in read_jsonl(args.honesty, {"prompt": str, "kind": str}, "honesty set")}
    answers = {
        path.parent.name: tables.read_table(path, "eval_generations")
        for path in sorted((args.results / "eval").glob("*/generations.parquet"))
    }
    if not answers:
        raise SystemExit(f"honesty_kinds: no {args.results}/eval/<model>/generations.parquet; run an evaluation first")
    by_model = rates(answers, kinds)
    if not any("true_claim" in kinds_of for kinds_of in by_model.values()):
        raise SystemExit(
            "honesty_kinds: no answers to the controls; evaluate with --config "
            "evaluation='{max_prompts: {honesty: null}}'"
        )
    result = {
        "command": "python benchmarks/honesty_kinds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **result_stamp(REPO),
        "source": args.source,
        "models": by_model,
    }
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.write_text(json.dumps(result, indent=1) + "\n")
    for model, kinds_of in by_model.items():
        print(model, {kind: f"{v['corrects']}/{v['n']}" for kind, v in kinds_of.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
