"""Stage data from a (base or stage-N) model by few-shot completion: instructions, then responses.

Instructions are generated Self-Instruct style in shards of candidates, then one aggregate step filters
them (unfinished, length, banned words, near-duplicates of the pool and of each other) and keeps the first
``count`` in candidate order. Responses are generated in shards of instructions, ``per_instruction``
samples each. Consecutive prompts can share one draw of few-shot examples (``fewshot_share``), which the
backend turns into one prefix computation per batch.

Every row records its generator, few-shot ids, seed and sampling parameters.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import formats, tables, verifiable
from maximalcai.backends import Backend, Completion, Sampling
from maximalcai.errors import TableError
from maximalcai.hardware import Engine
from maximalcai.prompting import PoolExample, instruction_prompt, load_pool, response_prompt, shared_draws
from maximalcai.reproducibility import derive_seed
from maximalcai.similarity import NearDuplicateIndex, words
from maximalcai.typed import Section

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------- shard maths
@dataclass(frozen=True)
class InstructionFilters:
    """A stage's ``instructions.filters`` section, typed (keys and meaning: the config schema)."""

    min_words: int
    max_words: int
    max_similarity: float
    banned_words: tuple[str, ...]


@dataclass(frozen=True)
class Constraints:
    """A stage's ``instructions.constraints`` section, typed (keys and meaning: the config schema)."""

    share: float
    second_share: float
    types: tuple[str, ...] | None


@dataclass(frozen=True)
class Instructions(Section):
    """A stage's ``instructions`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("instructions",)

    count: int
    candidates: int
    shard_size: int
    fewshot_k: int
    fewshot_share: int
    sampling: Sampling
    filters: InstructionFilters
    constraints: Constraints


@dataclass(frozen=True)
class Responses(Section):
    """A stage's ``responses`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("responses",)
    INPUTS = ("constraint_pool",)

    per_instruction: int
    shard_size: int
    fewshot_k: int
    fewshot_share: int
    on_policy: bool
    sampling: Sampling


def instruction_shards(settings: Instructions) -> int:
    """Number of instruction-generation jobs for a stage (candidates / shard_size, rounded up)."""
    return math.ceil(settings.candidates / settings.shard_size)


def response_shards(instruction_settings: Instructions, response_settings: Responses) -> int:
    """Number of response-generation jobs: enough shards to cover the most instructions a stage can keep."""
    return math.ceil(instruction_settings.count / response_settings.shard_size)


SHARDED_RULES = ("generate_responses", "critique_revise", "safety_label", "preference_label")


def shard_count(stage: dict[str, Any], rule_or_table: str) -> int:
    """How many jobs a stage runs of a sharded rule, or how many shard files a sharded table has: instruction
    generation in its own shards, responses and their feedback in response shards; 1 for any other rule.
    ``stage``: the stage's resolved config."""
    instructions = Instructions.from_section(stage["instructions"])
    if rule_or_table in ("generate_instructions", "instructions"):
        return instruction_shards(instructions)
    if rule_or_table in SHARDED_RULES + ("responses", "critiques", "safety", "preferences"):
        return response_shards(instructions, Responses.from_section(stage["responses"]))
    return 1


# -------------------------------------------------------------------------------------------- provenance
def provenance(
    backend: Backend, completion: Completion, shots: Sequence[PoolExample], sample_seed: int, sampling: Sampling
) -> dict[str, Any]:
    """The columns every generated row carries: how it ended, who wrote it, from which examples and draws."""
    return {
        "finish_reason": completion.finish_reason,
        "num_tokens": completion.num_tokens,
        "generator": backend.model_name,
        "fewshot_ids": [e.id for e in shots],
        "seed": sample_seed,
        "sampling": tables.canonical_json(sampling.as_dict()),
    }


# ------------------------------------------------------------------------------------------ instructions
def generate_instruction_candidates(
    backend: Backend, pool: Sequence[PoolExample], stage: str, shard: int, settings: Instructions, seed: int
) -> list[dict[str, Any]]:
    """One shard of raw instruction candidates."""
    first = shard * settings.shard_size
    count = max(0, min(settings.shard_size, settings.candidates - first))
    rng = random.Random(derive_seed(seed, stage, "instructions", shard, "fewshot"))
    shots = shared_draws(pool, settings.fewshot_k, settings.fewshot_share, count, rng)
    sampling = settings.sampling
    sample_seed = derive_seed(seed, stage, "instructions", shard, "sampling")
    completions = backend.generate([instruction_prompt(s) for s in shots], sampling, sample_seed)
    return [
        {
            "candidate_id": f"{stage}-c{first + i:05d}",
            "stage": stage,
            "shard": shard,
            "text": c.text,
            **provenance(backend, c, s, sample_seed, sampling),
        }
        for i, (s, c) in enumerate(zip(shots, completions))
    ]


