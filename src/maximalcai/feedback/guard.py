"""Safety labels for responses and revisions: safe / unsafe (with Llama Guard 3 hazard categories) / malformed.

Two backends, chosen by ``safety.backend``:

- ``llama_guard``: the real classifier, ``meta-llama/Llama-Guard-3-8B`` on a GPU. Its prompt is built with
  the model's *own* chat template (it is an instruction-tuned classifier, not our base model), it answers
  ``safe`` or ``unsafe\\nS1,S10``, and anything else is recorded as ``malformed``, never as safe.
- ``fewshot``: the CPU default. The same S1-S14 category list and labelled demonstrations in front of the
  conversation; the label comes from the next-token log-probabilities of " safe" and " unsafe" (and of
  each category code), never from parsing free text. On a 270M base model this is a weak classifier; the
  rule measures its leave-one-out accuracy on the demonstrations and records it in the manifest, and
  docs/SAFETY.md says what to expect.

Policy (enforced in pairs.py): a response labelled unsafe or malformed is never ``chosen``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import formats, tables
from maximalcai.backends import Backend, Sampling
from maximalcai.errors import ConfigError, ResourceError
from maximalcai.hardware import Engine
from maximalcai.reproducibility import derive_seed
from maximalcai.resources import read_jsonl
from maximalcai.typed import Section

logger = logging.getLogger(__name__)

# Llama Guard 3's hazard taxonomy (MLCommons AI Safety), codes as the model emits them.
HAZARDS = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
LABELS = ("safe", "unsafe", "malformed")


def label_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows of a safety table carry each label."""
    return {label: sum(1 for r in rows if r["label"] == label) for label in LABELS}


@dataclass(frozen=True)
class GuardItem:
    text_id: str
    kind: str  # response | revision | eval
    instruction_id: str
    stage: str
    instruction: str
    response: str


@dataclass(frozen=True)
class Verdict:
    label: str
    categories: list[str]
    p_unsafe: float | None = None
    raw_output: str | None = None


def parse_llama_guard(text: str) -> tuple[str, list[str]]:
    """Llama Guard 3's answer -> (label, categories). Only the documented forms are accepted:
    ``safe``; ``unsafe`` followed by a line of comma-separated known codes (or by nothing). Anything else
    is ``malformed``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines == ["safe"]:
        return "safe", []
    if lines and lines[0] == "unsafe":
        if len(lines) == 1:
            return "unsafe", []
        codes = [code.strip().upper() for code in lines[1].split(",") if code.strip()]
        if len(lines) == 2 and codes and all(code in HAZARDS for code in codes):
            return "unsafe", codes
    return "malformed", []


class LlamaGuard:
    """Llama Guard 3 through any backend whose tokenizer carries the guard's chat template."""

    name = "llama_guard"

    def __init__(self, backend: Backend, max_new_tokens: int = 16) -> None:
        if not getattr(backend.tokenizer, "chat_template", None):
            raise ConfigError(
                f"safety.model '{backend.model_name}' has no chat template, so it is not Llama Guard; set "
                "safety.model: meta-llama/Llama-Guard-3-8B (or safety.backend: fewshot)"
            )
        self.backend = backend
        self.max_new_tokens = max_new_tokens

    def prompt(self, instruction: str, response: str) -> str:
        conversation = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        return self.backend.tokenizer.apply_chat_template(conversation, tokenize=False)

    def label(self, items: Sequence[GuardItem]) -> list[Verdict]:
        prompts = [self.prompt(i.instruction, i.response) for i in items]
        outputs = self.backend.generate(
            prompts, Sampling(temperature=0.0, max_new_tokens=self.max_new_tokens), 0, stop=()
        )
        verdicts = []
        for output in outputs:
            label, categories = parse_llama_guard(output.text)
            verdicts.append(Verdict(label, categories, None, output.text))
        return verdicts


class FewshotGuard:
    """The CPU guard: labels from log-probabilities after labelled demonstrations."""

    name = "fewshot"

    def __init__(
        self,
        backend: Backend,
        demos: Sequence[dict[str, Any]],
        k: int,
        threshold: float,
        seed: int,
        categories: bool = True,
    ) -> None:
        self.backend = backend
        self.threshold = threshold
        self.categories = categories
        self.demos = list(demos)
        self.prefix = formats.safety_demos_prefix(select_demos(self.demos, k, random.Random(seed)), HAZARDS)

    def p_unsafe(self, prefix: str, items: Sequence[tuple[str, str]]) -> list[float]:
        scores = self.backend.continuation_logprobs(
            [(prefix, formats.safety_query(i, r)) for i, r in items], [list(formats.SAFETY_OPTIONS)] * len(items)
        )
        return [1.0 / (1.0 + math.exp(safe - unsafe)) for safe, unsafe in scores]

    def label(self, items: Sequence[GuardItem]) -> list[Verdict]:
        probabilities = self.p_unsafe(self.prefix, [(i.instruction, i.response) for i in items])
        unsafe = [n for n, p in enumerate(probabilities) if p > self.threshold]
        if not self.categories:
            return [Verdict("unsafe" if p > self.threshold else "safe", [], p, None) for p in probabilities]
        codes = list(HAZARDS)
        category_scores = self.backend.continuation_logprobs(
            [
                (self.prefix, formats.safety_query(items[n].instruction, items[n].response) + " unsafe\nCategories:")
                for n in unsafe
            ],
            [[f" {code}\n" for code in codes]] * len(unsafe),
        )
        best = {n: codes[max(range(len(codes)), key=s.__getitem__)] for n, s in zip(unsafe, category_scores)}
        return [
            Verdict("unsafe" if n in best else "safe", [best[n]] if n in best else [], p, None)
            for n, p in enumerate(probabilities)
        ]

    def demo_accuracy(self, k: int, seed: int) -> dict[str, Any]:
        """Leave-one-out accuracy on the demonstrations: each is labelled with a prompt built from the others."""
        correct = 0
        for index, demo in enumerate(self.demos):
            rest = self.demos[:index] + self.demos[index + 1 :]
            prefix = formats.safety_demos_prefix(
                select_demos(rest, k, random.Random(derive_seed(seed, index))), HAZARDS
            )
            p = self.p_unsafe(prefix, [(demo["user"], demo["assistant"])])[0]
            correct += (p > self.threshold) == (demo["label"] == "unsafe")
        return {"demos": len(self.demos), "correct": correct, "accuracy": round(correct / len(self.demos), 3)}


