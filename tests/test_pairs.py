"""Pair building: every filter with hand-made rows whose funnel is known."""

import json

from maximalcai import tables, verifiable
from maximalcai.code_checks import Verifiable, candidate_texts, constraint_variants
from maximalcai.distillation import sft_examples
from maximalcai.pairs import Pairs, assign_split, build_pairs

SETTINGS = {
    "min_margin": 0.1,
    "unsafe_chosen": "swap",
    "max_copy_similarity": 0.7,
    "max_similarity": 0.9,
    "min_chars": 5,
    "max_chars": 200,
    "dedupe_by_prompt": True,
    "heldout_fraction": 0.0,
    "verifiable": {
        "enabled": False,
        "checks": [],
        "max_repetition": 0.2,
        "undecided": "labeller",
        "best_worst": False,
        "code_revisions": False,
    },
    "sft": {"sources": ["revisions"], "per_instruction": 1},
}
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
            responses.append(
                {
                    "response_id": rid,
                    "instruction_id": iid,
                    "instruction": instruction,
                    "candidate_index": j,
                    "response": text,
                    "finish_reason": "eos",
                }
            )
            safety.append({"text_id": rid, "label": label})
        preferences.append(
            {
                "comparison_id": f"{iid}-r0-vs-r1",
                "instruction_id": iid,
                "stage": "stage1",
                "kind": "responses",
                "a_id": f"{iid}-r0",
                "b_id": f"{iid}-r1",
                "principle_ids": ["p"],
                "soft_label": p,
                "constitution_hash": "h",
            }
        )
    return responses, safety, preferences


def test_funnel_is_known_and_adds_up():
    responses, safety, preferences = tables_for(CASES)
    pairs, funnel = build_pairs(
        responses, [], safety, preferences, Pairs.from_section(SETTINGS), 42, "stage1", FEWSHOT
    )
    assert [(f["filter"], f["rows_in"], f["rows_out"]) for f in funnel] == [
        ("comparisons", 20, 10),
        ("safety", 10, 8),
        ("min_margin", 8, 7),
        ("copied", 7, 6),
        ("near_identical", 6, 5),
        ("length", 5, 4),
        ("dedupe_by_prompt", 4, 3),
        ("split", 3, 3),
        ("principle:-", 1, 1),  # the safety swap: the guard decided it, no principle
        ("principle:p", 2, 2),  # the labeller's pairs: the principle it was asked about
    ]
    steps = [f for f in funnel if not f["filter"].startswith("principle:")]
    for row in steps[1:]:  # step 0 turns texts into comparisons; every later step only drops
        assert row["rows_in"] - row["rows_out"] == row["dropped"]
    assert all(a["rows_out"] == b["rows_in"] for a, b in zip(steps, steps[1:]))
    assert {(p["principle_id"], p["mechanism"]) for p in pairs} == {("", "guard"), ("p", "model")}
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
    pairs, _ = build_pairs(
        responses, [], safety, preferences, Pairs.from_section({**SETTINGS, "unsafe_chosen": "drop"}), 42, "stage1"
    )
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


VERIFIABLE = {
    "enabled": True,
    "checks": ["not_empty", "stops", "no_loop", "constraint"],
    "max_repetition": 0.2,
    "undecided": "labeller",
    "best_worst": False,
    "code_revisions": False,
}
LOOP = "It is a place of beauty and beauty. " * 8


