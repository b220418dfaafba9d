"""Peak memory of generation on long prompts: is it bounded by configuration, whatever the prompts' lengths?

A batch's prefill computes rows x prompt tokens x cache slots attention scores (and the masks beside them):
at ``generation.batch_size: 64`` a public benchmark's 8,665-character prompt among others drove the process to
19 GB. ``generation.prefill_cells`` bounds that product, and ``generation.cache_slots`` the KV cache of the rows
decoding together (rows x widest prompt and answer). This script measures the peak resident memory of
``--count`` prompts of 50 to 8,000 characters (log-uniform, seeded; text from the repository's pools, each a
few-shot-free completion prompt) answered at ``--batch-size``, once per pair of bounds, each in a fresh process.

    python benchmarks/memory.py --base results/models/base --bounds 16000000:65536 0:0 \\
        --out benchmarks/results/memory.json

``--bounds CELLS:SLOTS``; 0 is no bound (``0:0`` is the backend before the bounds). A watchdog ends a
measurement that passes ``--max-gb`` (so the unbounded case cannot take the machine down), and reports it as
over that figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def long_prompts(count: int, shortest: int, longest: int, seed: int) -> list[str]:
    """``count`` completion prompts whose instructions run from ``shortest`` to ``longest`` characters."""
    from maximalcai import formats

    words = []
    for path in sorted((REPO / "resources/pools").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            words += f"{row.get('instruction', '')} {row.get('response', '')}".split()
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        size = round(math.exp(rng.uniform(math.log(shortest), math.log(longest))))
        start = rng.randrange(len(words))
        text = " ".join(words[start:] + words[:start])[:size]
        prompts.append(formats.prompt(text))
    return prompts


def resident_gib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def watchdog(limit_gib: float) -> None:
    def watch():
        while True:
            if resident_gib() > limit_gib:
                print(json.dumps({"over_gib": limit_gib}), flush=True)
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def measure(base: Path, bounds: str, args) -> dict:
    """One measurement, in this process (the parent runs each in its own)."""
    from maximalcai.backends import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend
    from maximalcai.hardware import resolve_dtype

    watchdog(args.max_gb)
    prompts = long_prompts(args.count, args.shortest, args.longest, args.seed)
    cells, slots = (int(x) or None for x in bounds.split(":"))
    backend = TransformersBackend(
        base, dtype=resolve_dtype("auto", "cpu"), batch_size=args.batch_size, prefill_cells=cells, cache_slots=slots
    )
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tokens = [len(backend.tokenizer(p)["input_ids"]) for p in prompts]
    start = time.perf_counter()
    completions = backend.generate(prompts, Sampling(temperature=0.0, max_new_tokens=args.new_tokens), seed=0)
    return {
        "prefill_cells": cells,
        "cache_slots": slots,
        "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "after_load_gib": round(loaded, 2),
        "seconds": round(time.perf_counter() - start, 1),
        "prefills": backend.prefills,
        "prompt_tokens": {"min": min(tokens), "median": sorted(tokens)[len(tokens) // 2], "max": max(tokens)},
        "answers": [c.text for c in completions],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=REPO / "results/models/base", help="the imported base model")
    parser.add_argument("--bounds", nargs="+", default=["16000000:65536", "0:0"], help="CELLS:SLOTS; 0: none")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--shortest", type=int, default=50, help="characters")
    parser.add_argument("--longest", type=int, default=8000, help="characters")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-gb", type=float, default=16.0, help="end a measurement past this resident size")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.base, args.one, args)), flush=True)
        return 0

    from maximalcai.manifest import result_stamp

    rows = []
    for bounds in args.bounds:
        command = [sys.executable, __file__, "--one", bounds, "--base", str(args.base), "--count", str(args.count)]
        command += ["--shortest", str(args.shortest)]
        command += ["--longest", str(args.longest), "--batch-size", str(args.batch_size)]
        command += ["--new-tokens", str(args.new_tokens), "--seed", str(args.seed), "--max-gb", str(args.max_gb)]
        result = subprocess.run(command, capture_output=True, text=True)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit(f"measurement failed:\n{result.stderr[-3000:]}")
        row = lines[-1] if "over_gib" not in lines[-1] else {"bounds": bounds, **lines[-1]}
        rows.append(row)
        peak = f"over {row['over_gib']} GiB (stopped)" if "over_gib" in row else f"{row['peak_gib']} GiB"
        timing = f"{row.get('seconds', '-')} s, {row.get('prefills', '-')} prefills"
        print(f"bounds {bounds} (prefill cells:cache slots): peak {peak}, {timing}")
    finished = [r for r in rows if "answers" in r]
    same = len({json.dumps(r["answers"]) for r in finished}) == 1 if len(finished) > 1 else None
    print(f"greedy answers identical across the finished measurements: {same}")
    if args.out:
        result = {
            "command": "python benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            **result_stamp(REPO),
            "count": args.count,
            "characters": [args.shortest, args.longest],
            "batch_size": args.batch_size,
            "answers_identical": same,
            "rows": [{k: v for k, v in r.items() if k != "answers"} for r in rows],
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
