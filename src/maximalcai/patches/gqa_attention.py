"""Grouped-query attention for CPU inference without copying keys and values.

transformers' eager and CPU-sdpa paths expand each key/value head to every query head that shares it
(``repeat_kv``), a full copy of the KV cache per layer per decoding step. For Gemma 3 270M (4 query heads
on 1 KV head) that copy was half of the time of a decoding step on this CPU. Here the query heads of a
group are folded into the query-length axis instead, so one matmul per KV head serves its whole group.
Same math as ``eager_attention_forward``; registered under the name ``ATTENTION`` for both the attention
function and the (eager, additive) mask builder.
"""

from __future__ import annotations

from maximalcai.patches import require

require(__name__)
ATTENTION = "maximalcai_gqa"


def grouped_query_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    softcap: float | None = None,
    **kwargs,
):
    import torch

    batch, heads, q_len, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scaling = dim**-0.5 if scaling is None else scaling
    grouped = query.reshape(batch, kv_heads, groups * q_len, dim)
    scores = torch.matmul(grouped, key.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :kv_len]  # [batch, 1, q_len, kv_len], additive
        scores = (scores.view(batch, kv_heads, groups, q_len, kv_len) + mask[:, :, None]).view(
            batch, kv_heads, groups * q_len, kv_len
        )
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(weights, value)  # [batch, kv_heads, groups * q_len, dim]
    output = output.view(batch, heads, q_len, dim).transpose(1, 2).contiguous()
    return output, weights.view(batch, heads, q_len, kv_len)


def register() -> str:
    """Register the attention (and its mask builder) with transformers; returns the implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTENTION, grouped_query_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)
    return ATTENTION
