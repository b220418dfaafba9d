"""Generation backends behind one interface: transformers (CPU and GPU) and vLLM (GPU only).

``open_backend`` picks one from the job's engine (``hardware.Engine``: the config's ``hardware`` and
``generation`` sections; ``generation.backend``: auto | transformers | vllm) and the hardware the job runs on. vLLM is
imported only inside its own module, only when chosen.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from maximalcai import hardware, models
from maximalcai.backends.base import Backend, Completion, Sampling, ThroughputMeter
from maximalcai.hardware import Engine

__all__ = ["Backend", "Completion", "Engine", "Sampling", "ThroughputMeter", "open_backend"]

logger = logging.getLogger(__name__)


def open_backend(
    engine: Engine,
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    plain_prompts: bool = True,
    model_name: str | None = None,
) -> Backend:
    """Load ``model_dir`` (+ adapter) with the backend, device and dtype of ``engine``."""
    device = hardware.resolve_device(engine.hardware.device)
    dtype = hardware.resolve_dtype(engine.hardware.dtype, device)
    generation = engine.generation
    name = hardware.resolve_backend_name(generation.backend, device)
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
            **dataclasses.asdict(generation.vllm),
        )
    from maximalcai.backends.transformers_backend import TransformersBackend

    return TransformersBackend(
        model_dir,
        adapter_dir,
        device=device,
        dtype=dtype,
        batch_size=generation.batch_size,
        scoring_batch_size=generation.scoring_batch_size,
        prefill_cells=generation.prefill_cells,
        cache_slots=generation.cache_slots,
        plain_prompts=plain_prompts,
        model_name=model_name,
    )
