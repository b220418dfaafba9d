"""Few-shot completion prompts for a base model, and the check that no chat template leaks into them.

A base model is prompted with k random examples from a seed pool followed by an open block; it completes
the block. Prompts are plain strings built here and nowhere else: they never pass through
``tokenizer.apply_chat_template``. ``assert_plain_prompts`` enforces it on every batch (see
docs/BASE_MODEL_TRUTH.md for why: Qwen2.5 base tokenizers ship a chat template that tools apply silently).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from maximalcai import formats
from maximalcai.errors import ChatTemplateLeakError, ResourceError
from maximalcai.resources import read_jsonl

T = TypeVar("T")


@dataclass(frozen=True)
class PoolExample:
    id: str
    instruction: str
    response: str


def load_pool(path: str | Path, min_size: int = 2) -> list[PoolExample]:
    """A few-shot pool: JSONL rows with id, instruction, response."""
    rows = read_jsonl(path, {"instruction": str, "response": str}, "few-shot pool")
    if len(rows) < min_size:
        raise ResourceError(
            f"few-shot pool {path}: has {len(rows)} example(s); it needs at least {min_size} "
            "(fewshot_k + 1) so that prompts can vary"
        )
    return [PoolExample(r["id"], r["instruction"], r["response"]) for r in rows]


def sample_examples(pool: Sequence[T], k: int, rng: random.Random) -> list[T]:
    """k distinct examples in random order (seeded by the caller's rng)."""
    return rng.sample(list(pool), min(k, len(pool)))


def shared_draws(pool: Sequence[T], k: int, share: int, count: int, rng: random.Random) -> list[list[T]]:
    """``count`` few-shot draws where each consecutive run of ``share`` prompts reuses one draw, so those
    prompts share a prefix that the backend computes once."""
    draws: list[list[T]] = []
    for start in range(0, count, share):
        draws += [sample_examples(pool, k, rng)] * min(share, count - start)
    return draws


def fewshot_instructions(examples: Sequence[PoolExample]) -> str:
    """The shared prefix of instruction generation: k instruction blocks."""
    return "".join(formats.block(formats.INSTRUCTION, e.instruction) for e in examples)


def fewshot_examples(examples: Sequence[PoolExample]) -> str:
    """The shared prefix of response generation: k complete instruction -> response examples."""
    return "".join(formats.example(e.instruction, e.response) for e in examples)


def instruction_prompt(examples: Sequence[PoolExample]) -> tuple[str, str]:
    """Self-Instruct style: k instructions, then an open instruction block the model fills with a new one.

    Returned split as (few-shot prefix, open block) so that prompts sharing examples share the prefix.
    """
    return fewshot_instructions(examples), formats.open_block(formats.INSTRUCTION)


def response_prompt(examples: Sequence[PoolExample], instruction: str) -> tuple[str, str]:
    """k complete examples, then the target instruction and an open response block: (prefix, suffix)."""
    return fewshot_examples(examples), formats.prompt(instruction)


# Chat-control markers of common model families, checked as substrings in addition to the tokenizer's own
# special tokens (some tokenizers treat them as plain text, so the id check alone would miss them).
KNOWN_CHAT_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "[INST]",
    "[/INST]",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|endoftext|>",
)
_TEMPLATE_TOKEN = re.compile(r"<\|[^|<>\s]+\|>|<(?:start|end)_of_turn>|\[/?INST\]")


class ChatTokenCheck:
    """Finds chat-template control tokens in prompt strings, by text and by token id.

    Forbidden: every special/added token of the tokenizer (``<bos>``, ``<start_of_turn>``, ``<|im_start|>``,
    ...), every marker that appears in the tokenizer's chat template, and ``KNOWN_CHAT_MARKERS``. The
    tokenizer still adds its own BOS when it encodes a prompt; that BOS is not part of the prompt string.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        special: dict[int, str] = {}
        for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", True):
                special[int(token_id)] = str(added.content if hasattr(added, "content") else added)
        for token in getattr(tokenizer, "all_special_tokens", []):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id >= 0:
                special.setdefault(token_id, token)
        template = getattr(tokenizer, "chat_template", None) or ""
        if isinstance(template, dict):
            template = " ".join(template.values())
        markers = set(KNOWN_CHAT_MARKERS) | set(_TEMPLATE_TOKEN.findall(template))
        self.forbidden_ids = special
        self.markers = tuple(sorted(markers))

    def find(self, prompt: str, token_ids: Sequence[int] | None = None) -> list[str]:
        """The forbidden tokens found in one prompt (empty when it is clean)."""
        found = [m for m in self.markers if m in prompt]
        if token_ids is None:
            token_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        found += [f"{self.forbidden_ids[t]} (id {t})" for t in token_ids if t in self.forbidden_ids]
        return sorted(set(found))

    def check(self, prompts: Sequence[str], context: str = "base-model prompt") -> None:
        """Raise ChatTemplateLeakError naming the first offending prompt and token."""
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
        for index, (prompt, ids) in enumerate(zip(prompts, encoded)):
            found = self.find(prompt, ids)
            if found:
                raise ChatTemplateLeakError(
                    f"chat-template token(s) {', '.join(found)} in {context} #{index}: base-model prompts "
                    "must be plain strings in the project's format and never pass through "
                    "apply_chat_template (docs/BASE_MODEL_TRUTH.md). Prompt starts: "
                    f"{prompt[:120]!r}"
                )


def assert_plain_prompts(prompts: Sequence[str], tokenizer, context: str = "base-model prompt") -> None:
    """Fail if any prompt carries a chat-template control token."""
    ChatTokenCheck(tokenizer).check(prompts, context)
