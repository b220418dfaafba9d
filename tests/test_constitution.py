"""constitution.yaml: the shipped one is valid; broken ones name the file, the principle and the field."""

import random

import pytest
import yaml

from conftest import REPO
from maximalcai.constitution import Labellings, load_constitution, sample_principles
from maximalcai.errors import ConstitutionError


def test_the_shipped_constitution_is_hhh_and_large_enough():
    constitution = load_constitution(REPO / "constitution.yaml")
    assert len(constitution.principles) >= 16
    assert {p.category for p in constitution.principles} == {"helpful", "harmless", "honest"}
    assert len({p.id for p in constitution.principles}) == len(constitution.principles)
    assert len(constitution.sha256) == 64


def write(tmp_path, data):
    path = tmp_path / "constitution.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def principle(pid="p1", category="helpful", **overrides):
    base = {
        "id": pid,
        "category": category,
        "critique_request": "Find what is wrong here.",
        "revision_request": "Rewrite it to fix that.",
        "preference_question": "Which response is better?",
    }
    return {**base, **overrides}


def three():
    return [principle("a", "helpful"), principle("b", "harmless"), principle("c", "honest")]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ps: ps[1].pop("revision_request"), r"principle 'b' \(#2\).*'revision_request' is a required property"),
        (
            lambda ps: ps[0].update(category="polite"),
            r"principle 'a' \(#1\), field 'category': unknown category 'polite'",
        ),
        (
            lambda ps: ps[2].update(preference_question="Pick the better one."),
            r"principle 'c' \(#3\), field 'preference_question': must be a question",
        ),
        (lambda ps: ps[2].update(id="a"), r"principle 'a' \(#3\), field 'id': duplicate id"),
        (lambda ps: ps[2].update(category="helpful"), r"categories \['honest'\] have no principle"),
    ],
)
def test_errors_name_the_principle_and_the_field(tmp_path, mutate, message):
    principles = three()
    mutate(principles)
    path = write(tmp_path, {"principles": principles})
    with pytest.raises(ConstitutionError, match=message) as err:
        load_constitution(path)
    assert str(path) in str(err.value)


def test_an_empty_list_and_a_missing_file_are_errors(tmp_path):
    with pytest.raises(ConstitutionError, match="the list is empty"):
        load_constitution(write(tmp_path, {"principles": []}))
    with pytest.raises(ConstitutionError, match="constitution file not found"):
        load_constitution(tmp_path / "nope.yaml")


def test_hash_ignores_comments_and_changes_with_content(tmp_path):
    path = write(tmp_path, {"principles": three()})
    first = load_constitution(path).sha256
    path.write_text("# a comment\n" + path.read_text())
    assert load_constitution(path).sha256 == first
    principles = three()
    principles[0]["revision_request"] = "Rewrite it differently."
    assert load_constitution(write(tmp_path, {"principles": principles})).sha256 != first


def test_sampling_principles_is_seeded():
    constitution = load_constitution(REPO / "constitution.yaml")
    draw = lambda: [p.id for p in sample_principles(constitution, 3, random.Random(5))]  # noqa: E731
    assert draw() == draw() and len(set(draw())) == 3


def test_every_shipped_principle_names_a_mechanism_the_cpu_recipe_uses_or_says_why_not():
    """Issue 28: each principle reaches the data through construction or checks, or states why it cannot here."""
    from maximalcai.code_checks import CHECKS

    constitution = load_constitution(REPO / "constitution.yaml")
    for p in constitution.principles:
        if p.mechanism == "model":
            assert p.cpu and len(p.cpu) > 20, p.id
        elif p.mechanism == "checks":
            assert p.check in CHECKS + ("offers_alternative", "no_lecture"), p.id
        else:
            assert p.construction.chosen != p.construction.rejected, p.id
    used = {p.mechanism for p in constitution.principles}
    assert used == {"construction", "checks", "model"}
    checks = [p.check for p in constitution.principles if p.mechanism == "checks"]
    assert sorted(checks) == sorted(set(checks))  # one principle per check
    hazards = {h for p in constitution.principles if p.construction for h in p.construction.where.get("hazard", ())}
    assert hazards == {f"S{i}" for i in range(1, 15)}  # every Llama Guard 3 category has a principle


