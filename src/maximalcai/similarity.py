"""Near-duplicate detection with ROUGE-L F1 over lowercase word tokens (Self-Instruct uses the same test).

``NearDuplicateIndex`` keeps accepted texts and answers "is this new text within ``threshold`` of any of
them?". The word-overlap upper bound on ROUGE-L skips most exact LCS computations, so the check stays
usable at tens of thousands of instructions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(a: str | list[str], b: str | list[str]) -> float:
    """ROUGE-L F1 between two texts (or pre-tokenized word lists); 0.0 when either is empty."""
    wa = words(a) if isinstance(a, str) else a
    wb = words(b) if isinstance(b, str) else b
    if not wa or not wb:
        return 0.0
    lcs = _lcs_length(wa, wb)
    return 2 * lcs / (len(wa) + len(wb))


def lcs_containment(candidate: list[str], reference: list[str]) -> float:
    """Share of the candidate's words that appear, in order, in the reference (LCS / len(candidate))."""
    return _lcs_length(candidate, reference) / len(candidate) if candidate and reference else 0.0


class NearDuplicateIndex:
    """Texts accepted so far; ``closest`` finds the most similar one above a threshold.

    ``measure="f1"``: ROUGE-L F1 (near-duplicates). ``measure="containment"``: how much of a new text lies,
    in order, inside an indexed one (copies and excerpts); texts shorter than ``min_words`` never match.
    """

    def __init__(self, threshold: float, measure: str = "f1", min_words: int = 5) -> None:
        self.threshold = threshold
        self.measure = measure
        self.min_words = min_words
        self._entries: list[tuple[str, list[str], Counter]] = []

    def add(self, key: str, text: str) -> None:
        tokens = words(text)
        self._entries.append((key, tokens, Counter(tokens)))

    def closest(self, text: str) -> tuple[str, float] | None:
        """(key, score) of the most similar accepted text whose ROUGE-L F1 exceeds the threshold, else None."""
        tokens = words(text)
        counts = Counter(tokens)
        containment = self.measure == "containment"
        if containment and len(tokens) < self.min_words:
            return None
        best: tuple[str, float] | None = None
        for key, other, other_counts in self._entries:
            total = len(tokens) if containment else len(tokens) + len(other)
            if not total:
                continue
            # LCS <= multiset overlap, which bounds both measures from above and skips most LCS computations.
            overlap = sum((counts & other_counts).values())
            bound = overlap / total if containment else 2 * overlap / total
            if bound <= self.threshold or (best and bound <= best[1]):
                continue
            score = lcs_containment(tokens, other) if containment else rouge_l(tokens, other)
            if score > self.threshold and (best is None or score > best[1]):
                best = (key, score)
        return best


def copy_index(fewshot_texts: Sequence[str], limit: float) -> NearDuplicateIndex:
    """The few-shot examples and demonstrations a chosen text or SFT completion must not copy (containment)."""
    copies = NearDuplicateIndex(limit, measure="containment")
    for index, text in enumerate(fewshot_texts):
        copies.add(str(index), text)
    return copies
