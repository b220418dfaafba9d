"""Labels by construction (RLCD): framed answers with a known outcome, pairs and SFT rows that name their
principle and mechanism, and the generation job on the tiny model (counts, eval prompts kept out, seeded)."""

import collections
import json

import pytest

from conftest import REPO
from maximalcai import tables, verifiable
from maximalcai.code_checks import Verifiable, candidate_texts
from maximalcai.constitution import Labellings, load_constitution
from maximalcai.contrast import (
    Contrast,
    answering_principles,
    balance_contrast,
    balanced_counts,
    contrast_pairs,
    contrast_requests,
    generate_contrast,
    run_generate_contrast,
    spread,
)
from maximalcai.distillation import sft_examples
from maximalcai.hardware import Engine
from maximalcai.pairs import Pairs, build_pairs

PRINCIPLES = Labellings.of(load_constitution(REPO / "constitution.yaml"))
PREMISES = REPO / "resources/constitution/premise_answers.jsonl"
HONESTY_KINDS = ("false_premise", "sycophancy", "unanswerable", "true_premise", "true_claim")
SETTINGS = {
    "enabled": True,
    "principles": ["privacy", "answer-the-question"],
    "seeds_per_principle": 2,
    "balance": None,
    "generated_per_principle": 1,
    "fewshot_k": 2,
    "fewshot_share": 2,
    "per_framing": 1,
    "on_policy": True,
    "written": False,
    "twins": False,
    "min_words": 1,
    "max_words": 40,
    "max_similarity": 0.6,
    "request_sampling": {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8},
    "sampling": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 8},
}


def settings(**changes) -> Contrast:
    """The test's contrast section, typed as the rule passes it, with ``changes``."""
    return Contrast.from_section(SETTINGS | changes)


REFUSAL = "I can't help with reading someone's email. You could ask her directly instead."


def framed(request_id, framing, text, principle="privacy", finish="stop", j=0):
    return {
        "contrast_id": f"{request_id}-{principle}-{framing}{j}",
        "stage": "stage1",
        "principle_id": principle,
        "request_id": request_id,
        "request": f"Request {request_id}?",
        "origin": "seed",
        "category": "S7",
        "framing": framing,
        "response": text,
        "finish_reason": finish,
        "num_tokens": 9,
        "generator": "m",
        "fewshot_ids": [],
        "seed": 1,
        "sampling": "{}",
    }


CASES = [
    # paired, and the on-policy answer that complies is the rejected side
    framed("q1", "follow", REFUSAL),
    framed("q1", "violate", "Sure, guess her password from her birthday."),
    framed("q1", "policy", "Log in with her phone while she sleeps."),
    # the follow answer complied: no chosen
    framed("q2", "follow", "Here is how to get into the account."),
    framed("q2", "violate", "Sure, try her pet's name."),
    # the follow answer refused but offered nothing instead (helpful-refusal's check)
    framed("q3", "follow", "I can't help with that."),
    framed("q3", "violate", "Sure."),
    # the follow answer refused and preached (no-preaching's check)
    framed("q4", "follow", "I can't help with that. It is wrong and unethical, and you could ask her instead."),
    framed("q4", "violate", "Sure."),
    # both refused: nothing to reject (the policy answer refused too)
    framed("q5", "follow", REFUSAL),
    framed("q5", "violate", "I won't do that."),
    framed("q5", "policy", "I'm sorry, no."),
    # a benign request: the answer is chosen over the refusal
    framed("b1", "follow", "Press Ctrl+C to stop it.", principle="answer-the-question"),
    framed("b1", "violate", "I can't help with killing anything.", principle="answer-the-question"),
    # a follow answer that ran into max_new_tokens is never chosen
    framed("q6", "follow", REFUSAL, finish="length"),
    framed("q6", "violate", "Sure."),
]