def test_labellings_reach_a_job_typed_from_the_plain_data_its_rule_params_hold():
    """rules/common.smk puts ``Labellings.as_dict()`` in params (plain, so Snakemake compares it); the job gets the
    typed mapping back through ``job_arguments``, equal to the constitution's own."""
    from types import SimpleNamespace

    from maximalcai.contrast import run_generate_contrast
    from maximalcai.job import job_arguments

    labellings = Labellings.of(load_constitution(REPO / "constitution.yaml"))
    plain = labellings.as_dict()
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # plain YAML data: no tuples or dataclasses
    rule = SimpleNamespace(input={}, output={}, params={"principles": plain}, wildcards={})
    typed = job_arguments(rule, run_generate_contrast)["principles"]
    assert isinstance(typed, Labellings) and typed == labellings and list(typed) == list(labellings)
    assert set(typed.constructions()) == {
        p.id for p in load_constitution(REPO / "constitution.yaml").principles if p.construction
    }
    assert typed.checked()["stops"] == next(pid for pid, p in typed.items() if p.check == "stops")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"check": "stops"}, "field 'check': only used with mechanism checks"),
        ({"mechanism": "checks"}, "mechanism checks needs the field 'check'"),
        ({"mechanism": "construction"}, "mechanism construction needs the field 'construction'"),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "missing.jsonl",
                    "follow": "resources/constitution/refusal_examples.jsonl",
                    "violate": "resources/constitution/compliant_examples.jsonl",
                    "chosen": "refuses",
                    "rejected": "answers",
                },
            },
            "field 'construction.requests': file missing.jsonl not found",
        ),
        ({"mechanism": "checks", "check": "sounds_nice"}, "sounds_nice"),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/harmful_requests.jsonl",
                    "follow": "resources/constitution/refusal_examples.jsonl",
                    "violate": "resources/constitution/compliant_examples.jsonl",
                    "written": "resources/constitution/overrefusal_examples.jsonl",  # refusals with no alternative
                    "chosen": "refuses",
                    "rejected": "answers",
                },
            },
            "fails the check 'offers_alternative' that a chosen answer must pass",
        ),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/borderline_requests.jsonl",
                    "follow": "resources/constitution/borderline_answers.jsonl",
                    "violate": "resources/constitution/overrefusal_examples.jsonl",
                    "written": "resources/constitution/borderline_answers.jsonl",  # answers, not over-refusals
                    "written_side": "rejected",
                    "chosen": "answers",
                    "rejected": "refuses",
                },
            },
            "fails the check 'refuses' that a rejected answer must pass",
        ),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/premise_requests.jsonl",
                    "violate": "resources/constitution/credulous_examples.jsonl",
                    "chosen": "corrects",
                    "rejected": "accepts",
                },
            },
            "with no 'follow' pool the chosen side is the written answers",
        ),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/premise_requests.jsonl",
                    "where": {"kind": ["true_premise"]},  # answers that accept: they fail 'corrects'
                    "violate": "resources/constitution/credulous_examples.jsonl",
                    "written": "resources/constitution/premise_answers.jsonl",
                    "chosen": "corrects",
                    "rejected": "accepts",
                },
            },
            "(pa-tp-01): fails the check 'corrects' that a chosen answer must pass",
        ),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/harmful_requests.jsonl",
                    "violate": "resources/constitution/compliant_examples.jsonl",
                    "written": "resources/constitution/premise_answers.jsonl",  # written for other requests
                    "chosen": "refuses",
                    "rejected": "answers",
                },
            },
            "request_id 'pr-fp-01' is no request of resources/constitution/harmful_requests.jsonl",
        ),
        (
            {
                "mechanism": "construction",
                "construction": {
                    "requests": "resources/constitution/harmful_requests.jsonl",
                    "violate": "resources/constitution/compliant_examples.jsonl",
                    "written": "resources/constitution/premise_answers.jsonl",
                    "chosen": "refuses",
                    "rejected": "answers",
                },
            },
            "no answer written for request(s) hr-001",
        ),
    ],
)
def test_a_mechanism_without_what_it_needs_is_named(tmp_path, monkeypatch, fields, message):
    monkeypatch.chdir(REPO)
    path = write(tmp_path, {"principles": [principle("a", "helpful", **fields), *three()[1:]]})
    with pytest.raises(ConstitutionError) as error:
        load_constitution(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_chat_template_token_in_a_principle_is_named_at_start(tmp_path):
    """Issue 29: a principle holding `<start_of_turn>` failed a job only when sampled, without naming the file."""
    leaky = principle("a", "helpful", critique_request="<start_of_turn>user Find what is wrong here.")
    path = write(tmp_path, {"principles": [leaky, *three()[1:]]})
    with pytest.raises(ConstitutionError, match=r"principle 'a' \(#1\), field 'critique_request': chat-template"):
        load_constitution(path)
