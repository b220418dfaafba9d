"""Instruction and response generation: filters with a known funnel, provenance, determinism."""

import copy
import json
import random
from pathlib import Path

import pytest

from conftest import REPO
from maximalcai import tables, verifiable
from maximalcai.generation import (
    Constraints,
    Instructions,
    Responses,
    attach_constraints,
    candidates_per_instruction,
    filter_instructions,
    generate_instruction_candidates,
    generate_responses,
    run_aggregate_instructions,
    run_aggregate_responses,
    run_instruction_shard,
    run_response_shard,
)
from maximalcai.prompting import PoolExample, load_pool, shared_draws

POOL = REPO / "resources/pools/stage1_explicit.jsonl"
SETTINGS = {
    "count": 3,
    "candidates": 8,
    "shard_size": 4,
    "fewshot_k": 2,
    "fewshot_share": 1,
    "sampling": {"temperature": 1.0, "top_p": 0.95, "top_k": 0, "max_new_tokens": 8, "repetition_penalty": 1.0},
    "filters": {"min_words": 3, "max_words": 12, "max_similarity": 0.7, "banned_words": ["image"]},
    "constraints": {"share": 0.0, "second_share": 0.25, "types": None},
}


def candidate(i, text, finish="stop"):
    return {"candidate_id": f"stage1-c{i:05d}", "text": text, "finish_reason": finish}


def test_filters_drop_in_order_and_the_funnel_adds_up():
    pool = [PoolExample("p1", "Write a haiku about a rainy Monday morning.", "x")]
    rows = [
        candidate(0, "Explain how tides work."),
        candidate(1, "Describe this image in detail please."),  # banned word
        candidate(2, "Hi there"),  # too short
        candidate(3, "Write a haiku about a rainy Monday morning please."),  # near-duplicate of the pool
        candidate(4, "Explain how the tides work."),  # near-duplicate of candidate 0
        candidate(5, "List three uses for baking soda.", finish="length"),  # unfinished
        candidate(6, "- a list item pretending to be a task"),  # starts with a symbol
        candidate(7, "Give me a recipe for tomato soup."),
        candidate(8, "Summarize the plot of Hamlet briefly."),
        candidate(9, "Translate good morning into French."),  # surplus beyond count=3
        candidate(10, "Explain why the moon has phases in detail."),  # an eval prompt's task: kept out of training
    ]
    rows.insert(7, rows.pop())
    kept, funnel = filter_instructions(
        rows, pool, Instructions.from_section(SETTINGS), held_out=["Explain why the moon has phases."]
    )
    assert [r["candidate_id"][-1] for r in kept] == ["0", "7", "8"]
    drops = {f["filter"]: f["dropped"] for f in funnel if "dropped" in f}
    assert drops == {
        "mentions something a text-only model cannot see or produce (banned_words)": 1,
        "shorter than min_words=3": 1,
        "near-duplicate of a pool example (ROUGE-L > 0.7)": 1,
        "near-duplicate of another candidate (ROUGE-L > 0.7)": 1,
        "unfinished: hit max_new_tokens before the next block": 1,
        "starts with punctuation or a symbol": 1,
        "surplus: already kept instructions.count=3": 1,
        "near-duplicate of a held-out eval prompt (ROUGE-L > 0.7)": 1,
    }
    assert funnel[0]["rows"] == 11 and funnel[-1] == {"filter": "kept", "rows": 3}
    assert funnel[0]["rows"] - sum(drops.values()) == funnel[-1]["rows"]


def test_constraints_are_attached_to_a_share_of_instructions_in_ifevals_words():
    rows = [
        {
            "instruction": f"Describe animal number {i}.",
            "task": f"Describe animal number {i}.",
            "instruction_id_list": [],
            "constraint_kwargs": "[]",
        }
        for i in range(60)
    ]
    attach_constraints(rows, Constraints(share=0.5, second_share=0.0, types=None), seed=42, stage="stage1")
    constrained = [r for r in rows if r["instruction_id_list"]]
    assert len(constrained) == 30
    assert len({r["instruction_id_list"][0] for r in constrained}) == len(
        verifiable.training_types()
    )  # spread over types
    for row in constrained:
        kwargs = json.loads(row["constraint_kwargs"])
        assert row["instruction"] == " ".join(
            [row["task"]] + [verifiable.describe(i, k) for i, k in zip(row["instruction_id_list"], kwargs)]
        )
        assert verifiable.YES_NO not in row["instruction_id_list"]
    again = [{**r, "instruction": r["task"], "instruction_id_list": [], "constraint_kwargs": "[]"} for r in rows]
    attach_constraints(again, Constraints(share=0.5, second_share=0.0, types=None), seed=42, stage="stage1")
    assert again == rows  # seeded