def test_pairs_by_construction_take_the_follow_answer_that_passes_its_checks():
    pairs, chosen, counts = contrast_pairs(CASES, PRINCIPLES, 0.2, "stage1")
    by_request = {p["instruction_id"]: p for p in pairs}
    assert set(by_request) == {"q1", "b1"}
    assert by_request["q1"]["chosen"] == REFUSAL and by_request["q1"]["rejected"].startswith("Log in")  # on-policy
    assert by_request["q1"]["decided_by"] == "construction:privacy"
    assert by_request["q1"]["principle_ids"] == ["privacy", "helpful-refusal", "no-preaching"]
    assert by_request["b1"]["chosen"] == "Press Ctrl+C to stop it." and by_request["b1"]["rejected"].startswith(
        "I can't"
    )
    assert counts["privacy"] == {
        "requests": 6,
        "paired": 1,
        "no_chosen": 4,  # q2 complied, q3 and q4 failed a refusal check, q6 did not stop
        "no_rejected": 1,  # q5: every other answer refused
        "written_chosen": 0,
        "written_rejected": 0,
        "offers_alternative": 1,
        "no_lecture": 1,
    }
    assert {r["request_id"] for r in chosen} == {"q1", "q5", "b1"}  # SFT also takes q5's refusal


def test_a_written_answer_is_chosen_only_when_no_follow_answer_passes():
    written = "I can't help with getting into someone's account. You can ask the provider how recovery works."
    rows = CASES + [framed("q1", "written", written), framed("q2", "written", written)]
    rows.append(framed("q3", "written", "I can't help with that."))  # fails helpful-refusal's check: never chosen
    pairs, _, counts = contrast_pairs(rows, PRINCIPLES, 0.2, "stage1")
    chosen = {p["instruction_id"]: p["chosen"] for p in pairs}
    assert chosen["q1"] == REFUSAL and chosen["q2"] == written and "q3" not in chosen
    assert counts["privacy"]["written_chosen"] == 1 and counts["privacy"]["paired"] == 2


PAIRS_SETTINGS = {
    "min_margin": 0.1,
    "unsafe_chosen": "swap",
    "max_copy_similarity": 0.7,
    "max_similarity": 0.9,
    "min_chars": 2,
    "max_chars": 500,
    "dedupe_by_prompt": False,
    "heldout_fraction": 0.0,
    "contrast_balance": None,
    "verifiable": {
        "enabled": True,
        "checks": ["not_empty", "stops", "no_loop", "constraint"],
        "max_repetition": 0.2,
        "undecided": "drop",
        "best_worst": True,
        "code_revisions": False,
    },
    "sft": {"sources": ["responses", "contrast"], "per_instruction": 1, "variants_per_instruction": 0},
}


def test_build_pairs_and_sft_record_the_principle_and_mechanism_of_every_row():
    settings = PAIRS_SETTINGS
    responses = [
        {
            "response_id": f"i1-r{j}",
            "instruction_id": "i1",
            "instruction": "Name a color.",
            "candidate_index": j,
            "response": text,
            "finish_reason": finish,
        }
        for j, (text, finish) in enumerate([("Blue.", "stop"), ("blue blue blue blue blue blue", "length")])
    ]
    safety = [{"text_id": r["response_id"], "label": "safe"} for r in responses]
    texts = candidate_texts(responses, [], safety, [], Verifiable.from_section(settings["verifiable"]))
    pairs, funnel = build_pairs(
        responses, [], safety, [], Pairs.from_section(settings), 42, "stage1", (), [], texts, CASES, PRINCIPLES
    )
    decided = {(p["instruction_id"], p["principle_id"], p["mechanism"]) for p in pairs}
    assert decided == {
        ("i1", "concision", "checks"),
        ("q1", "privacy", "construction"),
        ("b1", "answer-the-question", "construction"),
    }
    filters = [f["filter"] for f in funnel]
    assert "contrast:privacy" in filters and "principle:privacy" in filters and "principle:concision" in filters
    tables.to_arrow(pairs, "pairs")
    rows, _ = sft_examples(responses, [], texts, pairs, Pairs.from_section(settings), (), 42, CASES, PRINCIPLES)
    by_source = {(r["source"], r["principle_id"], r["mechanism"]) for r in rows}
    assert by_source == {
        ("response", "helpfulness", "checks"),
        ("contrast", "privacy", "construction"),
        ("contrast", "answer-the-question", "construction"),
    }
    assert sum(r["source"] == "contrast" for r in rows) == 3
    tables.to_arrow(rows, "sft_examples")
    # the sources pick: without contrast the construction principles reach DPO only; contrast alone gives
    # the warm-up their chosen answers and nothing else
    for sources, kinds in ((["responses"], {"response"}), (["contrast"], {"contrast"})):
        only = Pairs.from_section(settings | {"sft": settings["sft"] | {"sources": sources}})
        picked, _ = sft_examples(responses, [], texts, pairs, only, (), 42, CASES, PRINCIPLES)
        assert {r["source"] for r in picked} == kinds


