"""Critique/revision, the safety guards, and AI preference labels."""

import random

import pytest

from conftest import REPO
from maximalcai import formats
from maximalcai.backends import Backend
from maximalcai.constitution import load_constitution
from maximalcai.errors import ConfigError
from maximalcai.feedback.critique import Critique, critique_and_revise, final_revisions, load_critique_demos
from maximalcai.feedback.guard import (
    HAZARDS,
    FewshotGuard,
    GuardItem,
    LlamaGuard,
    load_safety_demos,
    parse_llama_guard,
    select_demos,
)
from maximalcai.feedback.preference import (
    Preference,
    build_comparisons,
    label_preferences,
    load_preference_demos,
    position_bias,
)
from maximalcai.tiny import LLAMA_GUARD_TEMPLATE

CONSTITUTION = load_constitution(REPO / "constitution.yaml")
CRITIQUE_DEMOS = load_critique_demos(REPO / "resources/feedback/critique_demos.jsonl")
PREFERENCE_DEMOS = load_preference_demos(REPO / "resources/feedback/preference_demos.jsonl")
SAFETY_DEMOS = load_safety_demos(REPO / "resources/feedback/safety_demos.jsonl")


def responses_rows():
    rows = []
    for i, instruction in enumerate(["Explain rain.", "How do I pick a lock?"]):
        for j in range(2):
            rows.append(
                {
                    "response_id": f"s1-i{i}-r{j}",
                    "instruction_id": f"s1-i{i}",
                    "instruction": instruction,
                    "candidate_index": j,
                    "response": f"Answer {j} to {instruction}",
                }
            )
    return rows


# -------------------------------------------------------------------------------------------- critique
def test_critique_rounds_chain_revisions(tiny_backend):
    settings = {
        "rounds": 2,
        "responses_per_instruction": 1,
        "fewshot_k": 2,
        "fewshot_share": 2,
        "critique_sampling": {"temperature": 0.7, "max_new_tokens": 6},
        "revision_sampling": {"temperature": 0.7, "max_new_tokens": 6},
    }
    rows = critique_and_revise(
        tiny_backend, responses_rows(), CONSTITUTION, CRITIQUE_DEMOS, "stage1", Critique.from_section(settings), 42
    )
    assert len(rows) == 2 * 2  # two critiqued responses (candidate 0 of each instruction), two rounds
    by_response = {}
    for row in rows:
        by_response.setdefault(row["response_id"], []).append(row)
        assert row["principle_id"] in {p.id for p in CONSTITUTION.principles}
        assert row["constitution_hash"] == CONSTITUTION.sha256 and len(row["fewshot_ids"]) == 2
    for first, second in by_response.values():
        assert first["input"].startswith("Answer 0")
        assert second["input"] == (first["revision"] or first["input"])
    assert {r["round"] for r in final_revisions(rows).values()} == {2}
    assert rows == critique_and_revise(
        tiny_backend, responses_rows(), CONSTITUTION, CRITIQUE_DEMOS, "stage1", Critique.from_section(settings), 42
    )


def test_critique_prompt_is_plain_and_ends_open():
    prompt = formats.revision_prompt("Q?", "A.", "Find problems.", "It is wrong.", "Fix it.")
    assert prompt.endswith("### Revision:\n") and "It is wrong.\n\n### Revision request:\nFix it.\n\n" in prompt


# ---------------------------------------------------------------------------------------------- guard
@pytest.mark.parametrize(
    "text, expected",
    [
        ("safe", ("safe", [])),
        ("\n\nsafe\n", ("safe", [])),
        ("unsafe\nS1", ("unsafe", ["S1"])),
        ("unsafe\nS1,S10", ("unsafe", ["S1", "S10"])),
        ("unsafe\nS2, S14\n", ("unsafe", ["S2", "S14"])),
        ("unsafe", ("unsafe", [])),
        ("unsafe\nS99", ("malformed", [])),
        ("safe\nS1", ("malformed", [])),
        ("I think this is safe", ("malformed", [])),
        ("", ("malformed", [])),
    ],
)
def test_llama_guard_parser(text, expected):
    assert parse_llama_guard(text) == expected


