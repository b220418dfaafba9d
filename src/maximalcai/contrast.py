"""Labels by construction (RLCD, arXiv 2307.12950): the constitution's principles at a scale a small model carries.

A principle with ``mechanism: construction`` names seed requests and two few-shot pools: answers that follow
it and answers that violate it (constitution.yaml). For each request, the stage's generator answers once
after examples that follow the principle and once after examples that violate it; with ``on_policy`` it
also answers zero-shot and greedily, as the trained model will. No judge is asked: the answer written under
the positive framing is ``chosen`` by construction, once checks by code confirm that each side did what its
framing asked (``chosen``/``rejected``: refuses | answers) and that the chosen one stops, does not loop, and
meets the principles carried by checks on refusals (``helpful-refusal``: offers an alternative,
``no-preaching``: short, no moralizing).

Written answers (``written``): a principle may name answers written by hand for each category of its requests
(constitution.yaml's ``construction.written``); with ``contrast.written`` each request gets one, drawn by
code, which stands in for one side (``written_side``) only when none of the generator's answers passes that
side's checks. At 270M most refusal-framed answers fail them, and without a written refusal (chosen) half of
the harmful requests made no pair; and the model seldom refuses a benign request even when prompted to, so
without a written over-refusal (rejected) half of the benign requests made no pair, and DPO saw more
refusals than answers whatever ``balance`` asked for.

Requests: the seed requests (hazard or kind known by construction), plus ``generated_per_principle`` new ones
the generator writes Self-Instruct style from seeds of the same category. Seeds and generated requests
close to any eval prompt are dropped, as generated instructions are.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maximalcai import formats, tables, verifiable
from maximalcai.backends import Backend, Completion, Sampling
from maximalcai.code_checks import BY_CONSTRUCTION, decided_pair
from maximalcai.constitution import Construction, Labellings
from maximalcai.generation import provenance
from maximalcai.hardware import Engine
from maximalcai.prompting import PoolExample, instruction_prompt, load_pool, response_prompt, shared_draws
from maximalcai.reproducibility import derive_seed
from maximalcai.resources import read_jsonl
from maximalcai.similarity import NearDuplicateIndex, words
from maximalcai.typed import Section

logger = logging.getLogger(__name__)

FRAMINGS = ("follow", "violate", "policy", "written")


@dataclass(frozen=True)
class Contrast(Section):
    """A stage's ``contrast`` section, typed (its keys and their meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("contrast",)

    enabled: bool
    principles: tuple[str, ...] | None
    seeds_per_principle: int | None
    balance: float | None
    generated_per_principle: int
    fewshot_k: int
    fewshot_share: int
    per_framing: int
    written: bool | tuple[str, ...]
    twins: bool
    on_policy: bool
    min_words: int
    max_words: int
    max_similarity: float
    request_sampling: Sampling
    sampling: Sampling

    def written_sides(self) -> frozenset[str]:
        """The sides written answers may stand in for: ``written`` true - both, a list - those, false - none."""
        if isinstance(self.written, bool):
            return frozenset(("chosen", "rejected")) if self.written else frozenset()
        return frozenset(self.written)


def principles_choosing(principles: Labellings, check: str) -> frozenset[str]:
    """The construction principles whose chosen answer passes ``check``: ``answers`` (answer-the-question) or
    ``refuses`` (the harmlessness principles)."""
    return frozenset(pid for pid, spec in principles.constructions().items() if spec.chosen == check)


def answering_principles(principles: Labellings) -> frozenset[str]:
    """The construction principles whose chosen answer answers (answer-the-question), not refuses."""
    return principles_choosing(principles, "answers")


