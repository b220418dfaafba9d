"""What loading the base model's tokenizer costs each model job: AutoTokenizer against models.load_tokenizer.

Every job that generates, scores or trains loads the tokenizer of ``results/models/base`` once. For the embedded
Gemma, AutoTokenizer parses its 31 MB tokenizer.json in Python and rebuilds the vocabulary; ``load_tokenizer``
builds it from the file (``models.DIRECT_TOKENIZERS``, docs/KNOWN_BUGS_AND_FIXES.md). Both are timed in one
process, alternated ``--repeat`` times after one untimed load of each (imports), and their ids compared on every
resource text.

    python benchmarks/tokenizer_load.py --model results/models/base --out benchmarks/results/tokenizer_load.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resource_texts() -> list[str]:
    """Every string field of the project's JSONL resources: what the jobs tokenize."""
    texts = []
    for path in sorted((REPO / "resources").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            texts += [v for v in json.loads(line).values() if isinstance(v, str)] if line.strip() else []
    return texts


def measure(model: Path, repeat: int) -> dict:
    from transformers import AutoTokenizer

    from maximalcai.models import load_tokenizer

    loaders = {
        "auto_tokenizer": lambda: AutoTokenizer.from_pretrained(model),
        "load_tokenizer": lambda: load_tokenizer(model),
    }
    loaded = {name: load() for name, load in loaders.items()}
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeat):
        for name, load in loaders.items():
            start = time.perf_counter()
            load()
            seconds[name].append(round(time.perf_counter() - start, 3))
    texts = resource_texts()
    same = loaded["auto_tokenizer"](texts)["input_ids"] == loaded["load_tokenizer"](texts)["input_ids"]
    mean = {name: statistics.mean(values) for name, values in seconds.items()}
    return {
        "model": str(model),
        "tokenizer_class": type(loaded["load_tokenizer"]).__name__,
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