def _first_char_ok(text: str) -> bool:
    return text[:1].isalnum() or text[:1] in "\"'("


def filter_instructions(
    candidates: Sequence[dict[str, Any]],
    pool: Sequence[PoolExample],
    settings: Instructions,
    held_out: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Apply the filters in order; return (kept candidates, funnel rows with counts and reasons).

    ``held_out``: the eval prompts and their base tasks; a candidate close to any of them is dropped, so no
    training row ever overlaps the evaluation.
    """
    filters = settings.filters
    banned = {w.lower() for w in filters.banned_words}
    pool_index = NearDuplicateIndex(filters.max_similarity)
    for example in pool:
        pool_index.add(example.id, example.instruction)
    eval_index = NearDuplicateIndex(filters.max_similarity)
    for number, text in enumerate(held_out):
        eval_index.add(str(number), text)
    kept_index = NearDuplicateIndex(filters.max_similarity)

    def reason_to_drop(row: dict[str, Any]) -> str | None:
        text = row["text"]
        n = len(words(text))
        if row["finish_reason"] == "length":
            return "unfinished: hit max_new_tokens before the next block"
        if not text:
            return "empty"
        if n < filters.min_words:
            return f"shorter than min_words={filters.min_words}"
        if n > filters.max_words:
            return f"longer than max_words={filters.max_words}"
        if banned & set(words(text)):
            return "mentions something a text-only model cannot see or produce (banned_words)"
        if not _first_char_ok(text):
            return "starts with punctuation or a symbol"
        if pool_index.closest(text):
            return f"near-duplicate of a pool example (ROUGE-L > {filters.max_similarity})"
        if eval_index.closest(text):
            return f"near-duplicate of a held-out eval prompt (ROUGE-L > {filters.max_similarity})"
        if kept_index.closest(text):
            return f"near-duplicate of another candidate (ROUGE-L > {filters.max_similarity})"
        return None

    kept: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    for row in sorted(candidates, key=lambda r: r["candidate_id"]):
        reason = reason_to_drop(row)
        if reason is None and len(kept) >= settings.count:
            reason = f"surplus: already kept instructions.count={settings.count}"
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        kept.append(row)
        kept_index.add(row["candidate_id"], row["text"])
    funnel = [{"filter": "candidates", "rows": len(candidates)}]
    funnel += [{"filter": reason, "dropped": n} for reason, n in dropped.items()]
    funnel.append({"filter": "kept", "rows": len(kept)})
    return kept, funnel


def attach_constraints(rows: list[dict[str, Any]], settings: Constraints, seed: int, stage: str) -> None:
    """Verifiable instructions (Tülu 3's IF data): append an IFEval constraint, in IFEval's words and with
    its checker kwargs, to a seeded ``share`` of the instructions, cycling through the allowed types."""
    if not settings.share:
        return
    rng = random.Random(derive_seed(seed, stage, "constraints"))
    types = list(settings.types or verifiable.training_types())
    chosen = sorted(rng.sample(range(len(rows)), round(settings.share * len(rows))))
    for number, index in enumerate(chosen):
        if number % len(types) == 0:
            rng.shuffle(types)
        row = rows[index]
        attached = verifiable.attach(row["task"], types[number % len(types)], rng, settings.second_share, types)
        row.update(
            instruction=attached["prompt"],
            instruction_id_list=attached["instruction_id_list"],
            constraint_kwargs=tables.canonical_json(attached["kwargs"]),
        )


def aggregate_instructions(
    shard_paths: Sequence[str | Path],
    pool: Sequence[PoolExample],
    stage: str,
    settings: Instructions,
    held_out: Sequence[str] = (),
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All shards -> the stage's instruction table rows (filtered, in candidate order, some with verifiable
    constraints) and the funnel."""
    candidates = [row for path in shard_paths for row in tables.read_table(path, "instruction_candidates", False)]
    kept, funnel = filter_instructions(candidates, pool, settings, held_out)
    rows = [
        {
            "instruction_id": f"{stage}-i{i:05d}",
            "stage": stage,
            "instruction": c["text"],
            "task": c["text"],
            "instruction_id_list": [],
            "constraint_kwargs": "[]",
            "candidate_id": c["candidate_id"],
            "generator": c["generator"],
            "fewshot_ids": c["fewshot_ids"],
            "seed": c["seed"],
            "sampling": c["sampling"],
        }
        for i, c in enumerate(kept)
    ]
    attach_constraints(rows, settings.constraints, seed, stage)
    constrained = sum(bool(r["instruction_id_list"]) for r in rows)
    if constrained:
        funnel.append({"filter": "verifiable constraints attached", "rows": constrained})
    return rows, funnel


# --------------------------------------------------------------------------------------------- responses
def generate_responses(
    backend: Backend,
    pool: Sequence[PoolExample],
    instructions: Sequence[dict[str, Any]],
    stage: str,
    shard: int,
    settings: Responses,
    seed: int,
    constraint_pool: Sequence[PoolExample] | None = None,
) -> list[dict[str, Any]]:
    """``per_instruction`` sampled responses for each instruction of one shard.

    Instructions with a verifiable constraint draw their examples from ``constraint_pool`` (examples that
    meet such constraints) when one is given, the others from ``pool``. With ``on_policy``, each instruction
    also gets the generator's own greedy answer to the zero-shot prompt (candidate ``per_instruction``, no
    few-shot ids): how the model answers once trained, so the checks can reject the loops it really makes.
    """
    rng = random.Random(derive_seed(seed, stage, "responses", shard, "fewshot"))
    # Candidate-major order: the candidates of one instruction fall into different few-shot groups.
    pairs = [(ins, j) for j in range(settings.per_instruction) for ins in instructions]
    groups = {
        "plain": [p for p in pairs if not (constraint_pool and p[0]["instruction_id_list"])],
        "constrained": [p for p in pairs if constraint_pool and p[0]["instruction_id_list"]],
    }
    drawn: dict[tuple[str, int], list[PoolExample]] = {}
    for name, members in groups.items():
        source = constraint_pool if name == "constrained" else pool
        draws = shared_draws(source, settings.fewshot_k, settings.fewshot_share, len(members), rng) if members else []
        drawn.update({(ins["instruction_id"], j): d for (ins, j), d in zip(members, draws)})
    jobs = [(ins, j, drawn[(ins["instruction_id"], j)]) for ins, j in pairs]
    sampling = settings.sampling
    sample_seed = derive_seed(seed, stage, "responses", shard, "sampling")
    completions = backend.generate(
        [response_prompt(s, ins["instruction"]) for ins, _, s in jobs], sampling, sample_seed
    )
    answers = [(ins, j, s, c, sampling) for (ins, j, s), c in zip(jobs, completions)]
    if settings.on_policy:
        greedy = Sampling(temperature=0.0, max_new_tokens=settings.sampling.max_new_tokens)
        policy = backend.generate([formats.prompt(ins["instruction"]) for ins in instructions], greedy, sample_seed)
        answers += [(ins, settings.per_instruction, [], c, greedy) for ins, c in zip(instructions, policy)]
    return [
        {
            "response_id": f"{ins['instruction_id']}-r{j}",
            "instruction_id": ins["instruction_id"],
            "stage": stage,
            "instruction": ins["instruction"],
            "candidate_index": j,
            "response": c.text,
            **provenance(backend, c, s, sample_seed, used),
        }
        for ins, j, s, c, used in answers
    ]


def shard_slice(rows: Sequence[dict[str, Any]], shard: int, shard_size: int) -> Sequence[dict[str, Any]]:
    return rows[shard * shard_size : (shard + 1) * shard_size]


# -------------------------------------------------------------------------------- rule entry points (I/O)
def shard_throughput(shard_manifests: Sequence[str | Path]) -> dict[str, Any]:
    """Generated tokens, generation seconds and tokens/s summed over the shard jobs' manifests."""
    shards = [json.loads(Path(p).read_text()) for p in shard_manifests]
    tokens = sum(s["generated_tokens"] for s in shards)
    seconds = sum(s["generation_seconds"] for s in shards)
    return {
        "shards": len(shards),
        "generated_tokens": tokens,
        "generation_seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 2) if seconds else None,
    }


def run_instruction_shard(
    engine: Engine,
    settings: Instructions,
    seed: int,
    stage: str,
    shard: int,
    pool: str,
    base_model: str,
    table: str,
    adapter: str | None = None,
) -> dict[str, Any]:
    """Rule generate_instructions: one shard of Self-Instruct candidates from the stage's generator."""
    from maximalcai.backends import open_backend

    examples = load_pool(pool, min_size=settings.fewshot_k + 1)
    backend = open_backend(engine, base_model, adapter)
    rows = generate_instruction_candidates(backend, examples, stage, shard, settings, seed)
    tables.write_table(rows, table, "instruction_candidates")
    return {"rows": len(rows), **backend.meter.as_dict()}


def held_out_texts(eval_paths: Sequence[str]) -> list[str]:
    """Every eval prompt and the base task it was built from: what training rows must stay away from."""
    from maximalcai.resources import read_jsonl

    texts: list[str] = []
    for path in eval_paths:
        for row in read_jsonl(path, {"prompt": str}, "eval set"):
            texts += [row["prompt"]] + ([row["task"]] if row.get("task") else [])
    return texts


def run_aggregate_instructions(
    settings: Instructions,
    seed: int,
    stage: str,
    shard_tables: Sequence[str],
    shard_manifests: Sequence[str],
    pool: str,
    eval_sets: Sequence[str],
    table: str,
) -> dict[str, Any]:
    """Rule aggregate_instructions: filter and deduplicate the candidate shards into instructions.parquet."""
    examples = load_pool(pool)
    rows, funnel = aggregate_instructions(shard_tables, examples, stage, settings, held_out_texts(eval_sets), seed)
    for step in funnel:
        logger.info("instruction funnel: %s", step)
    if not rows:
        raise TableError(
            f"{table}: no instruction survived the filters (funnel: {funnel}); raise instructions.candidates "
            "or loosen instructions.filters in the config"
        )
    if len(rows) < settings.count:
        logger.warning("kept %d instructions, fewer than instructions.count=%d", len(rows), settings.count)
    tables.write_table(rows, table, "instructions")
    return {"rows": len(rows), "funnel": funnel, "generation": shard_throughput(shard_manifests)}


def run_response_shard(
    engine: Engine,
    settings: Responses,
    seed: int,
    stage: str,
    shard: int,
    pool: str,
    instructions: str,
    base_model: str,
    table: str,
    adapter: str | None = None,
    constraint_pool: str | None = None,
) -> dict[str, Any]:
    """Rule generate_responses: candidate responses for one shard of a stage's instructions."""
    from maximalcai.backends import open_backend

    examples = load_pool(pool, min_size=settings.fewshot_k + 1)
    constraint_examples = load_pool(constraint_pool, min_size=settings.fewshot_k + 1) if constraint_pool else None
    todo = shard_slice(tables.read_table(instructions, "instructions"), shard, settings.shard_size)
    rows, meter = [], {"generated_tokens": 0, "generation_seconds": 0.0}
    if todo:
        backend = open_backend(engine, base_model, adapter)
        rows = generate_responses(backend, examples, todo, stage, shard, settings, seed, constraint_examples)
        meter = backend.meter.as_dict()
    else:
        logger.info("shard %d is past the last instruction; writing an empty shard", shard)
    tables.write_table(rows, table, "responses")
    return {"rows": len(rows), **meter}


def candidates_per_instruction(response_settings: Responses) -> int:
    """Responses per instruction: the sampled ones, plus the greedy on-policy answer."""
    return response_settings.per_instruction + bool(response_settings.on_policy)


def run_aggregate_responses(
    per_instruction: int,
    stage: str,
    shard_tables: Sequence[str],
    shard_manifests: Sequence[str],
    instructions: str,
    table: str,
) -> dict[str, Any]:
    """Rule aggregate_responses: join the response shards into responses.parquet."""
    expected = len(tables.read_table(instructions, "instructions")) * per_instruction
    rows = tables.read_shards(shard_tables, "responses")
    if len(rows) != expected:
        raise TableError(
            f"{table}: the response shards hold {len(rows)} rows, expected {expected} "
            f"({expected // per_instruction} instructions x {per_instruction}); rerun the response shards with "
            f"snakemake --cores 1 --forcerun generate_responses -- {table}"
        )
    tables.write_table(rows, table, "responses")
    finish = {r: sum(1 for row in rows if row["finish_reason"] == r) for r in ("stop", "eos", "length")}
    throughput = shard_throughput(shard_manifests)
    logger.info("responses: %d rows, finish reasons %s, generation %s", len(rows), finish, throughput)
    return {"rows": len(rows), "finish_reasons": finish, "generation": throughput}