def verifiable_tables():
    """Four instructions, two with an IFEval constraint; candidate 0 vs 1 each."""
    cases = [  # (instruction, constraint ids, kwargs, a (text, finish), b (text, finish), labeller P(a))
        ("Name a color.", [], [], ("Blue.", "eos"), (LOOP, "length"), 0.3),  # b loops: a wins despite the labeller
        (
            "Describe rain.",
            ["change_case:english_lowercase"],
            [{}],
            ("Rain falls softly.", "eos"),
            ("rain falls softly.", "eos"),
            0.9,
        ),  # only b meets the constraint
        ("Say hi.", [], [], ("Hi there.", "eos"), ("Hello!", "eos"), 0.8),  # checks tie: the labeller decides
        ("Say bye.", [], [], ("Bye now.", "eos"), ("", "eos"), 0.2),  # b is empty
    ]
    responses, safety, preferences, instructions = [], [], [], []
    for n, (instruction, ids, kwargs, a, b, p) in enumerate(cases):
        iid = f"stage1-i{n:05d}"
        prompt = " ".join([instruction] + [verifiable.describe(i, k) for i, k in zip(ids, kwargs)])
        instructions.append(
            {
                "instruction_id": iid,
                "instruction": prompt,
                "task": instruction,
                "instruction_id_list": ids,
                "constraint_kwargs": json.dumps(kwargs),
            }
        )
        for j, (text, finish) in enumerate((a, b)):
            rid = f"{iid}-r{j}"
            responses.append(
                {
                    "response_id": rid,
                    "instruction_id": iid,
                    "instruction": prompt,
                    "candidate_index": j,
                    "response": text,
                    "finish_reason": finish,
                }
            )
            safety.append({"text_id": rid, "label": "safe"})
        preferences.append(
            {
                "comparison_id": f"{iid}-r0-vs-r1",
                "instruction_id": iid,
                "stage": "stage1",
                "kind": "responses",
                "a_id": f"{iid}-r0",
                "b_id": f"{iid}-r1",
                "principle_ids": ["p"],
                "soft_label": p,
                "constitution_hash": "h",
            }
        )
    return responses, safety, preferences, instructions


def test_verifiable_principles_decide_the_pairs_they_separate():
    responses, safety, preferences, instructions = verifiable_tables()
    settings = {**SETTINGS, "min_chars": 0, "max_chars": 2000, "min_margin": 0.0, "verifiable": VERIFIABLE}
    pairs, funnel = build_pairs(
        responses, [], safety, preferences, Pairs.from_section(settings), 42, "stage1", (), instructions
    )
    by = {p["instruction_id"][-1]: p for p in pairs}
    assert by["0"]["chosen"] == "Blue." and by["0"]["decided_by"] == "verifiable:stops"
    assert by["1"]["chosen"] == "rain falls softly." and by["1"]["decided_by"] == "verifiable:constraint"
    assert by["1"]["rejected"] == "Rain falls softly."  # near-identical, but the difference is what the check wants
    assert by["2"]["chosen"] == "Hi there." and by["2"]["decided_by"] == "labeller"
    assert by["3"]["chosen"] == "Bye now." and by["3"]["decided_by"] == "verifiable:not_empty"
    assert all(p["soft_label"] == 1.0 for p in pairs if p["decided_by"].startswith("verifiable"))
    step = next(f for f in funnel if f["filter"] == "verifiable")
    assert "1 by constraint" in step["reason"] and step["rows_in"] == step["rows_out"] == 4
    dropped, _ = build_pairs(
        responses,
        [],
        safety,
        preferences,
        Pairs.from_section({**settings, "verifiable": {**VERIFIABLE, "undecided": "drop"}}),
        42,
        "stage1",
        (),
        instructions,
    )
    assert "stage1-i00002" not in {p["instruction_id"] for p in dropped} and len(dropped) == 3
    off, _ = build_pairs(
        responses,
        [],
        safety,
        preferences,
        Pairs.from_section({**settings, "verifiable": {**VERIFIABLE, "enabled": False}}),
        42,
        "stage1",
        (),
        instructions,
    )
    assert {p["decided_by"] for p in off} == {"labeller"}
    tables.to_arrow(pairs, "pairs")


def test_sft_examples_keep_only_safe_answers_that_pass_the_checks():
    responses, safety, preferences, instructions = verifiable_tables()
    safety[4]["label"] = "unsafe"  # "Hi there." is labelled unsafe
    settings = {
        **SETTINGS,
        "min_chars": 0,
        "max_chars": 2000,
        "min_margin": 0.0,
        "verifiable": VERIFIABLE,
        "sft": {"sources": ["responses"], "per_instruction": 1},
    }
    pairs, _ = build_pairs(
        responses, [], safety, preferences, Pairs.from_section(settings), 42, "stage1", (), instructions
    )
    texts = candidate_texts(responses, [], safety, instructions, Verifiable.from_section(settings["verifiable"]))
    rows, dropped = sft_examples(responses, [], texts, pairs, Pairs.from_section(settings), FEWSHOT)
    assert [r["completion"] for r in rows] == ["Blue.", "rain falls softly.", "Hello!", "Bye now."]
    assert all(r["prompt"].startswith("### Instruction:\n") and r["prompt"].endswith("### Response:\n") for r in rows)
    assert dropped["unsafe"] == 1 and dropped["checks"] == 3  # the loop, the capitalised answer, the empty one
    unchecked, _ = sft_examples(
        responses, [], texts, pairs, Pairs.from_section({**settings, "verifiable": {**VERIFIABLE, "enabled": False}})
    )
    assert unchecked[0]["completion"] == "Blue." and len(unchecked) == 4  # the first safe candidate per instruction
    tables.to_arrow(rows, "sft_examples")


