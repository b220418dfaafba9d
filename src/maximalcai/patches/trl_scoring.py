"""TRL's fused LM head on a CPU: it scores only completion tokens (``trl.trainer.utils._use_triton``), and its
backward reads a frozen head's float32 copy made once (``trl.kernels.chunked_logprob._addmm_fp32``)."""

from __future__ import annotations

import logging

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

    def compact(original):
        def compact_on_cpu(device) -> bool:
            return device.type == "cpu" or original(device)

        return compact_on_cpu

    missing = "TRL no longer has trainer.utils._use_triton; CPU DPO scores every position (slower)"
    return replace(trl_utils, "_use_triton", "maximalcai_cpu_compact", compact, missing)


def replace(module, name: str, marker: str, make, missing: str) -> bool:
    """Put ``make(original)`` in place of ``module.name``, once (``marker`` set on it, the original kept as its
    ``unpatched``); a warning ``missing`` and False where the library no longer has ``name``."""
    original = getattr(module, name, None)
    if original is None:
        logger.warning(missing)
        return False
    if not getattr(original, marker, False):
        patched = make(original)
        setattr(patched, marker, True)
        patched.unpatched = original
        setattr(module, name, patched)
    return True


def frozen_head_in_float32_once() -> bool:
    """Make the CPU backward of TRL's chunked log-prob kernel read a frozen LM head's float32 copy made once.

    The kernel's backward sums the hidden state's gradient in float32, one 32k-token slice of the vocabulary at a
    time: ``trl.kernels.chunked_logprob._addmm_fp32(acc, tile, w_chunk)``, which on a CPU casts the bf16 slice to
    a fresh float32 tensor every call (``b.float()``): Gemma 3's head is 8 slices of 84 MB, cast again in every
    micro-batch's backward, and that cast (the writes, the page faults of fresh memory) took a sixth of an SFT
    step on the AVX512-BF16 host (benchmarks/README.md). A frozen head (no gradient, unchanged in place) has the
    same float32 values every time, so this casts it whole once and hands the kernel the same slice of that copy:
    the same ``addmm_`` on the same float32 operands, so the gradients are bit-identical
    (tests/test_patches.py). It keeps one float32 copy of the head (671 MB for Gemma 3 270M's 262k x 640) while
    the process lives. Anything else (a trainable or CUDA weight, the weight-gradient products) takes TRL's path.
    Returns whether the patch is in place.
    """
    import torch
    import trl.kernels.chunked_logprob as chunked

    def cast_once(original):
        # key -> (the bf16 head, its float32 copy); holding the head keeps its memory from being reused by another
        # tensor at the same address while the copy is cached
        cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

        def addmm_fp32(acc, a, b) -> None:
            base = b._base
            if (
                acc.device.type != "cpu"
                or b.dtype not in (torch.bfloat16, torch.float16)
                or base is None
                or base.requires_grad
                or not base.is_contiguous()
            ):
                return original(acc, a, b)
            key = (base.data_ptr(), base._version, tuple(base.shape), base.dtype)
            if key not in cache:
                cache.clear()  # one head at a time
                cache[key] = (base, base.float())
            offset = b.storage_offset() - base.storage_offset()
            acc.addmm_(a.float(), cache[key][1].as_strided(b.shape, b.stride(), offset))

        return addmm_fp32

    missing = "TRL has no kernels.chunked_logprob._addmm_fp32; the CPU backward casts its head per call"
    return replace(chunked, "_addmm_fp32", "maximalcai_frozen_head", cast_once, missing)
