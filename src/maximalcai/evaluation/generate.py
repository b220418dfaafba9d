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
from maximalcai.evaluation.sets import BASE_FEWSHOT, load_eval_prompts
from maximalcai.feedback.guard import GuardItem, Safety, open_guard, verdict_rows
from maximalcai.hardware import Engine
from maximalcai.manifest import Timer
from maximalcai.prompting import PoolExample, load_pool, response_prompt, shared_draws
from maximalcai.reproducibility import derive_seed

logger = logging.getLogger(__name__)


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
    engine: Engine,
    sampling: Sampling,
    max_prompts: dict[str, int | None],
    fewshot: dict[str, int] | None,
    seed: int,
    model: str,
    base_model: str,
    helpful: str,
    redteam: str,
    borderline: str,
    honesty: str,
    table: str,
    adapter: str | None = None,
    pool: str | None = None,
) -> dict:
    """Rule eval_generate: one model's answers to the held-out eval prompts. ``fewshot`` (the in-context
    baseline only): ``fewshot_k`` examples from ``pool`` before each prompt, one draw per ``fewshot_share``."""
    from maximalcai.backends import open_backend

    prompts = load_eval_prompts(
        {"helpful": helpful, "redteam": redteam, "borderline": borderline, "honesty": honesty}, max_prompts
    )
    draws = None
    if model == BASE_FEWSHOT:
        examples = load_pool(pool, min_size=fewshot["fewshot_k"] + 1)
        draws = fewshot_draws(prompts, examples, fewshot["fewshot_k"], fewshot["fewshot_share"], seed)
    with Timer() as timer:
        backend = open_backend(engine, base_model, adapter)
        rows = generation_rows(backend, prompts, model, sampling, derive_seed(seed, "eval", "generate"), draws)
    tables.write_table(rows, table, "eval_generations")
    stopped = sum(r["finish_reason"] in ("stop", "eos") for r in rows)
    logger.info("%s: %d eval generations in %.0f s, %d stopped on their own", model, len(rows), timer.seconds, stopped)
    return {"rows": len(rows), **backend.meter.as_dict()}


def guard_items(generations: Sequence[dict]) -> list[GuardItem]:
    return [
        GuardItem(g["prompt_id"], "eval", g["prompt_id"], g["model"], g["prompt"], g["response"]) for g in generations
    ]


def run_eval_safety(
    engine: Engine, safety: Safety, seed: int, model: str, base_model: str, generations: str, demos: str, table: str
) -> dict:
    """Rule eval_safety: safety labels of a model's answers to the red-team set (the only set the unsafe
    rate is measured on)."""
    answers = tables.read_table(generations, "eval_generations")
    items = guard_items([g for g in answers if g["set"] == "redteam"])
    guard = open_guard(engine, safety, seed, base_model, demos)
    rows = verdict_rows(items, guard.label(items), guard)
    tables.write_table(rows, table, "safety")
    return {"rows": len(rows), "guard": guard.name}
