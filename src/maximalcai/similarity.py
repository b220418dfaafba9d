"""Near-duplicate detection with ROUGE-L F1 over lowercase word tokens (Self-Instruct uses the same test).

``NearDuplicateIndex`` keeps accepted texts and answers "is this new text within ``threshold`` of any of
them?". The word-overlap upper bound on ROUGE-L skips most exact LCS computations, so the check stays
usable at tens of thousands of instructions.
"""

from __future__ import annotations

import re
from collections import Counter

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


class NearDuplicateIndex:
    """Texts accepted so far; ``closest`` finds the most similar one above a threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._entries: list[tuple[str, list[str], Counter]] = []

    def add(self, key: str, text: str) -> None:
        tokens = words(text)
        self._entries.append((key, tokens, Counter(tokens)))

    def closest(self, text: str) -> tuple[str, float] | None:
        """(key, score) of the most similar accepted text whose ROUGE-L F1 exceeds the threshold, else None."""
        tokens = words(text)
        counts = Counter(tokens)
        best: tuple[str, float] | None = None
        for key, other, other_counts in self._entries:
            total = len(tokens) + len(other)
            if not total:
                continue
            # LCS <= multiset overlap, so 2*overlap/total bounds ROUGE-L F1 from above.
            bound = 2 * sum((counts & other_counts).values()) / total
            if bound <= self.threshold or (best and bound <= best[1]):
                continue
            score = rouge_l(tokens, other)
            if score > self.threshold and (best is None or score > best[1]):
                best = (key, score)
        return best