def test_constrained_instructions_draw_examples_from_the_constraint_pool(tiny_backend):
    pool = load_pool(POOL)
    constraint_pool = load_pool(REPO / "resources/pools/stage1_constraints.jsonl")
    instructions = [
        {"instruction_id": f"stage1-i{i:05d}", "instruction": f"Task {i}.", "instruction_id_list": ids}
        for i, ids in enumerate([[], ["punctuation:no_comma"], [], ["startend:quotation"]])
    ]
    settings = {
        "per_instruction": 2,
        "fewshot_k": 2,
        "fewshot_share": 2,
        "on_policy": False,
        "sampling": SETTINGS["sampling"],
    }
    rows = generate_responses(
        tiny_backend, pool, instructions, "stage1", 0, Responses.from_section(settings), 42, constraint_pool
    )
    for row in rows:
        constrained = row["instruction_id"] in ("stage1-i00001", "stage1-i00003")
        assert all(i.startswith("vc-" if constrained else "s1-") for i in row["fewshot_ids"]), row


def test_shared_draws_reuse_one_draw_per_group():
    pool = load_pool(POOL)
    draws = shared_draws(pool, 3, 4, 10, random.Random(0))
    assert len(draws) == 10 and draws[0] is draws[3] and draws[3] is not draws[4] and draws[8] is draws[9]


def test_instruction_candidates_carry_provenance_and_are_deterministic(tiny_backend):
    pool = load_pool(POOL)
    rows = generate_instruction_candidates(
        tiny_backend, pool, "stage1", 1, Instructions.from_section(SETTINGS), seed=42
    )
    assert [r["candidate_id"] for r in rows] == [f"stage1-c{i:05d}" for i in range(4, 8)]
    assert all(len(r["fewshot_ids"]) == 2 and r["generator"] == tiny_backend.model_name for r in rows)
    tables.to_arrow(rows, "instruction_candidates")  # schema-valid
    assert rows == generate_instruction_candidates(
        tiny_backend, pool, "stage1", 1, Instructions.from_section(SETTINGS), seed=42
    )


def test_candidates_of_one_instruction_see_different_fewshot_draws(tiny_backend):
    pool = load_pool(POOL)
    instructions = [
        {"instruction_id": f"stage1-i{i:05d}", "instruction": f"Task number {i}.", "instruction_id_list": []}
        for i in range(3)
    ]
    settings = {
        "per_instruction": 2,
        "fewshot_k": 2,
        "fewshot_share": 3,
        "on_policy": False,
        "sampling": SETTINGS["sampling"],
    }
    rows = generate_responses(tiny_backend, pool, instructions, "stage1", 0, Responses.from_section(settings), seed=42)
    assert len(rows) == 6
    by_instruction = {}
    for row in rows:
        by_instruction.setdefault(row["instruction_id"], []).append(row["fewshot_ids"])
    assert all(a != b for a, b in by_instruction.values())
    tables.to_arrow(rows, "responses")


