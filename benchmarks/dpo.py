"""DPO on CPU at the default settings: optimizer steps/s and peak memory, against TRL's own CPU defaults,
measured in the same run: TRL scores every position through the fused LM head and checkpoints every layer's
activations (its configs default gradient_checkpointing to True); maximalcai scores only the completion
tokens and follows trainer.gradient_checkpointing (false by default). docs/KNOWN_BUGS_AND_FIXES.md has both.
Two precision variants: TRL's bf16 autocast over float32 weights, and trainer.cpu_dtype's bf16 base weights
(what auto picks on a CPU with native bf16); the last two rows differ only in the allocator: glibc's own, or
glibc keeping freed memory (hardware.allocator, as the workflow sets it for every job).

Each variant trains in its own process, so peak RSS is per variant. ``--variants`` picks some by their position
in VARIANTS (the first picked is the baseline the speed-ups are against); ``--sft`` runs the SFT warm-up on that
table first, as the workflow's train_dpo does (``wall_seconds_with_load``: both phases and the model load;
``dpo_seconds``: DPO alone).

    python benchmarks/dpo.py --threads 1 --out benchmarks/results/dpo.json
    python benchmarks/dpo.py --threads 2 --variants 4 5 --pairs results/stage1/pairs.parquet \
        --sft results/stage1/sft.parquet --out X.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pairs_file(folder: Path, real: Path | None = None) -> Path:
    """The default run's pairs (``real``, else results/stage1/pairs.parquet) when present, else 16 synthetic pairs
    of similar length."""
    from maximalcai import tables
    from maximalcai.tiny import pair_row

    real = real or REPO / "results/stage1/pairs.parquet"
    if real.is_file():
        return real
    rows = []
    for i in range(16):
        rows.append(
            pair_row(
                i,
                f"### Instruction:\nExplain topic {i} in a few sentences.\n\n### Response:\n",
                " ".join(["A clear, correct sentence about the topic."] * 4),
                " ".join(["Something vague."] * 6),
            )
        )
    path = folder / "pairs.parquet"
    tables.write_table(rows, path, "pairs")
    return path


OURS = (
    "completion tokens only, no checkpointing, trainer.cpu_dtype auto, glibc keeping freed memory, the frozen head "
    "cast once (maximalcai)"
)
# variant -> (score only the completion tokens, gradient checkpointing, trainer.cpu_dtype, TRL's bf16 autocast,
# hardware.allocator, the backward's frozen head cast to float32 once); the first is the baseline. On a CPU
# without native bf16, auto is float32.
VARIANTS = {
    "TRL's CPU defaults (all positions, checkpointing)": (False, True, "float32", False, "system", False),
    "completion tokens only, checkpointing": (True, True, "float32", False, "system", False),
    "completion tokens only, no checkpointing, float32": (True, False, "float32", False, "system", False),
    "the same, under TRL's bf16 autocast (float32 weights)": (True, False, "float32", True, "system", False),
    "completion tokens only, no checkpointing, trainer.cpu_dtype auto, glibc's own allocator": (
        True,
        False,
        "auto",
        False,
        "system",
        False,
    ),
    OURS: (True, False, "auto", False, "keep_freed", True),
    "the same, the backward casting the head per call (TRL's own)": (True, False, "auto", False, "keep_freed", False),
}


def child_environment(variant: str) -> dict[str, str]:
    """The child's environment: glibc's defaults, or what the Snakefile gives every job (hardware.allocator)."""
    from maximalcai.allocator import job_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return {**env, **job_environment(VARIANTS[variant][4], env)}


def train_variant(variant: str, pairs, work, dpo_callbacks=(), sft: str | None = None):
    """``train_stage``'s DPO phase alone on the default config's stage-1 settings, as ``variant`` sets them;
    returns its (log rows, summary). Also what benchmarks/limits.py profiles."""
    from maximalcai import patches
    from maximalcai.config import load_config_file
    from maximalcai.hardware import Hardware
    from maximalcai.training import dpo
    from maximalcai.training.settings import Trainer, Training

    compact, checkpointing, cpu_dtype, autocast, _, head_once = VARIANTS[variant]
    if not compact:
        patches.trl_scoring.score_only_completions_on_cpu = lambda: False  # keep TRL's behaviour
    if not head_once:
        patches.trl_scoring.frozen_head_in_float32_once = lambda: False
    cfg = load_config_file(REPO / "config.yaml")
    cfg["trainer"].update(gradient_checkpointing=checkpointing, cpu_dtype=cpu_dtype)
    section = copy.deepcopy(cfg["stages"][0]["training"])
    section["trl_args"] = {"bf16": True} if autocast else {}
    section["sft_warmup"]["enabled"] = bool(sft)  # without a table, the DPO phase alone is measured
    settings = Training.from_section(section)
    cfg["trainer"]["save_steps"] = 10_000
    return dpo.train_stage(
        Hardware.from_section(cfg["hardware"]),
        Trainer.from_section(cfg["trainer"]),
        settings,
        "stage1",
        str(REPO / "results/models/base"),
        pairs,
        None,
        f"{work}/adapter",
        f"{work}/checkpoints",
        sft_path=sft,
        seed=cfg["seed"],
        dpo_callbacks=dpo_callbacks,
    )


def child(variant: str, threads: int, pairs: str, work: str, sft: str) -> None:
    import torch

    torch.set_num_threads(threads)
    import trl.trainer.utils as trl_utils

    from maximalcai.allocator import keeps_freed_memory

    start = time.perf_counter()
    rows, summary = train_variant(variant, pairs, work, sft=sft if sft != "-" else None)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "variant": variant,
                "threads": threads,
                "train_pairs": summary["train_pairs"],
                "steps": summary["steps"],
                "dpo_seconds": summary["dpo_seconds"],
                "sft_examples": summary["sft_examples"],
                "sft_seconds": summary["sft_seconds"],
                "steps_per_s": summary["steps_per_s"],
                "wall_seconds_with_load": round(seconds, 1),
                "compact": getattr(trl_utils._use_triton, "maximalcai_cpu_compact", False),
                "weights_dtype": summary["weights_dtype"],
                "final_loss": summary["final"].get("loss"),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "keeps_freed_memory": keeps_freed_memory(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/dpo.json"))
    parser.add_argument("--variants", type=int, nargs="+", help="positions in VARIANTS (default: all)")
    parser.add_argument("--pairs", type=Path, help="a pairs table (default: results/stage1/pairs.parquet)")
    parser.add_argument("--sft", type=Path, help="an SFT table: its warm-up runs first, and is timed")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, threads, pairs, work, sft = args.child
        child(variant, int(threads), pairs, work, sft)
        return
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = pairs_file(Path(tmp), args.pairs and args.pairs.resolve())
        sft = str(args.sft.resolve()) if args.sft else "-"
        names = list(VARIANTS)
        chosen = [names[i] for i in (args.variants or range(len(names)))]
        for threads in args.threads:
            for variant in chosen:
                work = Path(tmp) / f"{threads}-{len(results)}"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", variant, str(threads), str(pairs), str(work), sft],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=child_environment(variant),
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(result)
                print(
                    f"threads={threads} {variant:80s} {result['steps']} steps in {result['dpo_seconds']} s "
                    f"({result['steps_per_s']} steps/s), peak RSS {result['peak_rss_mb']} MB",
                    flush=True,
                )
        for threads in args.threads:
            runs = [r for r in results if r["threads"] == threads]
            for run in runs[1:]:
                run["speedup_vs_trl_default"] = round(run["steps_per_s"] / runs[0]["steps_per_s"], 2)
                print(f"threads={threads} {run['variant']:80s} {run['speedup_vs_trl_default']}x the first variant")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"pairs": str(pairs), "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