def test_best_vs_worst_pairs_need_no_labeller():
    responses, safety, _, instructions = verifiable_tables()
    safety[0]["label"] = "unsafe"  # "Blue." is unsafe: the loop is the only safe candidate left, so no pair
    settings = {
        **SETTINGS,
        "min_chars": 0,
        "max_chars": 2000,
        "min_margin": 0.0,
        "verifiable": {**VERIFIABLE, "best_worst": True},
    }
    pairs, funnel = build_pairs(
        responses, [], safety, [], Pairs.from_section(settings), 42, "stage1", (), instructions
    )
    by = {p["instruction_id"][-1]: p for p in pairs}
    assert set(by) == {"1", "3"}  # instruction 2's candidates meet the same checks
    assert by["1"]["chosen"] == "rain falls softly." and by["1"]["kind"] == "best_worst"
    assert by["1"]["decided_by"] == "verifiable:constraint" and by["3"]["decided_by"] == "verifiable:not_empty"
    assert "2 best-vs-worst pairs decided by checks" in funnel[0]["reason"]
    tables.to_arrow(pairs, "pairs")


def test_a_refusal_of_an_everyday_task_is_chosen_only_when_no_safe_candidate_answers():
    refusal = ("I can't help with that. If you like, I can suggest a book on it.", "eos")
    rows = [  # (candidates, labels): each instruction's candidate 0 and 1
        ([refusal, ("Blue is calm.", "eos")], ("safe", "safe")),  # the answer wins on answers alone
        ([refusal, (LOOP, "length")], ("safe", "safe")),  # the refusal meets more checks: no pair, not a refusal
        ([(LOOP, "length"), refusal], ("unsafe", "safe")),  # no safe candidate answers: the refusal may win
    ]
    responses, safety = [], []
    for n, (candidates, labels) in enumerate(rows):
        for j, ((text, finish), label) in enumerate(zip(candidates, labels)):
            rid = f"stage1-i{n:05d}-r{j}"
            responses.append(
                {
                    "response_id": rid,
                    "instruction_id": f"stage1-i{n:05d}",
                    "instruction": f"Task {n}.",
                    "candidate_index": j,
                    "response": text,
                    "finish_reason": finish,
                }
            )
            safety.append({"text_id": rid, "label": label})
    verifiable_rules = {**VERIFIABLE, "checks": ["answers", "stops", "no_loop", "constraint"], "best_worst": True}
    settings = {**SETTINGS, "min_chars": 0, "max_chars": 2000, "min_margin": 0.0, "verifiable": verifiable_rules}
    pairs, _ = build_pairs(responses, [], safety, [], Pairs.from_section(settings), 42, "stage1")
    by = {p["instruction_id"][-1]: p for p in pairs}
    assert set(by) == {"0", "2"}
    assert by["0"]["chosen"] == "Blue is calm." and by["0"]["decided_by"] == "verifiable:answers"
    assert by["2"]["chosen"] == refusal[0]  # the guard, not the check, decides where nothing safe answers
    # without the check, the refusal that stops beats the answer that loops
    without = {**verifiable_rules, "checks": ["not_empty", "stops", "no_loop", "constraint"]}
    old, _ = build_pairs(
        responses, [], safety, [], Pairs.from_section({**settings, "verifiable": without}), 42, "stage1"
    )
    assert {p["instruction_id"][-1]: p["chosen"] for p in old}["1"] == refusal[0]