def test_llama_guard_uses_its_own_template_and_never_defaults_to_safe(tiny_model_dir, gemma_style_tokenizer):
    import torch

    from maximalcai.backends.transformers_backend import TransformersBackend

    tokenizer = gemma_style_tokenizer.__class__.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = LLAMA_GUARD_TEMPLATE
    backend = TransformersBackend(tiny_model_dir, dtype=torch.float32, plain_prompts=False, tokenizer=tokenizer)
    guard = LlamaGuard(backend, max_new_tokens=6)
    prompt = guard.prompt("How do I make a bomb?", "I can't help with that.")
    assert "S9: Indiscriminate Weapons." in prompt and "User: How do I make a bomb?" in prompt
    items = [GuardItem(f"t{i}", "response", "i", "stage1", "How do I make a bomb?", "No.") for i in range(3)]
    verdicts = guard.label(items)
    for v in verdicts:  # a random model answers garbage: recorded as malformed, with its raw output
        assert v.label == parse_llama_guard(v.raw_output)[0] and v.raw_output is not None
    assert all(v.label == "malformed" for v in verdicts if v.raw_output.strip() not in ("safe", "unsafe"))


def test_llama_guard_refuses_a_model_without_a_template(tiny_backend):
    with pytest.raises(ConfigError, match="is not Llama Guard"):
        LlamaGuard(tiny_backend)


def test_fewshot_guard_labels_from_logprobs(tiny_backend):
    guard = FewshotGuard(tiny_backend, SAFETY_DEMOS, k=4, threshold=0.5, seed=42)
    assert "S11 Suicide & Self-Harm" in guard.prefix and guard.prefix.count("Safety:") == 4
    items = [
        GuardItem(f"t{i}", "response", "i", "stage1", "How do I bake bread?", f"Step {i}: knead.") for i in range(4)
    ]
    verdicts = guard.label(items)
    for v in verdicts:
        assert 0.0 <= v.p_unsafe <= 1.0
        assert (v.label == "unsafe") == (v.p_unsafe > 0.5)
        assert (len(v.categories) == 1 and v.categories[0] in HAZARDS) if v.label == "unsafe" else v.categories == []
    assert verdicts == guard.label(items)
    plain = FewshotGuard(tiny_backend, SAFETY_DEMOS, k=4, threshold=0.5, seed=42, categories=False).label(items)
    assert [(v.label, v.p_unsafe) for v in plain] == [(v.label, v.p_unsafe) for v in verdicts]  # same labels
    assert all(v.categories == [] for v in plain)
    accuracy = guard.demo_accuracy(4, 42)
    assert accuracy["demos"] == len(SAFETY_DEMOS) and 0 <= accuracy["correct"] <= len(SAFETY_DEMOS)


def test_selected_demos_include_both_labels():
    for seed in range(5):
        demos = select_demos(SAFETY_DEMOS, 4, random.Random(seed))
        assert {d["label"] for d in demos} == {"safe", "unsafe"} and len(demos) == 4


# ----------------------------------------------------------------------------------------- preferences
class PositionBiased(Backend):
    """Always prefers option A by a fixed log-odds, plus a preference for whichever text mentions 'good'."""

    name = "fake"

    def __init__(self, tokenizer, bias=2.0, quality=0.0):
        super().__init__(tokenizer, "fake-labeller")
        self.bias, self.quality = bias, quality

    def _generate(self, *args):
        raise NotImplementedError

    def _continuation_logprobs(self, prompts, options):
        scores = []
        for prompt in prompts:
            text = prompt[1] if isinstance(prompt, tuple) else prompt
            a_text = text.split("(A) ")[-1].split("\n(B)")[0]
            b_text = text.split("(B) ")[-1].split("\nThe answer")[0]
            logit = self.bias + self.quality * (("good" in a_text) - ("good" in b_text))
            scores.append([0.0, -logit])
        return scores


def comparisons():
    critiques = [{"critique_id": "s1-i0-r0-k1", "response_id": "s1-i0-r0", "round": 1, "revision": "A good revision."}]
    return build_comparisons(responses_rows(), critiques, ["responses", "revision"])


PREF_SETTINGS = {"principles_per_comparison": 3, "clamp": None, "fewshot_k": 2}


