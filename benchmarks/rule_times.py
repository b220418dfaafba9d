"""Wall time and peak memory of each rule of a finished run, from Snakemake's `benchmark:` files.

snakemake --cores 1 stage1_model && python benchmarks/rule_times.py > benchmarks/results/rule_times.md

`--manifests RESULTS` adds what the jobs' manifests measured (generated tokens/s of each generation shard,
DPO steps/s); `--gpu-memory FILE` the peak of a memory trace sampled by nvidia-smi (MiB, one per line), as
benchmarks/gpu_smoke.sh records it. `--json OUT` also writes the figures as a results file stamped with the
run's commit, the machine kind and the date, which the docs' tables are drawn from (benchmarks/doc_tables.py,
kinds `times` and `walls`); `--time FILE` adds the whole command's wall time and peak memory from
`/usr/bin/time -v`'s report in FILE:

    /usr/bin/time -v snakemake --cores 1 stage1_model 2> run.log
    python benchmarks/rule_times.py --time run.log --command "snakemake --cores 1 stage1_model" \
        --manifests results --json benchmarks/results/times_default.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def jobs(folder: Path) -> list[dict]:
    """Each job's wall time and peak memory, from its benchmark file."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path) as handle:
            record = list(csv.DictReader(handle, delimiter="\t"))[-1]
        job = str(path.relative_to(folder)).removesuffix(".tsv")
        rows.append({"job": job, "seconds": float(record["s"]), "peak_rss_mb": round(float(record["max_rss"]))})
    if not rows:
        sys.exit(f"no benchmark files under {folder}; run the workflow first")
    return rows


def job_times(rows: list[dict]) -> list[str]:
    lines = ["| job | wall time (s) | peak RSS (MB) |", "|---|---:|---:|"]
    lines += [f"| {r['job']} | {r['seconds']:.1f} | {r['peak_rss_mb']} |" for r in rows]
    lines.append(f"| **sum of jobs** | **{sum(r['seconds'] for r in rows):.1f}** | |")
    return lines


def rates(results: Path) -> list[dict]:
    """Throughput the model jobs recorded in their manifests."""
    rows = []
    for path in sorted(results.glob("*/manifests/*.json")):
        record = json.loads(path.read_text())
        tokens, seconds = record.get("generated_tokens"), record.get("generation_seconds")
        rows.append(
            {
                "manifest": f"{path.parent.parent.name}/{path.stem}",
                "rule": record.get("rule", ""),
                "seconds": record.get("seconds"),
                "generated_tokens_per_s": round(tokens / seconds, 1) if tokens and seconds else None,
                "steps_per_s": record.get("steps_per_s"),
                "keeps_freed_memory": record.get("keeps_freed_memory"),
            }
        )
    return rows


def manifest_rates(rows: list[dict]) -> list[str]:
    lines = ["| manifest | rule | seconds | generated tokens/s | DPO steps/s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        cells = [r["manifest"], r["rule"], r["seconds"], r["generated_tokens_per_s"], r["steps_per_s"]]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return lines


def whole_command(report: Path) -> dict:
    """Wall seconds and peak RSS (kbytes) of the whole command from /usr/bin/time -v's report."""
    found = {}
    for line in report.read_text(errors="replace").splitlines():
        if "Elapsed (wall clock) time" in line:
            clock = [float(part) for part in line.rsplit(" ", 1)[1].split(":")]
            found["wall_seconds"] = round(sum(v * 60**i for i, v in enumerate(reversed(clock))), 1)
        elif "Maximum resident set size (kbytes)" in line:
            found["peak_rss_kb"] = int(line.rsplit(":", 1)[1])  # as /usr/bin/time reports it
    if set(found) != {"wall_seconds", "peak_rss_kb"}:
        sys.exit(f"{report}: no /usr/bin/time -v report in it (run the command as /usr/bin/time -v COMMAND)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=REPO / "results/benchmarks")
    parser.add_argument("--manifests", type=Path, help="a run's results/ folder")
    parser.add_argument("--gpu-memory", type=Path, help="nvidia-smi memory trace, MiB per line")
    parser.add_argument("--title", help="a heading for the report")
    parser.add_argument("--time", type=Path, help="/usr/bin/time -v's report of the whole command")
    parser.add_argument("--command", help="the command that was timed, for --json")
    parser.add_argument("--json", type=Path, help="also write the figures here, stamped (commit, machine, date)")
    args = parser.parse_args()
    lines = [f"# {args.title}", ""] if args.title else []
    rows = jobs(args.folder)
    lines += job_times(rows)
    measured = rates(args.manifests) if args.manifests else []
    if args.manifests:
        lines += ["", *manifest_rates(measured)]
    whole = whole_command(args.time) if args.time else {}
    if args.json:
        from maximalcai.manifest import result_stamp

        record = {"title": args.title, "command": args.command, **result_stamp(args.folder.resolve().parents[1])}
        record |= {**whole, "sum_of_jobs_seconds": round(sum(r["seconds"] for r in rows), 1)}
        record |= {"jobs": rows, "manifests": measured}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if args.gpu_memory:
        trace = [int(v) for v in args.gpu_memory.read_text().split() if v.strip().isdigit()]
        lines += ["", f"Peak GPU memory: {max(trace) if trace else 'n/a'} MiB ({len(trace)} samples)."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