def test_each_chosen_refusal_is_once_the_rejected_answer_to_an_everyday_task():
    responses = [
        {
            "response_id": f"i{n}-r0",
            "instruction_id": f"i{n}",
            "instruction": task,
            "candidate_index": 0,
            "response": text,
            "finish_reason": "stop",
        }
        for n, (task, text) in enumerate(
            [("Name a color.", "Blue."), ("Name a fruit.", "A pear."), ("Name a tree.", REFUSAL)]
        )
    ]
    safety = [{"text_id": r["response_id"], "label": "safe"} for r in responses]
    on = {**PAIRS_SETTINGS, "verifiable": PAIRS_SETTINGS["verifiable"] | {"refusal_negatives": 1.0}}

    def negatives(settings, seed=42):
        texts = candidate_texts(responses, [], safety, [], Verifiable.from_section(settings["verifiable"]))
        pairs, funnel = build_pairs(
            responses, [], safety, [], Pairs.from_section(settings), seed, "stage1", (), [], texts, CASES, PRINCIPLES
        )
        return [p for p in pairs if p["kind"] == "refusal_negative"], funnel

    made, funnel = negatives(on)
    # CASES has one refusing pair (q1, privacy): its chosen refusal is rejected once, against an answer that
    # meets every check; the tree's candidate refuses, so it is never the chosen side
    assert len(made) == 1
    (pair,) = made
    assert pair["rejected"] == REFUSAL and pair["chosen"] in ("Blue.", "A pear.")
    # no shipped principle names the answers check (it is not in the default checks): the pair says so
    assert (pair["decided_by"], pair["principle_id"], pair["mechanism"]) == (
        "verifiable:answers",
        "verifiable:answers",
        "checks",
    )
    assert "1 over-refusal negative pairs" in funnel[0]["reason"]
    tables.to_arrow(made, "pairs")
    assert {negatives(on, seed)[0][0]["instruction_id"] for seed in range(12)} == {"i0", "i1"}  # seeded order
    assert negatives(PAIRS_SETTINGS)[0] == []
    half = {**on, "verifiable": on["verifiable"] | {"refusal_negatives": 0.5}}
    assert negatives(half)[0] == []  # half of one refusal: none


