"""The hand-written resources: sizes, ids, and eval prompts kept out of every few-shot pool."""

import json

from maximalcai.prompting import load_pool
from maximalcai.similarity import NearDuplicateIndex

from conftest import REPO

POOLS = sorted((REPO / "resources/pools").glob("*.jsonl"))


def eval_prompts():
    for path in sorted((REPO / "resources/eval").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            yield path.name, row["id"], row["prompt"]


def test_pools_are_large_enough_and_valid():
    sizes = {path.name: len(load_pool(path)) for path in POOLS}
    assert sizes["stage1_explicit.jsonl"] >= 40
    assert len(sizes) == 6 and all(n >= 12 for n in sizes.values())


def test_eval_prompts_never_enter_a_fewshot_pool():
    index = NearDuplicateIndex(0.6)
    for path in POOLS:
        for example in load_pool(path):
            index.add(f"{path.name}:{example.id}", example.instruction)
    leaks = [(name, pid, index.closest(prompt)) for name, pid, prompt in eval_prompts() if index.closest(prompt)]
    assert not leaks, f"eval prompts too close to pool instructions: {leaks}"


def test_stage1_pool_has_refusal_examples():
    rows = [json.loads(line) for line in (REPO / "resources/pools/stage1_explicit.jsonl").read_text().splitlines()]
    assert sum(r["category"] == "refusal" for r in rows) >= 5
