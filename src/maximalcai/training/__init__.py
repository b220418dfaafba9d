"""DPO on a LoRA adapter: TRL + PEFT in fp32 on a CPU, Unsloth 4-bit QLoRA on a GPU (same TRL trainer).

``training.backend`` picks the path: ``auto`` uses Unsloth when CUDA and the package are present, TRL
otherwise. Unsloth and bitsandbytes are imported only inside the GPU path; asking for them without CUDA
stops the workflow at start (``check_hardware``) with the config key to change.
"""

from __future__ import annotations

import importlib.util

from maximalcai.errors import HardwareError
from maximalcai.models import cuda_available, require_cuda


def resolve_training_backend(setting: str, load_in_4bit: bool = False) -> str:
    """auto -> unsloth on CUDA when installed, else trl. Also checked inside the job (cluster nodes)."""
    if load_in_4bit:
        require_cuda("4-bit QLoRA (bitsandbytes)", "training.load_in_4bit")
    if setting == "auto":
        return "unsloth" if cuda_available() and importlib.util.find_spec("unsloth") else "trl"
    if setting == "unsloth":
        require_cuda("unsloth", "training.backend")
    return setting


def check_hardware(cfg: dict) -> None:
    """GPU-only options on a machine without CUDA (or without the gpu extra) fail here, before any job."""
    wants = []
    if cfg["hardware"]["device"] == "cuda":
        wants.append(("CUDA", "hardware.device"))
    if cfg["generation"]["backend"] == "vllm":
        wants.append(("vLLM generation", "generation.backend"))
    if cfg["training"]["backend"] == "unsloth":
        wants.append(("unsloth", "training.backend"))
    if cfg["training"]["load_in_4bit"]:
        wants.append(("4-bit QLoRA (bitsandbytes)", "training.load_in_4bit"))
    for feature, key in wants:
        require_cuda(feature, key)
    for module, key, extra in (("unsloth", "training.backend", "unsloth"), ("vllm", "generation.backend", "vllm")):
        if cfg[key.split(".")[0]]["backend"] == module and importlib.util.find_spec(module) is None:
            raise HardwareError(
                f"{key} is '{module}' but {extra} is not installed: pip install -e '.[gpu]' -c constraints/gpu.txt"
            )
