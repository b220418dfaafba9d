"""What a no-op Snakemake call costs, and how much of it is the project's own start-up.

Every Snakemake call (a dry run, `--unlock`, each cluster job, which reads the Snakefile again) pays Python's
start, Snakemake's imports, the Snakefile (this project: config load and validation, the start-of-run checks,
the rule files) and planning the DAG. In a finished run's folder this script times, each the best of
``--repeat`` runs in a fresh process:

- ``python``: the interpreter alone (``python -c pass``);
- ``snakemake_import``: ``import snakemake.cli``;
- ``dry_run``: ``snakemake -n --cores 1 TARGET`` (with ``--configfile``), the whole call;

and, under cProfile in one more process, the seconds spent in the Snakefile's top level (the project's start-up:
its imports, the config, the checks, the rule files) against the whole call.

    python benchmarks/dry_run.py --workdir . --target stage1_model --out benchmarks/results/dry_run.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROFILE = """
import cProfile, json, pstats, sys, time
from snakemake.cli import main
profiler = cProfile.Profile()
start = time.perf_counter()
profiler.enable()
try:
    main(sys.argv[2:])
except SystemExit:
    pass
profiler.disable()
whole = time.perf_counter() - start
stats = pstats.Stats(profiler).stats
own = max((v[3] for (path, _, name), v in stats.items() if path == sys.argv[1] and name == "<module>"), default=0.0)
print(json.dumps({"profiled_seconds": round(whole, 3), "snakefile_seconds": round(own, 3)}))
"""


def best(command: list[str], cwd: Path, repeat: int) -> float:
    """The shortest wall time of ``repeat`` runs of ``command``; a failing run stops the script."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode:
            sys.exit(f"{' '.join(command)} failed in {cwd}:\n{result.stderr[-2000:]}")
    return round(min(times), 3)


def measure(workdir: Path, target: str, configfiles: list[str], repeat: int, snakefile: Path) -> dict:
    arguments = ["-s", str(snakefile), "-n", "--cores", "1", target]
    if configfiles:
        arguments += ["--configfile", *configfiles]
    python = sys.executable
    profiled = subprocess.run(
        [python, "-c", PROFILE, str(snakefile), *arguments], cwd=workdir, capture_output=True, text=True
    )
    if profiled.returncode:
        sys.exit(f"the profiled dry run failed:\n{profiled.stderr[-2000:]}")
    return {
        "target": target,
        "configfiles": configfiles,
        "python": best([python, "-c", "pass"], workdir, repeat),
        "snakemake_import": best([python, "-c", "import snakemake.cli"], workdir, repeat),
        "dry_run": best([python, "-m", "snakemake", *arguments], workdir, repeat),
        **json.loads(profiled.stdout.strip().splitlines()[-1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished run's folder (its results/)")
    parser.add_argument("--target", default="stage1_model")
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--snakefile", type=Path, default=REPO / "Snakefile")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from maximalcai.manifest import result_stamp

    result = {**result_stamp(args.snakefile.resolve().parent), "workdir": str(args.workdir)}  # the measured checkout
    result |= measure(args.workdir.resolve(), args.target, args.configfile, args.repeat, args.snakefile.resolve())
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"dry run {result['dry_run']} s: python {result['python']} s, snakemake's imports "
        f"{result['snakemake_import']} s; under cProfile the Snakefile's top level took {result['snakefile_seconds']} "
        f"of {result['profiled_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
