"""Held-out generations of one model, and their safety labels.

The models evaluated: ``base`` (the base model, zero-shot), ``base_fewshot`` (the same base model aligned
in context, URIAL-style: ``evaluation.fewshot_k`` examples from the stage-1 pool before each eval prompt,
no training), and ``stageK`` (the base plus stage K's adapter, zero-shot: the way an assistant is used).
Every answer is greedy by default and cut at the same stop strings. Each table is shared by every
stage's evaluation that compares against it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from maximalcai import formats, tables
from maximalcai.backends import Sampling
from maximalcai.evaluation.sets import load_eval_prompts
from maximalcai.feedback.guard import GuardItem, open_guard, verdict_rows
from maximalcai.manifest import Timer, write_manifest
from maximalcai.prompting import PoolExample, load_pool, response_prompt, shared_draws
from maximalcai.reproducibility import derive_seed

logger = logging.getLogger(__name__)

BASE, BASE_FEWSHOT = "base", "base_fewshot"


def fewshot_draws(prompts, pool: Sequence[PoolExample], k: int, share: int, seed: int) -> list[list[PoolExample]]:
    """The in-context examples of each eval prompt: one seeded draw per ``share`` consecutive prompts, so a
    batch computes their shared prefix once."""
    return shared_draws(pool, k, share, len(prompts), random.Random(derive_seed(seed, "eval", "fewshot")))


def generation_rows(
    backend, prompts, model: str, sampling: Sampling, seed: int, draws: Sequence[Sequence[PoolExample]] | None = None
) -> list[dict]:
    """One row per prompt; with ``draws``, each prompt is preceded by its few-shot examples."""
    if draws is None:
        texts = [formats.prompt(p.prompt) for p in prompts]
        draws = [[] for _ in prompts]
    else:
        texts = [response_prompt(d, p.prompt) for d, p in zip(draws, prompts)]
    completions = backend.generate(texts, sampling, seed)
    return [
        {
            "prompt_id": p.id,
            "set": p.set,
            "model": model,
            "prompt": p.prompt,
            "response": c.text,
            "finish_reason": c.finish_reason,
            "num_tokens": c.num_tokens,
            "fewshot_ids": [e.id for e in d],
            "seed": seed,
            "sampling": tables.canonical_json(sampling.as_dict()),
        }
        for p, c, d in zip(prompts, completions, draws)
    ]


def run_eval_generate(
    cfg: dict, model: str, base_dir: str, adapter_dir: str | None, pool_path: str | None, table: str, manifest: str
) -> None:
    from maximalcai.backends import open_backend

    evaluation = cfg["evaluation"]
    prompts = load_eval_prompts(cfg)
    sampling = Sampling.from_config(evaluation["sampling"])
    seed = derive_seed(cfg["seed"], "eval", "generate")
    draws = None
    if model == BASE_FEWSHOT:
        pool = load_pool(pool_path, min_size=evaluation["fewshot_k"] + 1)
        draws = fewshot_draws(prompts, pool, evaluation["fewshot_k"], evaluation["fewshot_share"], cfg["seed"])
    with Timer() as timer:
        backend = open_backend(cfg, base_dir, adapter_dir)
        rows = generation_rows(backend, prompts, model, sampling, seed, draws)
    tables.write_table(rows, table, "eval_generations")
    stopped = sum(r["finish_reason"] in ("stop", "eos") for r in rows)
    logger.info("%s: %d eval generations in %.0f s, %d stopped on their own", model, len(rows), timer.seconds, stopped)
    write_manifest(
        manifest,
        cfg,
        {
            "rule": "eval_generate",
            "model": model,
            "rows": len(rows),
            "seconds": round(timer.seconds, 2),
            **backend.meter.as_dict(),
        },
    )


def guard_items(generations: Sequence[dict]) -> list[GuardItem]:
    return [
        GuardItem(g["prompt_id"], "eval", g["prompt_id"], g["model"], g["prompt"], g["response"]) for g in generations
    ]


def run_eval_safety(cfg: dict, generations_path: str, base_dir: str, table: str, manifest: str) -> None:
    """Safety labels of a model's answers to the red-team set (the only set the unsafe rate is measured on)."""
    generations = tables.read_table(generations_path, "eval_generations")
    items = guard_items([g for g in generations if g["set"] == "redteam"])
    with Timer() as timer:
        guard = open_guard(cfg, base_dir)
        rows = verdict_rows(items, guard.label(items), guard)
    tables.write_table(rows, table, "safety")
    write_manifest(
        manifest,
        cfg,
        {
            "rule": "eval_safety",
            "model": generations[0]["model"],
            "rows": len(rows),
            "guard": guard.name,
            "seconds": round(timer.seconds, 2),
        },
    )
