"""Critique -> revision (SL-CAI) by a base or stage model, completion-style.

For each critiqued response and each round, a principle is drawn (seeded), the model writes a critique
after few-shot demonstrations, then a revision; round r revises round r-1's revision. Every round is a
row of ``critiques.parquet``. Prompts are plain strings in the project's format, checked for chat-template
tokens like every base-model prompt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import formats, tables
from maximalcai.backends import Backend, Sampling
from maximalcai.constitution import Constitution, load_constitution, sample_principles
from maximalcai.hardware import Engine
from maximalcai.prompting import shared_draws
from maximalcai.reproducibility import derive_seed
from maximalcai.resources import read_jsonl
from maximalcai.typed import Section

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Critique(Section):
    """A stage's ``critique`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("critique",)

    rounds: int
    responses_per_instruction: int
    fewshot_k: int
    fewshot_share: int
    critique_sampling: Sampling
    revision_sampling: Sampling


def load_critique_demos(path: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(path, {field: str for field in formats.CRITIQUE_DEMO_FIELDS}, "critique demonstrations")


def critique_and_revise(
    backend: Backend,
    responses: Sequence[dict[str, Any]],
    constitution: Constitution,
    demos: Sequence[dict[str, Any]],
    stage: str,
    settings: Critique,
    seed: int,
    shard: int = 0,
) -> list[dict[str, Any]]:
    """All rounds of critique and revision for the first ``responses_per_instruction`` candidates of one shard
    (its demonstration draws and sampling streams are the shard's own, as in generation)."""
    targets = [r for r in responses if r["candidate_index"] < settings.responses_per_instruction]
    current = {r["response_id"]: r["response"] for r in targets}
    critique_sampling, revision_sampling = settings.critique_sampling, settings.revision_sampling
    sampling_json = tables.canonical_json(
        {"critique": critique_sampling.as_dict(), "revision": revision_sampling.as_dict()}
    )
    rows: list[dict[str, Any]] = []
    for round_ in range(1, settings.rounds + 1):
        rng = random.Random(derive_seed(seed, stage, "critique", shard, round_))
        principles = [
            sample_principles(constitution, 1, random.Random(derive_seed(seed, stage, r["response_id"], round_)))[0]
            for r in targets
        ]
        draws = shared_draws(demos, settings.fewshot_k, settings.fewshot_share, len(targets), rng)
        prefixes = [formats.critique_demos_prefix(d) for d in draws]
        inputs = [current[r["response_id"]] for r in targets]
        round_seed = derive_seed(seed, stage, "critique", shard, round_, "sampling")
        critiques = backend.generate(
            [
                (pre, formats.critique_prompt(r["instruction"], text, p.critique_request))
                for pre, r, text, p in zip(prefixes, targets, inputs, principles)
            ],
            critique_sampling,
            derive_seed(round_seed, "critique"),
        )
        revisions = backend.generate(
            [
                (pre, formats.revision_prompt(r["instruction"], text, p.critique_request, c.text, p.revision_request))
                for pre, r, text, p, c in zip(prefixes, targets, inputs, principles, critiques)
            ],
            revision_sampling,
            derive_seed(round_seed, "revision"),
        )
        for r, text, p, c, v, d in zip(targets, inputs, principles, critiques, revisions, draws):
            rows.append(
                {
                    "critique_id": f"{r['response_id']}-k{round_}",
                    "response_id": r["response_id"],
                    "instruction_id": r["instruction_id"],
                    "stage": stage,
                    "round": round_,
                    "principle_id": p.id,
                    "input": text,
                    "critique": c.text,
                    "revision": v.text,
                    "critique_finish_reason": c.finish_reason,
                    "revision_finish_reason": v.finish_reason,
                    "generator": backend.model_name,
                    "fewshot_ids": [demo["id"] for demo in d],
                    "seed": round_seed,
                    "sampling": sampling_json,
                    "constitution_hash": constitution.sha256,
                }
            )
            if v.text:  # an empty revision leaves the text as it was for the next round
                current[r["response_id"]] = v.text
    return rows


def final_revisions(critiques: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """response_id -> the row of its last round."""
    last: dict[str, dict[str, Any]] = {}
    for row in critiques:
        if row["round"] >= last.get(row["response_id"], {"round": 0})["round"]:
            last[row["response_id"]] = row
    return last


def empty_revisions(rows: Sequence[dict[str, Any]]) -> int:
    """Critique rounds whose revision came back empty."""
    return sum(1 for r in rows if not r["revision"])


def run_critique_revise(
    engine: Engine,
    settings: Critique,
    seed: int,
    stage: str,
    shard: int,
    responses: str,
    constitution: str,
    demos: str,
    base_model: str,
    table: str,
    adapter: str | None = None,
) -> dict[str, Any]:
    """Rule critique_revise: critiques and revisions of one response shard under the constitution."""
    from maximalcai.backends import open_backend

    principles = load_constitution(constitution)
    examples = load_critique_demos(demos)
    answers = tables.read_table(responses, "responses", require_rows=False)
    rows, meter = [], {}
    if settings.responses_per_instruction and answers:
        backend = open_backend(engine, base_model, adapter)
        rows = critique_and_revise(backend, answers, principles, examples, stage, settings, seed, shard)
        meter = backend.meter.as_dict()
    else:
        logger.info("critique.responses_per_instruction is 0: no critiques or revisions")
    tables.write_table(rows, table, "critiques")
    empty = empty_revisions(rows)
    logger.info("%d critique rounds, %d empty revisions, %s", len(rows), empty, meter)
    return {"rows": len(rows), "empty_revisions": empty, **meter}
