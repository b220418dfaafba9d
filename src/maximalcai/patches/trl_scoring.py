"""TRL's fused LM head scores only completion tokens on a CPU (``trl.trainer.utils._use_triton``)."""

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