def load_requests(spec: Construction, principle_id: str, twins: bool) -> list[dict[str, str]]:
    """A principle's seed requests: rows of its ``requests`` file selected by ``where``, with their category
    (the value of the first ``where`` field, else the row's ``hazard`` or ``kind``). A row written as the harmful
    twin of a benign request (its ``twin`` names that request) only with ``twins``."""
    rows = read_jsonl(spec.requests, {"request": str}, f"requests of principle '{principle_id}'")
    where = spec.where
    kept = [
        r
        for r in rows
        if all(str(r.get(k)) in values for k, values in where.items()) and (twins or r.get("twin") is None)
    ]
    field = next(iter(where), None)
    return [
        {
            "id": r["id"],
            "request": r["request"],
            "category": str(r.get(field) or r.get("hazard") or r.get("kind") or ""),
        }
        for r in kept
    ]


def balanced_counts(
    specs: dict[str, Construction], settings: Contrast, available: dict[str, int]
) -> dict[str, dict[str, int | None]]:
    """Seed and generated requests per principle (``available``: its usable seed requests). With ``balance``
    (a ratio), the principles whose chosen answer must answer (``answer-the-question``) together get ``balance``
    requests, seeds and generated, per request of those whose chosen answer must refuse: their seed limit is
    scaled up, and they generate what their seeds fall short of. The data then teaches when to refuse rather
    than to refuse whatever sounds risky."""
    kinds = {kind: [p for p, spec in specs.items() if spec.chosen == kind] for kind in ("refuses", "answers")}
    ratio = settings.balance if all(kinds.values()) else None
    scale = ratio * len(kinds["refuses"]) / len(kinds["answers"]) if ratio else 1.0
    limit, generated = settings.seeds_per_principle, settings.generated_per_principle
    seeds = {
        pid: None if limit is None else round(limit * (scale if pid in kinds["answers"] else 1.0)) for pid in specs
    }
    used = {pid: available[pid] if seeds[pid] is None else min(seeds[pid], available[pid]) for pid in specs}
    # A principle with no follow pool has a chosen side only for the requests written answers name: none new.
    counts = {pid: {"seeds": seeds[pid], "generated": generated if spec.follow else 0} for pid, spec in specs.items()}
    if ratio:
        wanted = round(ratio * sum(used[p] + generated for p in kinds["refuses"]))
        gap = wanted - sum(used[p] for p in kinds["answers"])
        for pid in kinds["answers"]:
            counts[pid]["generated"] = max(0, -(-gap // len(kinds["answers"])))
    return counts


def contrast_requests(principles: Labellings, settings: Contrast) -> dict[str, tuple[int, int]]:
    """(seed, generated) requests each construction principle asks for at most: its seed file's rows (before the
    eval-prompt filter) up to the balanced limits; what the plan estimates."""
    specs = principles.constructions(settings.principles)
    seeds = {pid: load_requests(spec, pid, settings.twins) for pid, spec in specs.items()}
    wanted = balanced_counts(specs, settings, {pid: len(rows) for pid, rows in seeds.items()})
    return {pid: (len(spread(seeds[pid], wanted[pid]["seeds"])), wanted[pid]["generated"]) for pid in specs}


def request_shots(
    seeds: Sequence[dict[str, str]], principle_id: str, count: int, settings: Contrast, seed: int, stage: str
) -> list[tuple[str, list[PoolExample]]]:
    """The few-shot draws for ``count`` new requests of a principle: twice ``count`` prompts of ``fewshot_k``
    seeds of one category each, the categories in turn; (category, seeds) per prompt."""
    if not count or not seeds:
        return []
    rng = random.Random(derive_seed(seed, stage, "contrast", principle_id, "requests"))
    by_category: dict[str, list[PoolExample]] = {}
    for s in seeds:
        by_category.setdefault(s["category"], []).append(PoolExample(s["id"], s["request"], ""))
    categories = sorted(by_category)
    return [
        (cat, rng.sample(by_category[cat], min(settings.fewshot_k, len(by_category[cat]))))
        for cat in (categories[i % len(categories)] for i in range(2 * count))
    ]


def keep_requests(
    candidates: Sequence[tuple[str, Completion]],
    seeds: Sequence[dict[str, str]],
    principle_id: str,
    count: int,
    settings: Contrast,
    stage: str,
    held_out: Sequence[str],
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Up to ``count`` of a principle's (category, completion) candidates, kept when they end,
    have ``min_words``-``max_words`` words and are not close to a seed, an eval prompt or each other. Returns
    (requests, counts of why candidates were dropped)."""
    dropped = {"unfinished": 0, "length": 0, "near_seed": 0, "near_eval": 0, "near_kept": 0, "surplus": 0}
    limit = settings.max_similarity
    seed_index, eval_index, kept_index = (NearDuplicateIndex(limit) for _ in range(3))
    for s in seeds:
        seed_index.add(s["id"], s["request"])
    for number, text in enumerate(held_out):
        eval_index.add(str(number), text)
    kept: list[dict[str, str]] = []
    for number, (category, c) in enumerate(candidates):
        n = len(words(c.text))
        reason = (
            "unfinished"
            if c.finish_reason == "length"
            else "length"
            if not settings.min_words <= n <= settings.max_words
            else "near_seed"
            if seed_index.closest(c.text)
            else "near_eval"
            if eval_index.closest(c.text)
            else "near_kept"
            if kept_index.closest(c.text)
            else "surplus"
            if len(kept) >= count
            else None
        )
        if reason:
            dropped[reason] += 1
            continue
        request_id = f"{stage}-{principle_id}-g{number:04d}"
        kept.append({"id": request_id, "request": c.text, "category": category})
        kept_index.add(request_id, c.text)
    return kept, dropped


def spread(requests: Sequence[dict[str, str]], limit: int | None) -> list[dict[str, str]]:
    """The first ``limit`` requests taking one of each category in turn (all with None), in file order within
    a category."""
    rank: dict[str, int] = {}
    ordered = []
    for index, r in enumerate(requests):
        rank[r["category"]] = rank.get(r["category"], -1) + 1
        ordered.append((rank[r["category"]], index, r))
    return [r for _, _, r in sorted(ordered, key=lambda t: t[:2])][:limit]


def drop_near_eval(
    requests: Sequence[dict[str, str]], held_out: Sequence[str], limit: float
) -> tuple[list[dict[str, str]], int]:
    """Seed requests that are not close to an eval prompt (tests keep the committed seeds clear of them)."""
    index = NearDuplicateIndex(limit)
    for number, text in enumerate(held_out):
        index.add(str(number), text)
    kept = [r for r in requests if not index.closest(r["request"])]
    return kept, len(requests) - len(kept)


def answer_jobs(
    requests: Sequence[dict[str, str]],
    principle_id: str,
    spec: Construction,
    settings: Contrast,
    seed: int,
    stage: str,
) -> list[tuple[dict[str, str], str, int, list[PoolExample]]]:
    """(request, framing, index, examples) for ``per_framing`` answers per request under each framing."""
    pools = {
        name: load_pool(getattr(spec, name), min_size=settings.fewshot_k)
        for name in ("follow", "violate")
        if getattr(spec, name)
    }
    rng = random.Random(derive_seed(seed, stage, "contrast", principle_id, "fewshot"))
    jobs = []
    for framing, pool in pools.items():
        members = [(r, j) for j in range(settings.per_framing) for r in requests]
        draws = shared_draws(pool, settings.fewshot_k, settings.fewshot_share, len(members), rng)
        jobs += [(r, framing, j, d) for (r, j), d in zip(members, draws)]
    return jobs


def load_written(spec: Construction, principle_id: str) -> dict[str, list[str]]:
    """A principle's written answers by key: ``request:<id>`` for those written for one request
    (``request_id``), else their category (``any``: for every category); empty when it names none."""
    if not spec.written:
        return {}
    rows = read_jsonl(
        spec.written, {"category": str, "response": str}, f"written answers of principle '{principle_id}'"
    )
    by_key: dict[str, list[str]] = {}
    for row in rows:
        key = f"request:{row['request_id']}" if "request_id" in row else row["category"]
        by_key.setdefault(key, []).append(row["response"])
    return by_key


def written_rows(
    requests: Sequence[dict[str, str]], principle_id: str, spec: Construction, seed: int, stage: str
) -> list[tuple[dict[str, str], str]]:
    """(request, written answer) for each request with written answers: those written for it, else its
    category's (or ``any``), one drawn per request by a seeded generator."""
    written = load_written(spec, principle_id)
    rng = random.Random(derive_seed(seed, stage, "contrast", principle_id, "written"))
    choices = [
        (r, written.get(f"request:{r['id']}") or written.get(r["category"]) or written.get("any")) for r in requests
    ]
    return [(r, rng.choice(options)) for r, options in choices if options]


def request_columns(
    stage: str, principle_id: str, request: dict[str, str], framing: str, index: int
) -> dict[str, str]:
    """The columns of a contrast row that say which request, principle and framing it answers."""
    return {
        "contrast_id": f"{request['id']}-{principle_id}-{framing}{index}",
        "stage": stage,
        "principle_id": principle_id,
        "request_id": request["id"],
        "request": request["request"],
        "origin": "generated" if request["id"].startswith(f"{stage}-") else "seed",
        "category": request["category"],
        "framing": framing,
    }


def framing_of(contrast_id: str) -> str:
    """The framing a contrast row's id names (``request_columns``: ``<request>-<principle>-<framing><index>``)."""
    return contrast_id.rpartition("-")[2].rstrip("0123456789")


def generate_contrast(
    backend: Backend,
    principles: Labellings,
    settings: Contrast,
    seed: int,
    stage: str,
    held_out: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every construction principle's requests and framed answers: (contrast rows, per-principle counts).
    All principles share each generation call (new requests, framed answers, greedy answers), so a CPU
    decodes them in full batches."""
    specs = principles.constructions(settings.principles)
    usable, near_eval = {}, {}
    for principle_id, spec in specs.items():
        usable[principle_id], near_eval[principle_id] = drop_near_eval(
            load_requests(spec, principle_id, settings.twins), held_out, settings.max_similarity
        )
    wanted = balanced_counts(specs, settings, {pid: len(rows) for pid, rows in usable.items()})
    seeds = {pid: spread(usable[pid], wanted[pid]["seeds"]) for pid in specs}
    counts = {pid: {"seed_requests": len(seeds[pid]), "seeds_near_eval": near_eval[pid]} for pid in specs}
    shots = {pid: request_shots(seeds[pid], pid, wanted[pid]["generated"], settings, seed, stage) for pid in specs}
    flat = [(pid, cat, s) for pid in specs for cat, s in shots[pid]]
    written = backend.generate(
        [instruction_prompt(s) for _, _, s in flat],
        settings.request_sampling,
        derive_seed(seed, stage, "contrast", "request-sampling"),
    )
    requests = {}
    for principle_id in specs:
        candidates = [(cat, c) for (pid, cat, _), c in zip(flat, written) if pid == principle_id]
        generated, dropped = keep_requests(
            candidates, seeds[principle_id], principle_id, wanted[principle_id]["generated"], settings, stage, held_out
        )
        requests[principle_id] = seeds[principle_id] + generated
        counts[principle_id] |= {"generated_requests": len(generated), "generated_dropped": dropped}
        logger.info("contrast %s: %s", principle_id, counts[principle_id])
    jobs = [
        (pid, *job)
        for pid, spec in specs.items()
        for job in answer_jobs(requests[pid], pid, spec, settings, seed, stage)
    ]
    sampling = settings.sampling
    sample_seed = derive_seed(seed, stage, "contrast", "sampling")
    completions = backend.generate([response_prompt(d, r["request"]) for _, r, _, _, d in jobs], sampling, sample_seed)
    answers = [(*job, c, sampling) for job, c in zip(jobs, completions)]
    if settings.on_policy:
        greedy = Sampling(temperature=0.0, max_new_tokens=sampling.max_new_tokens)
        asked = [(pid, r) for pid in specs for r in requests[pid]]
        policy = backend.generate([formats.prompt(r["request"]) for _, r in asked], greedy, sample_seed)
        answers += [(pid, r, "policy", 0, [], c, greedy) for (pid, r), c in zip(asked, policy)]
    rows = [
        {
            **request_columns(stage, pid, r, framing, j),
            "response": c.text,
            **provenance(backend, c, shots, sample_seed, used),
        }
        for pid, r, framing, j, shots, c, used in answers
    ]
    sides = settings.written_sides()  # a principle with no follow pool always takes its written (chosen) answers
    if sides or any(not spec.follow for spec in specs.values()):
        rows += [
            {
                **request_columns(stage, pid, r, "written", 0),
                "response": text,
                "finish_reason": "stop",
                "num_tokens": 0,
                "generator": f"written:{spec.written}",
                "fewshot_ids": [],
                "seed": derive_seed(seed, stage, "contrast", pid, "written"),
                "sampling": "{}",
            }
            for pid, spec in specs.items()
            if spec.written_side in sides or not spec.follow
            for r, text in written_rows(requests[pid], pid, spec, seed, stage)
        ]
    return rows, counts


# ------------------------------------------------------------------------------------------------ pairs
def passes(row: dict[str, Any], check: str, max_repetition: float) -> bool:
    """A framed answer did what its side needs: ends by itself, does not loop, and passes ``check``."""
    text = row["response"]
    return (
        bool(text.strip())
        and row["finish_reason"] in ("stop", "eos")
        and verifiable.repeated_ngram_rate(text) <= max_repetition
        and verifiable.TEXT_CHECKS[check](text)
    )


def refusal_checks(principles: Labellings) -> dict[str, str]:
    """The principles carried by checks on a chosen refusal: check -> principle id."""
    return {check: pid for check, pid in principles.checked().items() if check in verifiable.REFUSAL_CHECKS}


def contrast_pair(
    chosen: dict[str, Any],
    rejected: dict[str, Any],
    principle_id: str,
    request_id: str,
    carried: list[str],
    stage: str,
) -> dict[str, Any]:
    """A pairs-table row from a contrast request's chosen and rejected answers, decided by construction;
    ``carried``: the principles checked on the refusal besides the pair's own."""
    return decided_pair(
        f"{request_id}-{principle_id}-contrast",
        stage,
        chosen["request"],
        (chosen["contrast_id"], chosen["response"]),
        (rejected["contrast_id"], rejected["response"]),
        request_id,
        "contrast",
        [principle_id, *carried],
        (BY_CONSTRUCTION, BY_CONSTRUCTION),
        f"construction:{principle_id}",
    )


def contrast_pairs(
    rows: Sequence[dict[str, Any]], principles: Labellings, max_repetition: float, stage: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, int]]]:
    """One pair per request: the first follow answer that passes the chosen check (and, for a refusal, the
    checks of the principles carried on refusals), against the on-policy answer when it passes the rejected
    check, else the first violate answer that does. A written answer stands in last for the side its
    principle names (``written_side``). Returns (pairs, the chosen answer of every request that has one,
    paired or not: the SFT candidates, per-principle counts of requests paired, paired on a written answer,
    and why the others were not)."""
    on_refusals = refusal_checks(principles)
    specs = principles.constructions()
    by_request: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["contrast_id"]):
        by_request.setdefault((row["principle_id"], row["request_id"]), []).append(row)
    pairs, chosen_rows, counts = [], [], {}
    for (principle_id, request_id), answers in sorted(by_request.items()):
        spec = specs[principle_id]
        tally = counts.setdefault(
            principle_id,
            {
                "requests": 0,
                "paired": 0,
                "no_chosen": 0,
                "no_rejected": 0,
                "written_chosen": 0,
                "written_rejected": 0,
                **{c: 0 for c in on_refusals},
            },
        )
        tally["requests"] += 1
        written_for = spec.written_side
        sides = {"chosen": ("follow",), "rejected": ("policy", "violate")}
        sides[written_for] += ("written",)
        follow = sorted(
            (r for r in answers if r["framing"] in sides["chosen"] and passes(r, spec.chosen, max_repetition)),
            key=lambda r: (r["framing"] == "written", r["contrast_id"]),
        )
        if spec.chosen == "refuses":
            for check in on_refusals:
                failing = [r for r in follow if not verifiable.TEXT_CHECKS[check](r["response"])]
                framed = [r for r in follow if r["framing"] == "follow"]  # the counts are of the model's answers
                tally[check] += bool(framed) and all(r in failing for r in framed)
                follow = [r for r in follow if r not in failing]
        rejected = sorted(
            (r for r in answers if r["framing"] in sides["rejected"] and passes(r, spec.rejected, 1.0)),
            key=lambda r: (("policy", "violate", "written").index(r["framing"]), r["contrast_id"]),
        )
        if not follow:
            tally["no_chosen"] += 1
            continue
        chosen_rows.append(follow[0])
        if not rejected:
            tally["no_rejected"] += 1
            continue
        tally["paired"] += 1
        chosen, worse = follow[0], rejected[0]
        tally["written_chosen"] += chosen["framing"] == "written"
        tally["written_rejected"] += worse["framing"] == "written"
        carried = list(on_refusals.values()) if spec.chosen == "refuses" else []
        pairs.append(contrast_pair(chosen, worse, principle_id, request_id, carried, stage))
    return pairs, chosen_rows, counts


def balance_contrast(pairs: Sequence[dict[str, Any]], ratio: float, answering: frozenset[str]) -> list[dict[str, Any]]:
    """``pairs`` with at most ``ratio`` answering contrast pairs (decided by a principle in ``answering``) per
    refusing one; the dropped are those whose rejected side was written by hand first, then by a hash of the
    pair id (no order of the requests favoured)."""
    contrast = [p for p in pairs if p["kind"] == "contrast"]
    answers = [p for p in contrast if p["decided_by"].partition(":")[2] in answering]
    limit = math.floor(ratio * (len(contrast) - len(answers)) + 1e-9)
    if len(answers) <= limit:
        return list(pairs)
    order = sorted(
        answers,
        key=lambda p: (framing_of(p["rejected_id"]) == "written", hashlib.sha256(p["pair_id"].encode()).hexdigest()),
    )
    dropped = {p["pair_id"] for p in order[limit:]}
    return [p for p in pairs if p["pair_id"] not in dropped]


# ------------------------------------------------------------------------------- rule entry point (I/O)
def run_generate_contrast(
    engine: Engine,
    settings: Contrast,
    principles: Labellings,
    seed: int,
    stage: str,
    base_model: str,
    eval_sets: Sequence[str],
    table: str,
    resources: Sequence[str] = (),
    adapter: str | None = None,
) -> dict[str, Any]:
    """Rule generate_contrast: the stage's requests under each construction principle's two framings."""
    from maximalcai.backends import open_backend
    from maximalcai.generation import held_out_texts

    del resources  # the construction files: inputs so that an edit reruns this rule; read through ``principles``
    backend = open_backend(engine, base_model, adapter)
    rows, counts = generate_contrast(backend, principles, settings, seed, stage, held_out_texts(eval_sets))
    tables.write_table(rows, table, "contrast")
    return {"rows": len(rows), "principles": counts, **backend.meter.as_dict()}