@pytest.fixture()
def tiny_cfg(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["hardware"].update(device="cpu", dtype="float32")
    cfg["generation"]["batch_size"] = 4
    return cfg


def test_rule_entry_points_write_tables_and_manifests(tmp_path, tiny_cfg, tiny_model_dir):
    """Each step through run_job, as its workflow script calls it: named arguments in, the manifest out."""
    import json
    from types import SimpleNamespace

    from maximalcai.job import run_job

    def job(function, rule, inputs, outputs, params, wildcards):
        fake = SimpleNamespace(
            input=inputs,
            output=outputs,
            params=params,
            wildcards=wildcards,
            log=[str(tmp_path / f"{rule}.log")],
            threads=1,
            rule=rule,
            config=tiny_cfg,
        )
        run_job(fake, function)
        return json.loads(Path(outputs["manifest"]).read_text())

    engine = {k: tiny_cfg[k] for k in ("hardware", "generation")}
    settings = {
        **SETTINGS,
        "count": 4,
        "filters": {**SETTINGS["filters"], "min_words": 1, "max_words": 50, "max_similarity": 1.0, "banned_words": []},
    }
    shards, manifests = [], []
    for shard in range(2):
        shards.append(str(tmp_path / f"shard{shard}.parquet"))
        manifests.append(str(tmp_path / f"shard{shard}.json"))
        manifest = job(
            run_instruction_shard,
            "generate_instructions",
            {"base_model": str(tiny_model_dir), "pool": str(POOL)},
            {"table": shards[-1], "manifest": manifests[-1]},
            {"engine": engine, "settings": settings, "seed": 42},
            {"stage": "stage1", "shard": str(shard)},
        )
    assert manifest["generated_tokens"] > 0 and manifest["packages"]["torch"] and manifest["config"]["seed"] == 42
    assert manifest["constitution"]["sha256"] and manifest["rule"] == "generate_instructions"
    assert manifest["shard"] == 1 and manifest["stage"] == "stage1" and manifest["seconds"] > 0
    # the tiny random model rarely writes a usable instruction: make every candidate acceptable
    for path in shards:
        rows = tables.read_table(path, "instruction_candidates")
        for r in rows:
            r.update(text=r["text"] or "placeholder task", finish_reason="stop")
        tables.write_table(rows, path, "instruction_candidates")
    settings["constraints"] = {"share": 0.5, "second_share": 0.0, "types": None}
    evals = [tiny_cfg["evaluation"][name] for name in ("helpful", "redteam", "borderline")]
    summary = run_aggregate_instructions(
        Instructions.from_section(settings),
        42,
        "stage1",
        shards,
        manifests,
        str(POOL),
        evals,
        str(tmp_path / "ins.parquet"),
    )
    instructions = tables.read_table(tmp_path / "ins.parquet", "instructions")
    assert len(instructions) == 4 and sum(bool(r["instruction_id_list"]) for r in instructions) == 2
    assert summary["rows"] == 4 and summary["generation"]["shards"] == 2
    response_settings = {
        "per_instruction": 2,
        "shard_size": 3,
        "fewshot_k": 2,
        "fewshot_share": 2,
        "on_policy": True,  # a third candidate: the generator's greedy zero-shot answer
        "sampling": SETTINGS["sampling"],
    }
    parts = []
    for shard in range(2):
        parts.append((str(tmp_path / f"r{shard}.parquet"), str(tmp_path / f"r{shard}.json")))
        job(
            run_response_shard,
            "generate_responses",
            {"base_model": str(tiny_model_dir), "pool": str(POOL), "instructions": str(tmp_path / "ins.parquet")},
            {"table": parts[-1][0], "manifest": parts[-1][1]},
            {"engine": engine, "settings": response_settings, "seed": 42},
            {"stage": "stage1", "shard": str(shard)},
        )
    job(
        run_aggregate_responses,
        "aggregate_responses",
        {
            "shard_tables": [p for p, _ in parts],
            "shard_manifests": [m for _, m in parts],
            "instructions": str(tmp_path / "ins.parquet"),
        },
        {"table": str(tmp_path / "resp.parquet"), "manifest": str(tmp_path / "resp.json")},
        {"per_instruction": candidates_per_instruction(Responses.from_section(response_settings))},
        {"stage": "stage1"},
    )
    responses = tables.read_table(tmp_path / "resp.parquet", "responses")
    assert len(responses) == 12
    greedy = [r for r in responses if r["candidate_index"] == 2]
    assert len(greedy) == 4 and all(r["fewshot_ids"] == [] and '"temperature":0.0' in r["sampling"] for r in greedy)
    assert json.loads((tmp_path / "resp.json").read_text())["generation"]["shards"] == 2
