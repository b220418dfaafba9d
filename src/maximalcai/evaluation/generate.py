"""Held-out generations of one model (the base, or base + a stage's adapter), and their safety labels.

Each model answers every eval prompt once, zero-shot in the project's format (the way an assistant is
used), greedy by default; the table is shared by every stage's evaluation that compares against it.
"""

from __future__ import annotations

import logging
from typing import Sequence

from maximalcai import formats, tables
from maximalcai.backends import Sampling
from maximalcai.evaluation.sets import load_eval_prompts
from maximalcai.feedback.guard import GuardItem, open_guard, verdict_rows
from maximalcai.manifest import Timer, write_manifest
from maximalcai.reproducibility import derive_seed

logger = logging.getLogger(__name__)


def generation_rows(backend, prompts, model: str, sampling: Sampling, seed: int) -> list[dict]:
    completions = backend.generate([formats.prompt(p.prompt) for p in prompts], sampling, seed)
    return [
        {"prompt_id": p.id, "set": p.set, "model": model, "prompt": p.prompt, "response": c.text,
         "finish_reason": c.finish_reason, "num_tokens": c.num_tokens, "seed": seed,
         "sampling": tables.canonical_json(sampling.as_dict())}
        for p, c in zip(prompts, completions)
    ]


def run_eval_generate(cfg: dict, model: str, base_dir: str, adapter_dir: str | None, table: str, manifest: str) -> None:
    from maximalcai.backends import open_backend

    prompts = load_eval_prompts(cfg)
    sampling = Sampling.from_config(cfg["evaluation"]["sampling"])
    seed = derive_seed(cfg["seed"], "eval", "generate")
    with Timer() as timer:
        backend = open_backend(cfg, base_dir, adapter_dir)
        rows = generation_rows(backend, prompts, model, sampling, seed)
    tables.write_table(rows, table, "eval_generations")
    stopped = sum(r["finish_reason"] in ("stop", "eos") for r in rows)
    logger.info("%s: %d eval generations, %d stopped on their own", model, len(rows), stopped)
    write_manifest(manifest, cfg, {"rule": "eval_generate", "model": model, "rows": len(rows),
                                   "seconds": round(timer.seconds, 2), **backend.meter.as_dict()})


def guard_items(generations: Sequence[dict]) -> list[GuardItem]:
    return [GuardItem(g["prompt_id"], "eval", g["prompt_id"], g["model"], g["prompt"], g["response"]) for g in generations]


def run_eval_safety(cfg: dict, generations_path: str, base_dir: str, table: str, manifest: str) -> None:
    generations = tables.read_table(generations_path, "eval_generations")
    items = guard_items(generations)
    with Timer() as timer:
        guard = open_guard(cfg, base_dir)
        rows = verdict_rows(items, guard.label(items), guard)
    tables.write_table(rows, table, "safety")
    write_manifest(manifest, cfg, {"rule": "eval_safety", "model": generations[0]["model"], "rows": len(rows),
                                   "guard": guard.name, "seconds": round(timer.seconds, 2)})