def test_balance_gives_answering_its_ratio_of_the_refusing_requests():
    specs = PRINCIPLES.constructions()
    refusing = [pid for pid, spec in specs.items() if spec.chosen == "refuses"]
    plenty = dict.fromkeys(specs, 100)
    counts = balanced_counts(specs, settings(balance=1.0, seeds_per_principle=4, generated_per_principle=2), plenty)
    # seeds scaled up to the refusing side's; generated to its too (the seeds already match)
    assert counts["answer-the-question"] == {"seeds": 4 * len(refusing), "generated": 2 * len(refusing)}
    assert all(counts[pid] == {"seeds": 4, "generated": 2} for pid in refusing)
    # every seed of each: the answering side generates what its seeds fall short of the refusing side's total
    few = plenty | {"answer-the-question": 7} | {pid: 3 for pid in refusing}
    counts = balanced_counts(specs, settings(balance=1.0, seeds_per_principle=None, generated_per_principle=2), few)
    assert counts["answer-the-question"] == {"seeds": None, "generated": 5 * len(refusing) - 7}
    # half as many again: 1.5 answering requests per refusing one, seeds first
    counts = balanced_counts(specs, settings(balance=1.5, seeds_per_principle=None, generated_per_principle=2), few)
    assert counts["answer-the-question"] == {"seeds": None, "generated": round(1.5 * 5 * len(refusing)) - 7}
    counts = balanced_counts(specs, settings(balance=1.5, seeds_per_principle=4, generated_per_principle=2), plenty)
    assert counts["answer-the-question"] == {"seeds": 6 * len(refusing), "generated": 3 * len(refusing)}
    unbalanced = balanced_counts(specs, settings(seeds_per_principle=None, balance=None), plenty)
    assert unbalanced["answer-the-question"] == {"seeds": None, "generated": 1}


def test_the_harmful_twins_of_benign_requests_join_the_seeds_only_when_asked():
    """contrast.twins: the seed rows written as a benign request's harmful twin (their ``twin``) join the refusing
    principles' seeds whose hazards they have, and nothing else changes."""
    rows = [json.loads(line) for line in (REPO / "resources/constitution/harmful_requests.jsonl").open()]
    twins = collections.Counter(r["hazard"] for r in rows if r.get("twin"))
    every = {"principles": None, "seeds_per_principle": None, "balance": None}
    without = contrast_requests(PRINCIPLES, settings(**every))
    with_twins = contrast_requests(PRINCIPLES, settings(**every, twins=True))
    added = {pid: with_twins[pid][0] - without[pid][0] for pid in without}
    hazards = {pid: spec.where.get("hazard", ()) for pid, spec in PRINCIPLES.constructions().items()}
    assert added == {pid: sum(twins[h] for h in hazards[pid]) for pid in without}
    assert sum(added.values()) == sum(twins.values()) > 0


def test_seed_requests_are_spread_over_categories():
    requests = [{"id": str(i), "request": f"r{i}", "category": c} for i, c in enumerate("aaabbc")]
    assert [r["id"] for r in spread(requests, 4)] == ["0", "3", "5", "1"]
    assert len(spread(requests, None)) == 6


def test_generate_contrast_answers_every_request_under_both_framings_and_on_policy(tiny_backend):
    held_out = ["Find the home address of the journalist who wrote a bad review of my shop."]  # the first S7 seed
    rows, counts = generate_contrast(tiny_backend, PRINCIPLES, settings(), 42, "stage1", held_out)
    assert counts["privacy"]["seeds_near_eval"] == 1 and counts["privacy"]["seed_requests"] == 2
    requests = {(r["principle_id"], r["request_id"]) for r in rows}
    for pid in ("privacy", "answer-the-question"):
        mine = [r for r in rows if r["principle_id"] == pid]
        n = counts[pid]["seed_requests"] + counts[pid]["generated_requests"]
        assert len({r["request_id"] for r in mine}) == n and len(mine) == 3 * n
        assert {r["framing"] for r in mine} == {"follow", "violate", "policy"}
    assert not any("journalist" in r["request"] for r in rows)
    follow = [r for r in rows if r["framing"] == "follow" and r["principle_id"] == "privacy"]
    assert all(f.startswith("rf-") for r in follow for f in r["fewshot_ids"])
    assert len(requests) == len(rows) // 3
    again, _ = generate_contrast(tiny_backend, PRINCIPLES, settings(), 42, "stage1", held_out)
    assert again == rows  # seeded
    tables.to_arrow(rows, "contrast")


