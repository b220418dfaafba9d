"""TRL's fused LM head on a CPU: it scores only the completion tokens (``trl.trainer.utils._use_triton``), and
its log-probabilities come from one bf16 projection per slice of tokens instead of TRL's torch fallback of its
Triton kernel (``trl.trainer.utils._ChunkedLogProbFunction``)."""

from __future__ import annotations

import logging

import torch

from maximalcai.patches import require

require(__name__)
logger = logging.getLogger(__name__)


def score_only_completions_on_cpu() -> bool:
    """Make TRL's fused LM head score only completion tokens on a CPU, as it does on Triton devices.

    TRL 1.15/1.16 projects *every* position (prompt and padding included) through the LM head unless Triton
    is available, to keep tile shapes static for compiled backends such as Neuron. Eager CPU execution has no
    such constraint, and with a 262k-token vocabulary (Gemma 3) the projection was 71% of a DPO step: scoring
    only the completion tokens halves the step time with identical log-probabilities
    (docs/KNOWN_BUGS_AND_FIXES.md, tests/test_training.py). Returns whether the patch is in place.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        logger.warning("TRL no longer has trainer.utils._use_triton; CPU DPO scores every position (slower)")
        return False
    if getattr(original, "maximalcai_cpu_compact", False):
        return True

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or original(device)

    compact_on_cpu.maximalcai_cpu_compact = True
    compact_on_cpu.unpatched = original
    trl_utils._use_triton = compact_on_cpu
    return True


# Logit cells (tokens x vocabulary) one slice of tokens may hold: 2**26 float32 cells are 256 MiB, 256 tokens of
# Gemma 3's 262k-token vocabulary; a few such tensors are alive at once. The backward reuses the forward's raw
# logits while all of them fit in KEPT_CELLS (2**28 bf16 cells are 512 MiB), else it projects each slice again.
SLICE_CELLS = 1 << 26
KEPT_CELLS = 1 << 28
OUTPUTS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")  # trl.kernels.chunked_logprob.OPTIONAL_OUTPUTS


def _projection(hidden, weight, bias, dtype):
    """The LM head's raw logits of ``hidden``, in ``dtype`` (the weights' or autocast's)."""
    y = torch.mm(hidden.to(dtype), weight.to(dtype).t())
    return y if bias is None else y.add_(bias.to(dtype))


def _transformed_logits(y, softcap, logit_scale, inv_t):
    """The raw logits ``y`` in float32, as TRL transforms them: scale, soft cap, temperature. Returns (z, tanh
    term or None): the backward needs the latter for the soft cap's derivative. ``y`` is left as it was."""
    y = y.to(torch.float32, copy=True)
    if logit_scale != 1.0:
        y.mul_(logit_scale)
    if softcap is None:
        return y.mul_(inv_t) if inv_t != 1.0 else y, None
    tanh = torch.tanh(y / softcap)
    return tanh * (softcap * inv_t), tanh


