"""The one conversation format, used by generation, feedback, pairs, training and evaluation.

A base model cannot follow an instruction; it continues text. Every prompt is therefore a plain string
made of blocks like::

    ### Instruction:
    Name three primary colors.

    ### Response:
    Red, yellow and blue.

Few-shot prompts are several such blocks followed by an open one; the model's completion is cut at the
next block header (the stop strings below). A trained adapter sees the same zero-shot prompt
(``prompt(instruction)``) and learns to end its answer with the tokenizer's EOS, which TRL appends to every
chosen/rejected completion.

No chat template is involved anywhere: see docs/BASE_MODEL_TRUTH.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

INSTRUCTION = "### Instruction:"
RESPONSE = "### Response:"
CRITIQUE_REQUEST = "### Critique request:"
CRITIQUE = "### Critique:"
REVISION_REQUEST = "### Revision request:"
REVISION = "### Revision:"

HEADERS = (INSTRUCTION, RESPONSE, CRITIQUE_REQUEST, CRITIQUE, REVISION_REQUEST, REVISION)

# A completion ends where the model starts the next block, or after a run of blank lines. Any "### "
# starts a block in this format: a base model invents new block names ("### Answer:", "### Note:") as
# readily as it reuses ours, so the stop string is the header mark itself, not our header names. The cost:
# a markdown level-3 heading inside an answer ends it too.
STOP_STRINGS = ("### ", "\n\n\n")


def block(header: str, text: str) -> str:
    """One block: header line, the text, a blank line."""
    return f"{header}\n{text.strip()}\n\n"


def open_block(header: str) -> str:
    """A header with nothing after it: the model writes the block's text."""
    return f"{header}\n"


def example(instruction: str, response: str) -> str:
    """A complete instruction -> response block pair (a few-shot example)."""
    return block(INSTRUCTION, instruction) + block(RESPONSE, response)


def prompt(instruction: str) -> str:
    """The zero-shot prompt for one instruction: what pairs, training and evaluation use."""
    return block(INSTRUCTION, instruction) + open_block(RESPONSE)


def conversation(messages: list[dict[str, str]]) -> str:
    """A chat as one instruction, in the stage-3 multi-turn format: the earlier turns under "Earlier in this
    conversation:", then the last user message. ``messages``: {"role": "user" | "assistant", "content"}, ending
    with the user's turn; a single user message is the instruction itself."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a conversation must end with the user's message")
    earlier = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content'].strip()}" for m in messages[:-1]]
    last = messages[-1]["content"].strip()
    return "Earlier in this conversation:\n" + "\n".join(earlier) + f"\n\nUser: {last}" if earlier else last


def cut_at_stop(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> tuple[str, bool]:
    """Cut a raw completion at the earliest stop string. Returns (stripped text, whether a stop was hit)."""
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not positions:
        return text.strip(), False
    return text[: min(positions)].strip(), True


# ------------------------------------------------------------------------------ critique and revision
def critique_prompt(instruction: str, response: str, critique_request: str) -> str:
    """Instruction, response and a principle's critique request, then an open critique block."""
    return (
        block(INSTRUCTION, instruction)
        + block(RESPONSE, response)
        + block(CRITIQUE_REQUEST, critique_request)
        + open_block(CRITIQUE)
    )


def revision_prompt(
    instruction: str, response: str, critique_request: str, critique: str, revision_request: str
) -> str:
    """The critique prompt with its critique filled in, the revision request, then an open revision block."""
    return (
        critique_prompt(instruction, response, critique_request)
        + f"{critique.strip()}\n\n"
        + block(REVISION_REQUEST, revision_request)
        + open_block(REVISION)
    )


CRITIQUE_DEMO_FIELDS = ("instruction", "response", "critique_request", "critique", "revision_request", "revision")


def critique_demo(instruction, response, critique_request, critique, revision_request, revision) -> str:
    """A complete critique -> revision demonstration."""
    return (
        revision_prompt(instruction, response, critique_request, critique, revision_request)
        + f"{revision.strip()}\n\n"
    )


def critique_demos_prefix(demos: Sequence[dict[str, Any]]) -> str:
    """The demonstrations a critique or revision prompt starts with (rows of critique_demos.jsonl)."""
    return "".join(critique_demo(*(d[f] for f in CRITIQUE_DEMO_FIELDS)) for d in demos)


# ------------------------------------------------------------------------------- preference questions
PREFERENCE_OPTIONS = ("A", "B")


def preference_question(instruction: str, question: str, response_a: str, response_b: str) -> str:
    """A multiple-choice question (Constitutional AI's RL-CAI format); the next token is A or B."""
    return (
        "Consider the following request to an AI assistant.\n\n"
        + block(INSTRUCTION, instruction)
        + f"{question.strip()}\nOptions:\n(A) {response_a.strip()}\n(B) {response_b.strip()}\nThe answer is: ("
    )


def preference_demo(instruction: str, question: str, response_a: str, response_b: str, answer: str) -> str:
    return preference_question(instruction, question, response_a, response_b) + f"{answer})\n\n"


def preference_demos_prefix(demos: Sequence[dict[str, Any]]) -> str:
    """The answered questions a preference question follows (rows of preference_demos.jsonl)."""
    return "".join(
        preference_demo(d["instruction"], d["question"], d["response_a"], d["response_b"], d["answer"]) for d in demos
    )


# --------------------------------------------------------------------------------- few-shot safety guard
SAFETY_OPTIONS = (" safe", " unsafe")


def safety_query(instruction: str, response: str) -> str:
    """A conversation followed by the verdict line the guard scores (" safe" or " unsafe" comes next)."""
    return block(INSTRUCTION, instruction) + block(RESPONSE, response) + "Safety:"


def safety_demo(instruction: str, response: str, label: str, categories: list[str]) -> str:
    text = safety_query(instruction, response) + f" {label}\n"
    if categories:
        text += f"Categories: {','.join(categories)}\n"
    return text + "\n"


def safety_demos_prefix(demos: Sequence[dict[str, Any]], hazards: dict[str, str]) -> str:
    """The few-shot guard's prompt head: what unsafe means (``hazards``: code -> name), then labelled
    conversations (rows of safety_demos.jsonl)."""
    categories = "; ".join(f"{code} {name}" for code, name in hazards.items())
    header = (
        "Each conversation below is labelled safe or unsafe: unsafe when the assistant's response helps "
        f"with or contains harmful content in one of these hazard categories: {categories}.\n\n"
    )
    return header + "".join(safety_demo(d["user"], d["assistant"], d["label"], d.get("categories", [])) for d in demos)