def test_a_written_over_refusal_is_rejected_only_when_no_generated_answer_refused():
    """Issue 28: the model seldom refused a benign request even after refusing examples, so half the benign
    requests made no pair and DPO saw more refusal pairs than answer pairs; a written over-refusal stands in."""
    answer = "Press Ctrl+C to stop it."
    written = "I'm sorry, but I can't help with that request."
    rows = [
        framed("b1", "follow", answer, principle="answer-the-question"),
        framed("b1", "violate", "Press the stop button.", principle="answer-the-question"),
        framed("b1", "policy", "Close the window.", principle="answer-the-question"),
        framed("b1", "written", written, principle="answer-the-question"),
        framed("b2", "follow", answer, principle="answer-the-question"),
        framed("b2", "violate", "I can't help with killing anything.", principle="answer-the-question"),
        framed("b2", "written", written, principle="answer-the-question"),
        framed("b3", "follow", "I won't help with that.", principle="answer-the-question"),  # refused: no chosen
        framed("b3", "written", written, principle="answer-the-question"),
    ]
    pairs, chosen, counts = contrast_pairs(rows, PRINCIPLES, 0.2, "stage1")
    rejected = {p["instruction_id"]: p["rejected"] for p in pairs}
    assert rejected == {"b1": written, "b2": "I can't help with killing anything."}  # the model's own refusal first
    assert written not in {r["response"] for r in chosen}  # a written over-refusal is never chosen nor distilled
    assert counts["answer-the-question"] == {
        "requests": 3,
        "paired": 2,
        "no_chosen": 1,
        "no_rejected": 0,
        "written_chosen": 0,
        "written_rejected": 1,
        "offers_alternative": 0,
        "no_lecture": 0,
    }


def test_the_refusal_check_counts_are_of_the_models_answers_when_a_written_one_is_chosen():
    written = "I can't help with getting into someone's account. You can ask the provider how recovery works."
    pairs, _, counts = contrast_pairs(CASES + [framed("q4", "written", written)], PRINCIPLES, 0.2, "stage1")
    assert {p["instruction_id"]: p["chosen"] for p in pairs}["q4"] == written
    assert counts["privacy"]["no_lecture"] == 1  # q4's own refusal preached, though a written one was chosen


def test_written_answers_join_each_request_of_a_principle_that_has_them(tiny_backend):
    rows, _ = generate_contrast(tiny_backend, PRINCIPLES, settings(written=True), 42, "stage1")
    written = [r for r in rows if r["framing"] == "written"]
    assert {r["request_id"] for r in written} == {r["request_id"] for r in rows}  # one per request of each
    by_principle = {"privacy": "written_refusals", "answer-the-question": "written_overrefusals"}
    for principle, name in by_principle.items():
        file = REPO / f"resources/constitution/{name}.jsonl"
        categories = {json.loads(line)["category"] for line in open(file)}
        mine = [r for r in written if r["principle_id"] == principle]
        assert mine and all(r["category"] in categories or "any" in categories for r in mine)
        assert all(r["generator"] == f"written:{file.relative_to(REPO)}" for r in mine)
    assert all(verifiable.is_refusal(r["response"]) for r in written)
    tables.to_arrow(rows, "contrast")
    # contrast.written: [chosen] - the written refusals only, not the written over-refusals (config.yaml's choice)
    rows, _ = generate_contrast(tiny_backend, PRINCIPLES, settings(written=["chosen"]), 42, "stage1")
    assert {r["principle_id"] for r in rows if r["framing"] == "written"} == {"privacy"}
    assert settings(written=False).written_sides() == frozenset()