class SlicedLogProbs(torch.autograd.Function):
    """``trl.kernels.ChunkedLogProbFunction`` for a CPU: the same arguments and outputs (per-token log-probability
    and, when ``outputs`` names them, entropy, log of the summed squared probabilities, mean logit, whether the
    target is the first argmax), computed from whole-vocabulary logits, one slice of tokens at a time.

    TRL's CPU path is its Triton kernel written in torch: the vocabulary in 32k-column tiles, each folded into
    running statistics by a dozen float32 passes, and a backward that casts every weight tile to float32 to
    accumulate the gradient in float32 (a 262k x 640 copy and a float32 matmul per tile). Here each slice is one
    projection in the weights' dtype (bf16 runs at its native rate), a log-softmax over the whole row, and a
    backward whose gradient matmul is one product over the whole vocabulary, rounded once, as any bf16 matmul is.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
        ctx.set_materialize_grads(False)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype
        inv_t = 1.0 / temperature
        step = max(1, SLICE_CELLS // weight.shape[0])
        found: dict[str, list] = {name: [] for name in ("log_probs", "log_z", *OUTPUTS)}
        kept = [] if hidden.shape[0] * weight.shape[0] <= KEPT_CELLS else None
        for start in range(0, hidden.shape[0], step):
            y = _projection(hidden[start : start + step], weight, bias, dtype)
            if kept is not None:
                kept.append(y)
            z, _ = _transformed_logits(y, softcap, logit_scale, inv_t)
            target = targets[start : start + step].unsqueeze(-1)
            log_z = torch.logsumexp(z, -1)
            found["log_z"].append(log_z)
            found["log_probs"].append(z.gather(-1, target).squeeze(-1) - log_z)
            if "entropy" in outputs:
                found["entropy"].append(log_z - (torch.softmax(z, -1) * z).sum(-1))
            if "log_sum_sq_probs" in outputs:
                found["log_sum_sq_probs"].append(torch.logsumexp(2 * z, -1) - 2 * log_z)
            if "mean_logits" in outputs:
                found["mean_logits"].append(z.mean(-1))
            if "is_top1" in outputs:
                found["is_top1"].append(z.argmax(-1) == target.squeeze(-1))  # the first maximum, as TRL counts
        joined = {name: torch.cat(parts) if parts else None for name, parts in found.items()}
        if not found["log_z"]:  # no token to score
            empty = hidden.new_zeros((0,), dtype=torch.float32)
            joined = {name: (empty if name in ("log_probs", "log_z") or name in outputs else None) for name in joined}
        entropy, log_z = joined["entropy"], joined["log_z"]
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, log_z if entropy is None else entropy)
        ctx.settings = (dtype, softcap, logit_scale, inv_t, step)
        ctx.kept = kept
        extras = [joined[name] for name in ("log_sum_sq_probs", "mean_logits", "is_top1")]
        ctx.mark_non_differentiable(*(x for x in extras if x is not None))
        return joined["log_probs"], entropy, *extras

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy, *_):
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        dtype, softcap, logit_scale, inv_t, step = ctx.settings
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32) if needs_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32) if needs_bias else None
        kept, ctx.kept = ctx.kept, None
        for index, start in enumerate(range(0, hidden.shape[0], step)):
            part = slice(start, start + step)
            y = kept[index] if kept is not None else _projection(hidden[part], weight, bias, dtype)
            z, tanh = _transformed_logits(y, softcap, logit_scale, inv_t)
            log_p = z.sub_(log_z[part].unsqueeze(-1))
            p = torch.exp(log_p)
            grad = torch.zeros_like(p)
            if grad_log_probs is not None:  # d log p_target / dz_j = 1[j = target] - p_j
                g = grad_log_probs[part].float().unsqueeze(-1)
                grad.sub_(p * g).scatter_add_(-1, targets[part].unsqueeze(-1), g)
            if grad_entropy is not None:  # d entropy / dz_j = -p_j (log p_j + entropy)
                grad.sub_(
                    p.mul_(log_p.add_(entropy[part].unsqueeze(-1))).mul_(grad_entropy[part].float().unsqueeze(-1))
                )
            grad.mul_(inv_t * logit_scale)
            if tanh is not None:
                grad.mul_(1 - tanh * tanh)
            if grad_hidden is not None:
                grad_hidden[part] = torch.mm(grad.to(dtype), weight.to(dtype)).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(grad.t(), hidden[part].float())
            if grad_bias is not None:
                grad_bias.add_(grad.sum(0))
        return (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            *([None] * 6),
        )


def sliced_log_probs_on_cpu() -> bool:
    """Route TRL's fused LM head to ``SlicedLogProbs`` for CPU tensors (every other device keeps TRL's kernel).
    Returns whether the patch is in place."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if original is None:
        logger.warning("TRL no longer has trainer.utils._ChunkedLogProbFunction; CPU training keeps TRL's kernel")
        return False
    if getattr(original, "maximalcai_sliced", False):
        return True

    class CpuSliced:
        maximalcai_sliced = True
        unpatched = original

        @staticmethod
        def apply(hidden, *args):
            return (SlicedLogProbs if hidden.device.type == "cpu" else original).apply(hidden, *args)

    trl_utils._ChunkedLogProbFunction = CpuSliced
    return True
