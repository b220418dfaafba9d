"""Two runs of one stage, compared prompt by prompt: is the new recipe's stage measurably different from the old?

Each run's `results/<stage>/eval/per_prompt.parquet` holds every model's value per prompt and metric. This
script pairs the stage's values in run NEW and run OLD on the prompts both evaluated and gives the 95% interval
of the paired difference with the project's own statistics (`evaluation.stats.paired_difference`: Newcombe for
0/1 metrics, paired t otherwise) and its verdict. It also prints both runs' base and base_fewshot figures, so
one table carries the four-way comparison (base, base_fewshot, old stage, new stage).

    python benchmarks/compare_runs.py --new W_NEW --old W_OLD --stage stage1 \
        --out benchmarks/results/constitution_vs_recipe.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]

from ablations import HEADLINE  # noqa: E402

from maximalcai import tables  # noqa: E402
from maximalcai.evaluation.evaluate import METRICS  # noqa: E402
from maximalcai.evaluation.stats import paired_difference, verdict  # noqa: E402

SHOWN = (*HEADLINE, "false_correction_rate", "unsafe_rate", "length_tokens")  # + honesty's controls, the guard, length


def values(workdir: Path, stage: str) -> dict[tuple[str, str], dict[str, float]]:
    """(model, metric) -> prompt id -> value, from a run's per-prompt table."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in tables.read_table(workdir / f"results/{stage}/eval/per_prompt.parquet", "eval_scores"):
        out.setdefault((row["model"], row["metric"]), {})[row["item_id"]] = row["value"]
    return out


def mean(got: dict[str, float], items: list[str]) -> str:
    shared = [got[i] for i in items if i in got]
    return f"{sum(shared) / len(shared):.3f}" if shared else "n/a"


def compare(new: Path, old: Path, stage: str, new_name: str, old_name: str) -> tuple[list[dict], str]:
    ours, theirs = values(new, stage), values(old, stage)
    models = f"| base | base_fewshot | {old_name} | {new_name} | {new_name} - {old_name} |"
    rows, lines = [], [f"| metric | prompts {models} verdict |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for metric in SHOWN:
        a, b = ours.get((stage, metric), {}), theirs.get((stage, metric), {})
        common = sorted(set(a) & set(b))
        if not common:
            continue
        interval = paired_difference([a[i] for i in common], [b[i] for i in common])
        higher = METRICS[metric][1]
        judged = verdict(interval.low, interval.high, 0.0, higher)

        row = {
            "metric": metric,
            "prompts": len(common),
            "base": mean(ours.get(("base", metric), {}), common),
            "base_fewshot": mean(ours.get(("base_fewshot", metric), {}), common),
            "old": mean(b, common),
            "new": mean(a, common),
            "estimate": interval.estimate,
            "low": interval.low,
            "high": interval.high,
            "verdict": judged,
        }
        rows.append(row)
        lines.append(
            f"| {metric} | {len(common)} | {row['base']} | {row['base_fewshot']} | {row['old']} | {row['new']} | "
            f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}] | {judged} |"
        )
    return rows, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=Path, required=True, help="workdir of the new recipe's run")
    parser.add_argument("--old", type=Path, required=True, help="workdir of the run it is compared with")
    parser.add_argument("--stage", default="stage1")
    parser.add_argument("--new-name", default="new")
    parser.add_argument("--old-name", default="old")
    parser.add_argument("--out", type=Path, help="markdown table; a .json of the same name holds the figures")
    args = parser.parse_args()
    rows, text = compare(args.new, args.old, args.stage, args.new_name, args.old_name)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"stage": args.stage, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