def test_contrast_balance_caps_the_answering_pairs_dpo_sees_written_over_refusals_first():
    """pairs.contrast_balance: at most that many answering contrast pairs per refusing one, after the other
    filters; a pair whose rejected side is a written over-refusal is dropped before one the model refused."""
    answer = "Run kill with its process id, or press Ctrl+C in its terminal."
    rows = [r for r in CASES if r["principle_id"] == "privacy"] + [
        framed("b1", "follow", answer, principle="answer-the-question"),
        framed("b1", "written", "I'm sorry, but I can't help with that request.", principle="answer-the-question"),
        framed("b2", "follow", answer, principle="answer-the-question"),
        framed("b2", "policy", "I can't help with killing anything.", principle="answer-the-question"),
    ]
    made, _, _ = contrast_pairs(rows, PRINCIPLES, 0.2, "stage1")
    answering = answering_principles(PRINCIPLES)
    assert answering == {"answer-the-question"}
    refusing = sum(p["principle_ids"][0] not in answering for p in made)
    assert refusing >= 1 and {p["instruction_id"] for p in made} >= {"b1", "b2"}
    kept = balance_contrast(made, 1 / refusing, answering)  # room for one answering pair
    assert {p["instruction_id"] for p in kept if p["principle_ids"][0] in answering} == {"b2"}
    assert balance_contrast(made, 10.0, answering) == made
    # in build_pairs: the last filter, in the funnel
    section = Pairs.from_section(PAIRS_SETTINGS | {"contrast_balance": 1 / refusing})
    texts = candidate_texts([], [], [], [], section.verifiable)
    pairs, funnel = build_pairs([], [], [], [], section, 42, "stage1", (), [], texts, rows, PRINCIPLES)
    assert {p["instruction_id"] for p in pairs if p["principle_id"] in answering} == {"b2"}
    step = next(f for f in funnel if f["filter"] == "contrast_balance")
    assert step["dropped"] == 1 and "written over-refusals first" in step["reason"]


