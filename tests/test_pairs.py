"""Pair building: every filter with hand-made rows whose funnel is known."""

from maximalcai import tables
from maximalcai.pairs import assign_split, build_pairs

SETTINGS = {"min_margin": 0.1, "unsafe_chosen": "swap", "max_copy_similarity": 0.7, "max_similarity": 0.9,
            "min_chars": 5, "max_chars": 200, "dedupe_by_prompt": True, "heldout_fraction": 0.0}
FEWSHOT = ["Red, blue and yellow are the three traditional primary colors."]


def case(n, a, b, p, a_safe="safe", b_safe="safe", instruction=None):
    return (n, a, b, p, a_safe, b_safe, instruction or f"Question {n}?")


CASES = [
    case(0, "A clear and correct answer.", "A worse answer here.", 0.8),  # kept
    case(1, "Unsafe detailed instructions.", "A safe refusal here.", 0.9, a_safe="unsafe"),  # swapped
    case(2, "Unsafe text one here.", "Unsafe text two here.", 0.7, "unsafe", "unsafe"),  # dropped: safety
    case(3, "Malformed verdict text.", "Another answer here.", 0.7, a_safe="malformed", b_safe="unsafe"),  # safety
    case(4, "Slight preference one.", "Slight preference two.", 0.55),  # dropped: margin
    case(5, "Red, blue and yellow are the three traditional primary colors.", "Green maybe?", 0.9),  # copied
    case(6, "Exactly the same text.", "Exactly the same text.", 0.9),  # near-identical
    case(7, "Tiny", "Also a longer answer.", 0.9),  # length (chosen 4 chars)
    case(8, "First answer to the shared question.", "Second answer, weaker one.", 0.7, instruction="Shared?"),
    case(9, "Better answer to the shared question.", "Weaker answer to it again.", 0.95, instruction="Shared?"),
]


def tables_for(cases):
    responses, safety, preferences = [], [], []
    for n, a, b, p, a_safe, b_safe, instruction in cases:
        iid = f"stage1-i{n:05d}"
        for j, (text, label) in enumerate([(a, a_safe), (b, b_safe)]):
            rid = f"{iid}-r{j}"
            responses.append({"response_id": rid, "instruction_id": iid, "instruction": instruction,
                              "candidate_index": j, "response": text})
            safety.append({"text_id": rid, "label": label})
        preferences.append({"comparison_id": f"{iid}-r0-vs-r1", "instruction_id": iid, "stage": "stage1",
                            "kind": "responses", "a_id": f"{iid}-r0", "b_id": f"{iid}-r1", "principle_ids": ["p"],
                            "soft_label": p, "constitution_hash": "h"})
    return responses, safety, preferences


def test_funnel_is_known_and_adds_up():
    responses, safety, preferences = tables_for(CASES)
    pairs, funnel = build_pairs(responses, [], safety, preferences, SETTINGS, 42, "stage1", FEWSHOT)
    assert [(f["filter"], f["rows_in"], f["rows_out"]) for f in funnel] == [
        ("comparisons", 20, 10), ("safety", 10, 8), ("min_margin", 8, 7), ("copied", 7, 6),
        ("near_identical", 6, 5), ("length", 5, 4), ("dedupe_by_prompt", 4, 3), ("split", 3, 3),
    ]
    for row in funnel[1:]:  # step 0 turns texts into comparisons; every later step only drops
        assert row["rows_in"] - row["rows_out"] == row["dropped"]
    assert all(a["rows_out"] == b["rows_in"] for a, b in zip(funnel, funnel[1:]))
    kept = {p["instruction_id"][-1]: p for p in pairs}
    assert set(kept) == {"0", "1", "9"}
    assert kept["1"]["chosen"] == "A safe refusal here." and kept["1"]["safety_swapped"]
    assert kept["1"]["soft_label"] == 0.1  # the labeller preferred the other side
    assert all(p["chosen_safety"] == "safe" for p in pairs)
    assert kept["0"]["prompt"] == "### Instruction:\nQuestion 0?\n\n### Response:\n"
    tables.to_arrow(pairs, "pairs")
    tables.to_arrow(funnel, "pairs_funnel")


def test_drop_policy_never_swaps():
    responses, safety, preferences = tables_for(CASES[:2])
    pairs, _ = build_pairs(responses, [], safety, preferences, {**SETTINGS, "unsafe_chosen": "drop"}, 42, "stage1")
    assert [p["instruction_id"] for p in pairs] == ["stage1-i00000"]


def test_split_is_seeded_and_keeps_a_training_pair():
    pairs = [{"pair_id": f"p{i}", "split": "train"} for i in range(10)]
    assign_split(pairs, 0.2, 42, "stage1")
    held = [p["pair_id"] for p in pairs if p["split"] == "heldout"]
    assert len(held) == 2
    again = [{"pair_id": f"p{i}", "split": "train"} for i in range(10)]
    assign_split(again, 0.2, 42, "stage1")
    assert held == [p["pair_id"] for p in again if p["split"] == "heldout"]
    two = [{"pair_id": "a", "split": "train"}, {"pair_id": "b", "split": "train"}]
    assign_split(two, 0.9, 1, "stage1")
    assert sorted(p["split"] for p in two) == ["heldout", "train"]
