"""One stage's evaluate output as a markdown table: each model's mean and the stage's paired differences with the
base model and base_fewshot (95% interval, verdict), for the ablations' headline metrics.

    python benchmarks/metrics_table.py results/stage1/eval/metrics.json > benchmarks/results/TABLE.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import HEADLINE  # noqa: E402

SHOWN = (*HEADLINE, "false_correction_rate", "unsafe_rate", "length_tokens")


def indexed(metrics: dict) -> tuple[str, dict, dict]:
    """(stage, (model, metric) -> mean, (metric, baseline) -> comparison) of an evaluate output."""
    means = {(s["model"], s["metric"]): s["mean"] for s in metrics["summary"]}
    return metrics["stage"], means, {(c["metric"], c["baseline"]): c for c in metrics["comparisons"]}


def table(metrics: dict) -> str:
    stage, means, diffs = indexed(metrics)
    lines = [
        f"| metric | base | base_fewshot | {stage} | {stage} - base | {stage} - base_fewshot |",
        "|---|---:|---:|---:|---|---|",
    ]
    for metric in SHOWN:
        if (stage, metric) not in means:
            continue
        cells = [f"{means.get((m, metric), float('nan')):.3f}" for m in ("base", "base_fewshot", stage)]
        for baseline in ("base", "base_fewshot"):
            c = diffs.get((metric, baseline))
            cells.append(f"{c['estimate']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] {c['verdict']}" if c else "")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())), end="")
