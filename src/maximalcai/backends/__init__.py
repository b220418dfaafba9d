"""Generation backends behind one interface: transformers (CPU and GPU) and vLLM (GPU only).

``open_backend`` picks one from config (``generation.backend``: auto | transformers | vllm) and the
hardware the job runs on. vLLM is imported only inside its own module, only when chosen.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from maximalcai import models
from maximalcai.backends.base import Backend, Completion, Sampling, ThroughputMeter
from maximalcai.errors import HardwareError

__all__ = ["Backend", "Completion", "Sampling", "ThroughputMeter", "open_backend", "resolve_backend_name"]

logger = logging.getLogger(__name__)


def resolve_backend_name(setting: str, device: str) -> str:
    """auto -> vllm on CUDA when vllm is installed, else transformers; vllm without CUDA is an error."""
    if setting == "auto":
        return "vllm" if device == "cuda" and importlib.util.find_spec("vllm") else "transformers"
    if setting == "vllm":
        if device != "cuda":
            raise HardwareError(
                "generation.backend is 'vllm', which needs an NVIDIA GPU with CUDA; this job runs on the CPU. "
                "Set generation.backend: auto (or transformers) in config.yaml, or run on a GPU (docs/RUNPOD.md)."
            )
        if importlib.util.find_spec("vllm") is None:
            raise HardwareError(
                "generation.backend is 'vllm' but vllm is not installed; install the GPU extra: "
                "pip install -e '.[gpu]' -c constraints/gpu.txt"
            )
    return setting


def open_backend(
    cfg: dict[str, Any],
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    plain_prompts: bool = True,
    model_name: str | None = None,
) -> Backend:
    """Load ``model_dir`` (+ adapter) with the configured backend, device and dtype."""
    device = models.resolve_device(cfg["hardware"]["device"])
    dtype = models.resolve_dtype(cfg["hardware"]["dtype"], device)
    name = resolve_backend_name(cfg["generation"]["backend"], device)
    if model_name is None:
        model_name = models.model_name(model_dir, adapter_dir)
    logger.info("opening %s backend for %s on %s (%s)", name, model_name, device, dtype)
    if name == "vllm":
        from maximalcai.backends.vllm_backend import VLLMBackend

        return VLLMBackend(
            model_dir,
            adapter_dir,
            dtype=dtype,
            plain_prompts=plain_prompts,
            model_name=model_name,
            **cfg["generation"]["vllm"],
        )
    from maximalcai.backends.transformers_backend import TransformersBackend

    return TransformersBackend(
        model_dir,
        adapter_dir,
        device=device,
        dtype=dtype,
        batch_size=cfg["generation"]["batch_size"],
        scoring_batch_size=cfg["generation"]["scoring_batch_size"],
        plain_prompts=plain_prompts,
        model_name=model_name,
    )
