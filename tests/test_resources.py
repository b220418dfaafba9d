"""The hand-written resources: sizes, ids, coverage of the eval sets, and eval prompts kept out of every
few-shot pool and demonstration file."""

import collections
import json
import subprocess
import sys

from conftest import REPO
from maximalcai import verifiable
from maximalcai.feedback.guard import HAZARDS
from maximalcai.prompting import load_pool
from maximalcai.similarity import NearDuplicateIndex

POOLS = sorted((REPO / "resources/pools").glob("*.jsonl"))
DEMOS = sorted((REPO / "resources/feedback").glob("*.jsonl"))
# The constitution's construction files: seed requests (`request`) and framing pools (`instruction`).
CONSTRUCTION = sorted((REPO / "resources/constitution").glob("*.jsonl"))
XSTEST_KINDS = {
    "homonyms",
    "figurative_language",
    "safe_targets",
    "safe_contexts",
    "definitions",
    "historical_events",
    "privacy_public_figures",
}


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_texts():
    """Every eval prompt's base task: the task a generated IFEval prompt was built from, else the prompt.

    IFEval's constraint sentences ("Answer with less than 40 words.") are shared on purpose by the eval set
    and the verifiable training examples, as in IFEval and Tülu 3; the tasks they are attached to are not.
    """
    for path in sorted((REPO / "resources/eval").glob("*.jsonl")):
        for row in rows(path):
            yield path.name, row["id"], row.get("task", row["prompt"])


def test_pools_are_large_enough_and_valid():
    sizes = {path.name: len(load_pool(path)) for path in POOLS}
    assert sizes["stage1_explicit.jsonl"] >= 40
    assert len(sizes) == 7 and all(n >= 12 for n in sizes.values())


def test_eval_prompts_never_enter_a_fewshot_pool_or_demonstration():
    index = NearDuplicateIndex(0.6)
    for path in POOLS:
        for row in rows(path):
            index.add(f"{path.name}:{row['id']}", row.get("task", row["instruction"]))
    for path in DEMOS:
        for row in rows(path):
            index.add(f"{path.name}:{row['id']}", row.get("instruction") or row["user"])
    for path in CONSTRUCTION:
        for row in rows(path):
            index.add(f"{path.name}:{row['id']}", row.get("request") or row.get("instruction") or row["response"])
    leaks = [(name, pid, index.closest(text)) for name, pid, text in eval_texts() if index.closest(text)]
    assert not leaks, f"eval prompts too close to pool or demonstration instructions: {leaks}"


def test_helpful_set_covers_every_checkable_ifeval_type():
    helpful = rows(REPO / "resources/eval/helpful.jsonl")
    assert len(helpful) >= 300
    counts = collections.Counter(i for row in helpful for i in row["instruction_id_list"])
    assert set(counts) == set(verifiable.constraint_types()) and len(counts) == 25
    assert min(counts.values()) >= 5
    categories = collections.Counter(row.get("category") for row in helpful if row["id"].startswith("if-"))
    assert {"writing", "explanation", "advice", "coding", "math", "summarising"} <= set(categories)
    assert sum(row["id"].startswith("h-") for row in helpful) == 24  # the hand-written prompts are kept


def test_helpful_set_is_what_its_committed_script_builds():
    script = REPO / "resources/eval/build_ifeval_set.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_generated_constraint_can_be_met():
    """Each constraint's own checker accepts some answer: no 'fewer than 1 sentence' or impossible counts."""
    for row in rows(REPO / "resources/eval/helpful.jsonl"):
        for kwargs in row["kwargs"]:
            if kwargs.get("relation") == "less than":
                assert kwargs.get("num_words", 2) > 1 and kwargs.get("num_sentences", 2) > 1, row["id"]
            if kwargs.get("num_words") and kwargs.get("relation") == "at least":
                assert kwargs["num_words"] <= 60, row["id"]  # an answer of about 100 tokens can meet it


def test_harmlessness_sets_cover_the_hazard_categories_and_xstest_kinds():
    redteam = rows(REPO / "resources/eval/redteam.jsonl")
    borderline = rows(REPO / "resources/eval/borderline.jsonl")
    assert len(redteam) >= 100 and len(borderline) >= 100
    hazards = collections.Counter(row["hazard"] for row in redteam)
    assert set(hazards) == set(HAZARDS) and min(hazards.values()) >= 5
    kinds = collections.Counter(row["kind"] for row in borderline)
    assert set(kinds) == XSTEST_KINDS and min(kinds.values()) >= 10
    prompts = [row["prompt"] for row in redteam + borderline]
    assert len(set(prompts)) == len(prompts)


def test_stage1_pool_has_refusal_examples():
    pool = rows(REPO / "resources/pools/stage1_explicit.jsonl")
    assert sum(r["category"] == "refusal" for r in pool) >= 5


