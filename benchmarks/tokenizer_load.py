"""What loading the base model's tokenizer costs each model job: AutoTokenizer against models.load_tokenizer.

Every job that generates, scores or trains loads the tokenizer of ``results/models/base`` once. For the embedded
Gemma, AutoTokenizer parses its 31 MB tokenizer.json in Python and rebuilds the vocabulary; ``load_tokenizer``
builds it from the file (``models.DIRECT_TOKENIZERS``, docs/KNOWN_BUGS_AND_FIXES.md). Each load is timed in a fresh
process after transformers' import, as a job pays it, the two alternated ``--repeat`` times; their ids are compared
on every resource text.

    python benchmarks/tokenizer_load.py --model results/models/base --out benchmarks/results/tokenizer_load.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resource_texts() -> list[str]:
    """Every string field of the project's JSONL resources: what the jobs tokenize."""
    texts = []
    for path in sorted((REPO / "resources").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            texts += [v for v in json.loads(line).values() if isinstance(v, str)] if line.strip() else []
    return texts


LOAD = """
import json, sys, time
import transformers  # imported before the clock starts: every job imports it anyway
from maximalcai.models import load_tokenizer
start = time.perf_counter()
if sys.argv[1] == "auto_tokenizer":
    transformers.AutoTokenizer.from_pretrained(sys.argv[2])
else:
    load_tokenizer(sys.argv[2])
print(json.dumps(time.perf_counter() - start))
"""


def load_seconds(loader: str, model: Path) -> float:
    """One load in a fresh process, as a job pays it (transformers already imported)."""
    result = subprocess.run([sys.executable, "-c", LOAD, loader, str(model)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"loading {model} with {loader} failed:\n{result.stderr[-2000:]}")
    return round(json.loads(result.stdout.strip().splitlines()[-1]), 3)


def measure(model: Path, repeat: int) -> dict:
    from transformers import AutoTokenizer

    from maximalcai.models import load_tokenizer

    seconds: dict[str, list[float]] = {"auto_tokenizer": [], "load_tokenizer": []}
    for _ in range(repeat):
        for name in seconds:
            seconds[name].append(load_seconds(name, model))
    auto, direct = AutoTokenizer.from_pretrained(model), load_tokenizer(model)
    texts = resource_texts()
    same = auto(texts)["input_ids"] == direct(texts)["input_ids"]
    mean = {name: statistics.mean(values) for name, values in seconds.items()}
    return {
        "model": str(model),
        "tokenizer_class": type(direct).__name__,
        "seconds": seconds,
        "mean_seconds": {name: round(value, 3) for name, value in mean.items()},
        "speedup": round(mean["auto_tokenizer"] / mean["load_tokenizer"], 2),
        "texts_compared": len(texts),
        "same_ids": same,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("results/models/base"), help="an imported base model")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from maximalcai.manifest import result_stamp

    result = {**result_stamp(REPO)} | measure(args.model, args.repeat)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    means = result["mean_seconds"]
    print(
        f"{result['tokenizer_class']}: AutoTokenizer {means['auto_tokenizer']} s, load_tokenizer "
        f"{means['load_tokenizer']} s ({result['speedup']}x); same ids on {result['texts_compared']} texts: "
        f"{result['same_ids']}"
    )
    return 0 if result["same_ids"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