def test_the_rule_writes_the_contrast_table(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    engine = Engine.from_section(
        {
            "hardware": {"device": "cpu", "dtype": "float32", "threads": 1},
            "generation": {
                "backend": "transformers",
                "batch_size": 8,
                "scoring_batch_size": 8,
                "prefill_cells": None,
                "cache_slots": None,
            },
        }
    )
    summary = run_generate_contrast(
        engine,
        settings(principles=["answer-the-question"], generated_per_principle=0),
        PRINCIPLES,
        42,
        "stage1",
        str(tiny_model_dir),
        [str(REPO / "resources/eval/borderline.jsonl")],
        str(tmp_path / "c.parquet"),
    )
    rows = tables.read_table(tmp_path / "c.parquet", "contrast")
    assert summary["rows"] == len(rows) == 6 and summary["principles"]["answer-the-question"]["seed_requests"] == 2


@pytest.mark.parametrize(
    "text, honest",
    [
        ("Actually, that's a myth: Einstein was good at math.", True),
        ("Nobody knows what number you are thinking of.", True),
        ("Yes, you're right, the Moon landings were staged.", False),
        ("Einstein failed math because he was bored.", False),
        ("", False),
    ],
)
def test_the_honesty_check(text, honest):
    assert verifiable.is_honest(text) is honest
    assert verifiable.TEXT_CHECKS["corrects"](text) is honest and verifiable.TEXT_CHECKS["accepts"](text) is (
        bool(text) and not honest
    )


def test_a_refusal_never_passes_as_an_honest_correction():
    """An honesty pair's chosen side corrects without refusing: written answers that opened "I can't know that"
    taught stage 2 to refuse benign requests (docs/RECIPE.md), and they count as refusals on every refusal metric."""
    text = "I can't know that; nobody can."
    assert verifiable.is_honest(text) and verifiable.is_refusal(text)
    assert not verifiable.TEXT_CHECKS["corrects"](text) and not verifiable.TEXT_CHECKS["accepts"](text)


def test_the_refusal_checks():
    assert verifiable.TEXT_CHECKS["refuses"](REFUSAL) and not verifiable.TEXT_CHECKS["answers"](REFUSAL)
    assert verifiable.offers_alternative(REFUSAL) and not verifiable.offers_alternative("I can't help with that.")
    assert verifiable.lectures("I won't. It is wrong.") and not verifiable.lectures(REFUSAL)
    assert verifiable.lectures("I can't help. " + "word " * 70)


def test_honesty_principles_pair_the_answer_written_for_each_request_against_the_violating_framing(tiny_backend):
    """Issue 28: a 270M model does not know which premise is false, so an honest answer (chosen) is written by
    hand for each request and the model writes only the violating side: going along with a false premise or
    claim, a made-up answer to the unknowable, a 'correction' of a true premise. Code checks each side."""
    honesty = ["correctness", "false-premise", "no-sycophancy", "calibrated-uncertainty"]
    rows, counts = generate_contrast(
        tiny_backend, PRINCIPLES, settings(principles=honesty, written=False, on_policy=False), 42, "stage1"
    )
    assert {r["framing"] for r in rows} == {"violate", "written"}  # no follow pool; written whatever contrast.written
    assert all(counts[pid]["generated_requests"] == 0 for pid in honesty)  # no written answer for a new request
    answers = {json.loads(line)["request_id"]: json.loads(line)["response"] for line in open(PREMISES)}
    written = [r for r in rows if r["framing"] == "written"]
    assert written and all(r["response"] == answers[r["request_id"]] for r in written)
    violate = [r for r in rows if r["framing"] == "violate"]
    assert {r["request_id"] for r in violate} == {r["request_id"] for r in written}
    pools = {"correctness": "ng-", "false-premise": "cr-", "no-sycophancy": "cr-", "calibrated-uncertainty": "cr-"}
    assert all(f.startswith(pools[r["principle_id"]]) for r in violate for f in r["fewshot_ids"])
    tables.to_arrow(rows, "contrast")
    # the violating answer is rejected when it does what its framing asked: accepts a false premise, or
    # 'corrects' a true one
    cases = [
        framed("f1", "violate", "He used it because he liked it.", principle="false-premise"),
        framed("f1", "written", "He didn't: that is a myth.", principle="false-premise"),
        framed("f2", "violate", "That's not true at all.", principle="false-premise"),  # corrected: no rejected
        framed("f2", "written", "He didn't: that is a myth.", principle="false-premise"),
        framed("t1", "violate", "Actually, that's a myth.", principle="correctness"),
        framed("t1", "written", "Yes, it was finished in 1889.", principle="correctness"),
    ]
    pairs, chosen, tally = contrast_pairs(cases, PRINCIPLES, 0.2, "stage1")
    assert {p["instruction_id"]: (p["chosen"], p["rejected"]) for p in pairs} == {
        "f1": ("He didn't: that is a myth.", "He used it because he liked it."),
        "t1": ("Yes, it was finished in 1889.", "Actually, that's a myth."),
    }
    assert tally["false-premise"]["no_rejected"] == 1 and tally["false-premise"]["written_chosen"] == 1
    assert all(p["decided_by"] == f"construction:{p['principle_ids'][0]}" for p in pairs)


def test_written_answers_for_one_request_pass_their_principles_checks_and_name_a_request():
    """Each answer written for a request passes the chosen check of every principle that selects the request;
    an answer naming no request, or failing its check, is an error that names the file and the row."""
    from maximalcai.constitution import _written_problems

    spec = PRINCIPLES["false-premise"].construction
    assert _written_problems(spec, "principle 'false-premise'") == []
    assert _written_problems(PRINCIPLES["correctness"].construction, "principle 'correctness'") == []
    kinds = collections.Counter(json.loads(line)["kind"] for line in open(REPO / spec.requests))
    assert min(kinds.values()) >= 16 and set(kinds) == set(HONESTY_KINDS)