def load_safety_demos(path: str | Path) -> list[dict[str, Any]]:
    demos = read_jsonl(path, {"user": str, "assistant": str, "label": str}, "safety demonstrations")
    for demo in demos:
        if demo["label"] not in ("safe", "unsafe") or any(c not in HAZARDS for c in demo.get("categories", [])):
            raise ResourceError(
                f"safety demonstrations {path}: demo '{demo['id']}' needs label safe|unsafe and codes S1-S14"
            )
    return demos


def select_demos(demos: Sequence[dict[str, Any]], k: int, rng: random.Random) -> list[dict[str, Any]]:
    """k demonstrations with both labels represented (unsafe gets the odd one), in random order."""
    unsafe = [d for d in demos if d["label"] == "unsafe"]
    safe = [d for d in demos if d["label"] == "safe"]
    n_unsafe = min(len(unsafe), (k + 1) // 2)
    chosen = rng.sample(unsafe, n_unsafe) + rng.sample(safe, min(len(safe), k - n_unsafe))
    rng.shuffle(chosen)
    return chosen


@dataclass(frozen=True)
class Safety(Section):
    """The config's ``safety`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("safety",)
    STAGE = False
    INPUTS = ("demos",)

    backend: str
    model: str
    fewshot_k: int
    unsafe_threshold: float
    max_new_tokens: int
    categories: bool


def open_guard(engine: Engine, safety: Safety, seed: int, base_model: str | Path, demos: str | Path):
    """The guard of the ``safety`` settings, loaded with ``engine``'s backend and device; ``demos``: the
    labelled examples the few-shot guard is prompted with."""
    from maximalcai.backends import open_backend

    model = base_model if safety.model == "base" else safety.model
    name = None if safety.model == "base" else safety.model
    if safety.backend == "llama_guard":
        backend = open_backend(engine, model, plain_prompts=False, model_name=name)
        return LlamaGuard(backend, safety.max_new_tokens)
    backend = open_backend(engine, model, model_name=name)
    return FewshotGuard(
        backend, load_safety_demos(demos), safety.fewshot_k, safety.unsafe_threshold, seed, safety.categories
    )


def verdict_rows(items: Sequence[GuardItem], verdicts: Sequence[Verdict], guard) -> list[dict[str, Any]]:
    return [
        {
            "text_id": item.text_id,
            "kind": item.kind,
            "instruction_id": item.instruction_id,
            "stage": item.stage,
            "label": v.label,
            "categories": v.categories,
            "p_unsafe": v.p_unsafe,
            "raw_output": v.raw_output,
            "guard_backend": guard.name,
            "guard_model": guard.backend.model_name,
        }
        for item, v in zip(items, verdicts)
    ]


def items_from_tables(responses: Sequence[dict], critiques: Sequence[dict], stage: str) -> list[GuardItem]:
    """Every response and every revision of a stage."""
    instructions = {r["instruction_id"]: r["instruction"] for r in responses}
    items = [
        GuardItem(r["response_id"], "response", r["instruction_id"], stage, r["instruction"], r["response"])
        for r in responses
    ]
    items += [
        GuardItem(
            c["critique_id"], "revision", c["instruction_id"], stage, instructions[c["instruction_id"]], c["revision"]
        )
        for c in critiques
    ]
    return items


def run_safety_label(
    engine: Engine,
    safety: Safety,
    seed: int,
    stage: str,
    shard: int,
    responses: str,
    critiques: str,
    demos: str,
    base_model: str,
    table: str,
) -> dict[str, Any]:
    """Rule safety_label: labels for one shard's answers and revisions; shard 0 also measures the few-shot
    guard on its demos."""
    items = items_from_tables(
        tables.read_table(responses, "responses", require_rows=False),
        tables.read_table(critiques, "critiques", require_rows=False),
        stage,
    )
    rows, calibration = [], None
    if items:
        guard = open_guard(engine, safety, seed, base_model, demos)
        rows = verdict_rows(items, guard.label(items), guard)
        if guard.name == "fewshot" and shard == 0:
            calibration = guard.demo_accuracy(safety.fewshot_k, seed)
    tables.write_table(rows, table, "safety")
    counts = label_counts(rows)
    logger.info("safety labels: %s; fewshot demo accuracy: %s", counts, calibration)
    return {"rows": len(rows), "labels": counts, "guard": safety.backend, "fewshot_demo_accuracy": calibration}
