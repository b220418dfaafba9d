"""The generation backend interface: batched sampling with stop strings, and option log-probabilities.

Two operations cover everything the workflow asks of a model:

- ``generate(prompts, sampling, seed)``: one completion per prompt, cut at the format's stop strings;
- ``continuation_logprobs(prompts, options)``: log P(option | prompt) for each option of each prompt,
  used for soft preference labels and the few-shot safety guard (labels from log-probabilities, never
  from parsing free text).

A prompt is a plain string, or a ``(prefix, suffix)`` pair whose prefix (the few-shot examples) is shared
by several prompts: the transformers backend then runs the prefix through the model once per batch
instead of once per row, which is most of the compute for few-shot prompts on a CPU.

Backends built for a base model (``plain_prompts=True``, the default) check every prompt batch for
chat-template tokens before it reaches the model.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from maximalcai import formats
from maximalcai.errors import PromptTooLongError
from maximalcai.prompting import ChatTokenCheck

logger = logging.getLogger(__name__)


Prompt = str | tuple[str, str]


def prompt_text(prompt: Prompt) -> str:
    """The full text of a prompt (prefix + suffix for a split prompt)."""
    return prompt if isinstance(prompt, str) else prompt[0] + prompt[1]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 128
    repetition_penalty: float = 1.0

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> Sampling:
        """From a ``sampling`` section of the config (keys it lacks keep these defaults)."""
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    text: str  # cut at the first stop string, stripped
    finish_reason: str  # "stop" (a stop string), "eos" (end-of-sequence token) or "length" (max_new_tokens)
    num_tokens: int  # tokens the model generated for this completion


@dataclass
class ThroughputMeter:
    """Counts generated tokens and wall time; logs tokens/s per batch and overall."""

    tokens: int = 0
    seconds: float = 0.0
    completions: int = 0

    def record(self, tokens: int, seconds: float, completions: int, label: str) -> None:
        self.tokens += tokens
        self.seconds += seconds
        self.completions += completions
        logger.info(
            "%s: %d completions, %d new tokens in %.1f s (%.1f tok/s); total %d tokens, %.1f tok/s",
            label,
            completions,
            tokens,
            seconds,
            tokens / max(seconds, 1e-9),
            self.tokens,
            self.tokens_per_s,
        )

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "generated_tokens": self.tokens,
            "generation_seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "completions": self.completions,
        }


class Backend(ABC):
    """A loaded model that can generate and score. Subclasses: TransformersBackend, VLLMBackend."""

    name: str = "abstract"

    def __init__(self, tokenizer, model_name: str, plain_prompts: bool = True) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.plain_prompts = plain_prompts
        self.meter = ThroughputMeter()
        self._check = ChatTokenCheck(tokenizer) if plain_prompts else None

    # The longest sequence (prompt + answer) the model takes, in tokens; None: no limit known. Set by subclasses.
    context_length: int | None = None

    def check_prompts(self, prompts: Sequence[str], context: str) -> None:
        if self._check is not None:
            self._check.check(prompts, context)

    def check_lengths(self, prompts: Sequence[str], new_tokens: int, context: str) -> None:
        """Refuse prompts that, with ``new_tokens`` more, do not fit ``context_length``: past it a model answers
        with garbage (positions it never saw) or runs out of memory, so nothing is truncated in silence."""
        if self.context_length is None:
            return
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
        over = [(i, n) for i, n in enumerate(lengths) if n + new_tokens > self.context_length]
        if over:
            index, tokens = max(over, key=lambda item: item[1])
            raise PromptTooLongError(
                f"{len(over)} {context}(s) of {len(prompts)} do not fit {self.model_name}'s context of "
                f"{self.context_length:,} tokens with {new_tokens} new tokens (the longest, number {index + 1}, "
                f"has {tokens:,} tokens); shorten them, or lower max_new_tokens"
            )

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        seed: int,
        stop: Sequence[str] = formats.STOP_STRINGS,
    ) -> list[Completion]:
        """One completion per prompt, in order. Same prompts + seed + batch size -> same completions."""
        prompts = list(prompts)
        if not prompts:
            return []
        texts = [prompt_text(p) for p in prompts]
        self.check_prompts(texts, "generation prompt")
        self.check_lengths(texts, sampling.max_new_tokens, "generation prompt")
        start = time.perf_counter()
        out = self._generate(prompts, sampling, seed, tuple(stop))
        logger.debug("generated %d completions in %.1f s", len(out), time.perf_counter() - start)
        return out

    def continuation_logprobs(self, prompts: Sequence[Prompt], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each prompt, the summed log-probability of each of its options as the continuation."""
        prompts = list(prompts)
        if len(prompts) != len(options):
            raise ValueError("one list of options per prompt")
        if not prompts:
            return []
        texts = [prompt_text(p) for p in prompts]
        self.check_prompts(texts, "scoring prompt")
        flat = [o for opts in options for o in opts]
        answers = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        self.check_lengths(texts, max(map(len, answers), default=0), "scoring prompt")
        return self._continuation_logprobs(prompts, [list(o) for o in options])

    @abstractmethod
    def _generate(
        self, prompts: list[Prompt], sampling: Sampling, seed: int, stop: tuple[str, ...]
    ) -> list[Completion]: ...

    @abstractmethod
    def _continuation_logprobs(self, prompts: list[Prompt], options: list[list[str]]) -> list[list[float]]: ...

    def close(self) -> None:  # noqa: B027  a hook: backends that hold memory free it
        """Free the model (GPU memory in particular)."""
