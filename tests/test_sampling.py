"""The partial-sort sampler gives the same distribution as transformers' warpers, fallback included."""

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from maximalcai.backends.sampling import nucleus, sample


def reference(scores, temperature, top_k, top_p):
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    return torch.softmax(warpers(None, scores.clone()), -1)


def dense(ids, probs, vocab):
    out = torch.zeros(ids.shape[0], vocab)
    out.scatter_add_(1, ids, probs)
    return out / out.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "temperature, top_k, top_p, width",
    [
        (1.0, 0, 0.95, 1024),
        (0.7, 0, 0.9, 1024),
        (1.0, 20, 0.8, 1024),
        (1.3, 0, 1.0, 1024),
        (1.0, 0, 0.95, 8),  # candidates too few for the nucleus: exercises the full-vocabulary fallback
    ],
)
def test_nucleus_matches_transformers(temperature, top_k, top_p, width):
    torch.manual_seed(0)
    scores = torch.randn(6, 3000) * torch.tensor([[0.5], [1], [2], [4], [8], [0.1]])
    ids, probs = nucleus(scores, temperature, top_k, top_p, width=width)
    expected = reference(scores, temperature, top_k, top_p)
    torch.testing.assert_close(dense(ids, probs, 3000), expected, atol=1e-6, rtol=1e-4)


def test_sample_is_seeded_and_stays_in_the_nucleus():
    scores = torch.randn(4, 500)
    draw = lambda: sample(scores, 1.0, 5, 1.0, torch.Generator().manual_seed(3))  # noqa: E731
    assert torch.equal(draw(), draw())
    allowed = scores.topk(5).indices
    assert all(t in allowed[i] for i, t in enumerate(draw().tolist()))