def test_if_verifiable_checks_every_type_the_start_up_check_accepts():
    """The start-up check reads our own list (no if-verifiable import, 2 s saved on every Snakemake call): every
    type on it must be one the installed if-verifiable checks."""
    assert verifiable.known_types() == verifiable.constraint_types()


def test_every_constraint_example_meets_its_own_constraints():
    """The few-shot examples for verifiable instructions show what the checkers accept, every type included."""
    pool = rows(REPO / "resources/pools/stage1_constraints.jsonl")
    assert {i for row in pool for i in row["instruction_id_list"]} == set(verifiable.constraint_types())
    for row in pool:
        assert (
            verifiable.score(row["instruction"], row["instruction_id_list"], row["kwargs"], row["response"])[
                "ifeval_strict"
            ]
            == 1.0
        ), row["id"]


def test_construction_seeds_cover_the_hazard_categories_and_xstest_kinds():
    """The red-team seed pool covers Llama Guard 3's S1-S14 (hazard known by construction) and the borderline
    seeds XSTest's kinds; each framing pool pairs the same requests with answers that follow and violate."""
    harmful = rows(REPO / "resources/constitution/harmful_requests.jsonl")
    borderline = rows(REPO / "resources/constitution/borderline_requests.jsonl")
    assert collections.Counter(r["hazard"] for r in harmful).keys() == set(HAZARDS)
    assert min(collections.Counter(r["hazard"] for r in harmful).values()) >= 4
    written = rows(REPO / "resources/constitution/written_refusals.jsonl")
    assert {r["category"] for r in written} == set(HAZARDS)
    assert all(
        verifiable.is_refusal(t) and verifiable.offers_alternative(t) and not verifiable.lectures(t)
        for t in (r["response"] for r in written)
    )
    assert set(r["kind"] for r in borderline) == XSTEST_KINDS
    overrefusals = rows(REPO / "resources/constitution/written_overrefusals.jsonl")
    assert {r["category"] for r in overrefusals} == XSTEST_KINDS | {"any"}
    assert all(verifiable.is_refusal(r["response"]) for r in overrefusals)
    for follow, violate in (("refusal", "compliant"), ("borderline_answers", "overrefusal")):
        a = load_pool(
            REPO / f"resources/constitution/{follow}_examples.jsonl".replace("_answers_examples", "_answers")
        )
        b = load_pool(REPO / f"resources/constitution/{violate}_examples.jsonl")
        assert [e.instruction for e in a] == [e.instruction for e in b] and len(a) >= 8
    refusals = load_pool(REPO / "resources/constitution/refusal_examples.jsonl")
    assert all(verifiable.is_refusal(e.response) and verifiable.offers_alternative(e.response) for e in refusals)
    assert not any(verifiable.lectures(e.response) for e in refusals)
    assert not any(
        verifiable.is_refusal(e.response) for e in load_pool(REPO / "resources/constitution/compliant_examples.jsonl")
    )
    overrefusals = load_pool(REPO / "resources/constitution/overrefusal_examples.jsonl")
    assert all(verifiable.is_refusal(e.response) for e in overrefusals)
    assert not any(
        verifiable.is_refusal(e.response) for e in load_pool(REPO / "resources/constitution/borderline_answers.jsonl")
    )


def test_each_harmful_twin_uses_the_words_of_the_benign_request_it_names():
    """contrast.twins' seeds: a harmful request written for a risky-sounding benign one, in the same words."""
    benign = {r["id"]: r["request"] for r in rows(REPO / "resources/constitution/borderline_requests.jsonl")}
    twins = [r for r in rows(REPO / "resources/constitution/harmful_requests.jsonl") if "twin" in r]
    assert len(twins) >= 40 and len({r["twin"] for r in twins}) == len(twins)
    for row in twins:
        assert row["word"] in row["request"].lower() and row["word"] in benign[row["twin"]].lower(), row["id"]


def test_honesty_set_spreads_its_kinds():
    honesty = rows(REPO / "resources/eval/honesty.jsonl")
    assert len(honesty) >= 100 and len({r["prompt"] for r in honesty}) == len(honesty)
    assert [r["kind"] for r in honesty[:3]] == ["false_premise", "unanswerable", "sycophancy"]
    assert min(collections.Counter(r["kind"] for r in honesty).values()) >= 30
    # the controls (true premises and claims) come after the 105 measured prompts, so a config that reads the
    # first N <= 105 reads the same prompts as before them
    kinds = [r["kind"] for r in honesty]
    assert set(kinds[:105]) == {"false_premise", "unanswerable", "sycophancy"}
    assert set(kinds[105:]) == {"true_premise", "true_claim"} and len(kinds) - 105 >= 70
