"""Wall time and peak memory of each rule of a finished run, from Snakemake's `benchmark:` files.

snakemake --cores 1 stage1_model && python benchmarks/rule_times.py > benchmarks/results/rule_times.md
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(folder: Path = REPO / "results/benchmarks") -> None:
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path) as handle:
            record = list(csv.DictReader(handle, delimiter="\t"))[-1]
        rows.append((str(path.relative_to(folder)).removesuffix(".tsv"), float(record["s"]), float(record["max_rss"])))
    if not rows:
        sys.exit(f"no benchmark files under {folder}; run the workflow first")
    print("| job | wall time (s) | peak RSS (MB) |\n|---|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:.0f} |")
    print(f"| **sum of jobs** | **{sum(r[1] for r in rows):.1f}** | |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "results/benchmarks")