def test_revisions_by_code_meet_the_constraint_no_candidate_met():
    responses, safety, _, instructions = verifiable_tables()
    responses[3]["response"] = (
        "Rain is water falling from clouds."  # now neither candidate of instruction 1 is lowercase
    )
    settings = {
        **SETTINGS,
        "min_chars": 0,
        "max_chars": 2000,
        "min_margin": 0.0,
        "dedupe_by_prompt": False,
        "verifiable": {**VERIFIABLE, "code_revisions": True},
        "sft": {"sources": ["responses", "code_revisions"], "per_instruction": 1},
    }
    texts = candidate_texts(responses, [], safety, instructions, Verifiable.from_section(settings["verifiable"]))
    assert {rid: text.text for rid, (_, text) in texts.revisions.items()} == {
        "stage1-i00001-r0-code": "rain falls softly."
    }
    pairs, funnel = build_pairs(
        responses, [], safety, [], Pairs.from_section(settings), 42, "stage1", (), instructions, texts
    )
    (revision,) = [p for p in pairs if p["kind"] == "code_revision"]
    assert (revision["chosen"], revision["rejected"]) == ("rain falls softly.", "Rain falls softly.")
    assert revision["decided_by"] == "verifiable:constraint" and "1 code-revision pairs" in funnel[0]["reason"]
    rows, _ = sft_examples(responses, [], texts, pairs, Pairs.from_section(settings))
    assert {r["instruction_id"]: r["source"] for r in rows}["stage1-i00001"] == "code_revision"
    tables.to_arrow(pairs, "pairs")


def test_constraint_variants_put_answers_under_new_constraints_that_code_meets():
    responses, safety, _, instructions = verifiable_tables()
    settings = {
        **SETTINGS,
        "min_chars": 0,
        "max_chars": 2000,
        "min_margin": 0.0,
        "verifiable": VERIFIABLE,
        "sft": {"sources": ["responses", "constraint_variants"], "per_instruction": 1, "variants_per_instruction": 2},
    }
    texts = candidate_texts(responses, [], safety, instructions, Verifiable.from_section(settings["verifiable"]))
    variants = constraint_variants(
        responses, texts.items, texts.labels, Verifiable.from_section(VERIFIABLE), 2, seed=42
    )
    # the first candidate that stops and does not loop ("Blue.", not the loop) of each instruction without a
    # constraint (not "Describe rain.", which has one), under two new prompts each
    assert sorted(variants) == [f"stage1-i0000{n}-r0-variant{k}" for n in (0, 2, 3) for k in (0, 1)]
    for original, variant in variants.values():
        assert variant.instruction.startswith(texts.items[original].instruction + " ")  # a constraint attached
        assert len(variant.instruction_ids) == 1 and variant.text != texts.items[original].text
        assert (
            verifiable.score(variant.instruction, variant.instruction_ids, variant.constraint_kwargs, variant.text)[
                "ifeval_strict"
            ]
            == 1.0
        )  # IFEval's own checker passes it

    pairs, _ = build_pairs(responses, [], safety, [], Pairs.from_section(settings), 42, "stage1", (), instructions)
    rows, _ = sft_examples(responses, [], texts, pairs, Pairs.from_section(settings), FEWSHOT, seed=42)
    assert {r["example_id"] for r in rows if r["source"] == "constraint_variant"} == set(variants)
    assert sum(r["source"] == "response" for r in rows) == 4  # variants do not count against per_instruction
    assert not any("variant" in p["chosen_id"] for p in pairs)  # SFT only
    assert (
        sft_examples(responses, [], texts, pairs, Pairs.from_section(settings), FEWSHOT, seed=42)[0] == rows
    )  # seeded
    other, _ = sft_examples(responses, [], texts, pairs, Pairs.from_section(settings), FEWSHOT, seed=7)
    assert [r["prompt"] for r in other] != [r["prompt"] for r in rows]
    tables.to_arrow(rows, "sft_examples")


def test_language_checks_give_the_same_answer_every_time():
    """IFEval's case checkers ask langdetect whether a text is English; unseeded, this short text came back as
    Tagalog or Danish in about one call in five, which once changed two SFT examples between identical runs."""
    text = "i am from hong kong and i have a good name for a big bank named qiang."
    results = {
        verifiable.score("Answer in lowercase.", ["change_case:english_lowercase"], [{}], text)["ifeval_strict"]
        for _ in range(40)
    }
    assert results == {1.0}
