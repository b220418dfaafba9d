"""Next-token sampling: temperature -> top-k -> top-p, the same distribution as transformers' warpers,
without sorting the whole vocabulary at every step.

With a 262k-token vocabulary (Gemma 3) ``TopPLogitsWarper`` sorts 262k logits per row per step, which
cost more than the model's own forward pass on this CPU. The nucleus is the smallest set of most probable
tokens whose mass reaches ``top_p``; if the ``width`` most probable tokens already hold that mass, the
nucleus lies inside them and a partial ``topk`` is enough. Rows where it does not are redone with the
whole vocabulary, so the result is exact either way (tests/test_sampling.py compares with transformers).
"""

from __future__ import annotations

import torch

CANDIDATES = 1024


def nucleus(scores: torch.Tensor, temperature: float, top_k: int, top_p: float, width: int = CANDIDATES):
    """Candidate token ids and their sampling probabilities (zero outside the nucleus), per row.

    ``scores``: [rows, vocab] float logits. Returns (ids [rows, w], probs [rows, w]); probabilities are
    renormalised by ``torch.multinomial`` when sampling.
    """
    scores = scores / temperature
    vocab = scores.shape[-1]
    if top_k:
        width = min(top_k, vocab)
    elif top_p >= 1.0:
        width = vocab  # no filtering at all: every token keeps its probability
    else:
        width = min(width, vocab)
    values, ids = scores.topk(width, dim=-1)
    if top_k:
        probs = torch.softmax(values, dim=-1)  # top-k renormalises before top-p, as transformers does
    else:
        probs = torch.exp(values - torch.logsumexp(scores, dim=-1, keepdim=True))
    if top_p >= 1.0:
        return ids, probs
    before = probs.cumsum(-1) - probs  # mass of the more probable candidates
    keep = before < top_p
    keep[:, 0] = True
    short = probs.sum(-1) < top_p  # the nucleus may extend past the candidates: use the whole vocabulary
    if not top_k and bool(short.any()) and width < vocab:
        rows = short.nonzero().squeeze(1)
        full_ids, full_probs = nucleus(scores[rows] * temperature, temperature, 0, top_p, width=vocab)
        ids, probs, keep = ids.clone(), probs.clone(), keep.clone()
        pad = full_ids.shape[1] - ids.shape[1]
        ids = torch.nn.functional.pad(ids, (0, pad))
        probs = torch.nn.functional.pad(probs, (0, pad))
        keep = torch.nn.functional.pad(keep, (0, pad))
        ids[rows], probs[rows], keep[rows] = full_ids, full_probs, full_probs > 0
    return ids, probs * keep


def sample(
    scores: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """One token id per row, drawn from the tempered, top-k and top-p filtered distribution."""
    ids, probs = nucleus(scores, temperature, top_k, top_p)
    choice = torch.multinomial(probs, 1, generator=generator)
    return ids.gather(1, choice).squeeze(1)