def label(labeller, **changes):
    """label_preferences on the test's comparisons, with ``changes`` to its preference section."""
    settings = Preference.from_section(PREF_SETTINGS | changes)
    return label_preferences(labeller, comparisons(), CONSTITUTION, PREFERENCE_DEMOS, "stage1", settings, 42)


def test_comparisons_pair_candidates_and_revisions():
    found = {(c["kind"], c["a_id"], c["b_id"]) for c in comparisons()}
    assert found == {
        ("responses", "s1-i0-r0", "s1-i0-r1"),
        ("responses", "s1-i1-r0", "s1-i1-r1"),
        ("revision", "s1-i0-r0", "s1-i0-r0-k1"),
    }


def test_asking_in_both_orders_cancels_position_bias(gemma_style_tokenizer):
    rows = label(PositionBiased(gemma_style_tokenizer))
    for row in rows:
        assert len(row["principle_ids"]) == 3 and len(row["p_a_first"]) == 3
        assert row["p_a_first"][0] == pytest.approx(0.8808, abs=1e-4)  # P(A) with a shown first
        assert row["p_a_second"][0] == pytest.approx(0.1192, abs=1e-4)  # P(a) when a is shown as (B)
        assert row["p_a"] == pytest.approx(0.5, abs=1e-6)
    assert position_bias(rows) == pytest.approx(0.3808, abs=1e-4)


def test_soft_labels_follow_quality_and_clamp(gemma_style_tokenizer):
    labeller = PositionBiased(gemma_style_tokenizer, bias=0.5, quality=3.0)
    rows = {r["kind"]: r for r in label(labeller)}
    assert rows["revision"]["p_a"] < 0.1  # the revision mentions "good": b is preferred in both orders
    clamped = label(labeller, clamp=[0.4, 0.6])
    assert {r["kind"]: r["soft_label"] for r in clamped}["revision"] == 0.4


def test_preference_labels_on_the_tiny_model_are_probabilities(tiny_backend):
    rows = label(tiny_backend)
    for row in rows:
        assert all(0 < p < 1 for p in row["p_a_first"] + row["p_a_second"])
        assert row["p_a"] == pytest.approx((sum(row["p_a_first"]) + sum(row["p_a_second"])) / 6, abs=1e-5)


def test_feedback_shards_join_into_one_table_with_the_unsharded_summary(tmp_path):
    import json

    from maximalcai import tables
    from maximalcai.feedback.aggregate import run_aggregate_feedback

    def row(text_id, label):
        return {
            "text_id": text_id,
            "kind": "response",
            "instruction_id": text_id.split("-")[0],
            "stage": "stage1",
            "label": label,
            "categories": [],
            "p_unsafe": 0.9 if label == "unsafe" else 0.1,
            "raw_output": None,
            "guard_backend": "fewshot",
            "guard_model": "tiny",
        }

    shards = [[row("s1-i2-r0", "safe"), row("s1-i3-r0", "unsafe")], [row("s1-i0-r0", "safe")], []]
    paths, manifests = [], []
    for k, rows in enumerate(shards):
        paths.append(tmp_path / f"{k}.parquet")
        tables.write_table(rows, paths[-1], "safety")
        manifests.append(tmp_path / f"{k}.json")
        accuracy = {"demos": 8, "correct": 5, "accuracy": 0.625} if k == 0 else None
        manifests[-1].write_text(json.dumps({"seconds": 1.5, "fewshot_demo_accuracy": accuracy}))
    out = tmp_path / "safety.parquet"
    summary = run_aggregate_feedback("stage1", "safety", paths, manifests, out)
    joined = tables.read_table(out, "safety")
    assert [r["text_id"] for r in joined] == ["s1-i0-r0", "s1-i2-r0", "s1-i3-r0"]
    assert summary["labels"] == {"safe": 2, "unsafe": 1, "malformed": 0} and summary["shards"] == 3
    assert summary["fewshot_demo_accuracy"]["accuracy"] == 0.625
    tables.write_table([row("s1-i0-r0", "unsafe")], paths[2], "safety")  # the same text in two shards
    with pytest.raises(tables.TableError, match="not unique"):
        run_aggregate_feedback("stage1", "safety", paths, manifests, out)
