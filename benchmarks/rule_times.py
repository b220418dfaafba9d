"""Wall time and peak memory of each rule of a finished run, from Snakemake's `benchmark:` files.

snakemake --cores 1 stage1_model && python benchmarks/rule_times.py > benchmarks/results/rule_times.md

`--manifests RESULTS` adds what the jobs' manifests measured (generated tokens/s of each generation shard,
DPO steps/s); `--gpu-memory FILE` the peak of a memory trace sampled by nvidia-smi (MiB, one per line), as
benchmarks/gpu_smoke.sh records it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def job_times(folder: Path) -> list[str]:
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path) as handle:
            record = list(csv.DictReader(handle, delimiter="\t"))[-1]
        rows.append((str(path.relative_to(folder)).removesuffix(".tsv"), float(record["s"]), float(record["max_rss"])))
    if not rows:
        sys.exit(f"no benchmark files under {folder}; run the workflow first")
    lines = ["| job | wall time (s) | peak RSS (MB) |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.1f} | {rss:.0f} |" for name, seconds, rss in rows]
    lines.append(f"| **sum of jobs** | **{sum(r[1] for r in rows):.1f}** | |")
    return lines


def manifest_rates(results: Path) -> list[str]:
    """Throughput the model jobs recorded in their manifests."""
    lines = ["| manifest | rule | seconds | generated tokens/s | DPO steps/s |", "|---|---|---:|---:|---:|"]
    for path in sorted(results.glob("*/manifests/*.json")):
        record = json.loads(path.read_text())
        tokens, seconds = record.get("generated_tokens"), record.get("generation_seconds")
        rate = f"{tokens / seconds:.1f}" if tokens and seconds else ""
        steps = record.get("steps_per_s")
        lines.append(
            f"| {path.parent.parent.name}/{path.stem} | {record.get('rule', '')} | {record.get('seconds', '')} | "
            f"{rate} | {steps if steps is not None else ''} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=REPO / "results/benchmarks")
    parser.add_argument("--manifests", type=Path, help="a run's results/ folder")
    parser.add_argument("--gpu-memory", type=Path, help="nvidia-smi memory trace, MiB per line")
    parser.add_argument("--title", help="a heading for the report")
    args = parser.parse_args()
    lines = [f"# {args.title}", ""] if args.title else []
    lines += job_times(args.folder)
    if args.manifests:
        lines += ["", *manifest_rates(args.manifests)]
    if args.gpu_memory:
        trace = [int(v) for v in args.gpu_memory.read_text().split() if v.strip().isdigit()]
        lines += ["", f"Peak GPU memory: {max(trace) if trace else 'n/a'} MiB ({len(trace)} samples)."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
