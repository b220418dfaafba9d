"""Every hardware decision in one place: the device, the dtype, the generation and training backends, and
the checks that stop a GPU-only option on a machine without CUDA before any job starts.

GPU-only libraries (unsloth, bitsandbytes, vllm) are never imported here: ``importlib.util.find_spec`` says
whether they are installed. ``check_hardware`` runs at workflow start (Snakefile); the ``resolve_*``
functions run again inside each job, where a cluster node may differ from the submit host.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai.errors import HardwareError
from maximalcai.typed import Section


@dataclass(frozen=True)
class Hardware(Section):
    """The config's ``hardware`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("hardware",)
    STAGE = False

    device: str
    dtype: str
    threads: int | str
    allocator: str


@dataclass(frozen=True)
class Vllm:
    """``generation.vllm``: the vLLM engine's own arguments, passed to it by these names."""

    gpu_memory_utilization: float
    max_model_len: int
    tensor_parallel_size: int
    enforce_eager: bool
    max_lora_rank: int


@dataclass(frozen=True)
class Generation(Section):
    """The config's ``generation`` section, typed: which backend decodes, and its batch and memory bounds."""

    PATH = ("generation",)
    STAGE = False

    backend: str
    batch_size: int
    scoring_batch_size: int
    prefill_cells: int | None
    cache_slots: int | None
    vllm: Vllm


@dataclass(frozen=True)
class Engine:
    """How a model job runs: the config's ``hardware`` and ``generation`` sections (a rule's ``engine`` param).
    Device, dtype, backend and batch sizes change the numbers a model job produces (padding, kernels, reduction
    order), so every model job has them in its params and a change reruns it."""

    hardware: Hardware
    generation: Generation

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> Engine:
        """From ``{"hardware": ..., "generation": ...}``, the config's two sections (defaults filled)."""
        return cls(Hardware.from_section(section["hardware"]), Generation.from_section(section["generation"]))

    @classmethod
    def of_config(cls, cfg: dict[str, Any]) -> Engine:
        """The engine of a whole config."""
        return cls.from_section({"hardware": cfg["hardware"], "generation": cfg["generation"]})


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(setting: str) -> str:
    """auto -> cuda when available, else cpu. Asking for cuda without it is a HardwareError."""
    if setting == "auto":
        return "cuda" if cuda_available() else "cpu"
    if setting == "cuda" and not cuda_available():
        raise HardwareError(
            "hardware.device is 'cuda' but torch sees no CUDA device; set hardware.device: auto (or cpu) "
            "in config.yaml, or run on a GPU machine (docs/RUNPOD.md)"
        )
    return setting


def available_cores() -> int:
    """The cores this process may run on: the whole machine locally, the allocation under Slurm or a cgroup."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def resolve_threads(setting: int | str) -> int:
    """hardware.threads: auto -> every available core (Snakemake's --cores only sets how many jobs run at once)."""
    return available_cores() if setting == "auto" else int(setting)


def cpu_flags() -> str:
    """/proc/cpuinfo's text ("" where there is none, as on macOS)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 matrix instructions (AVX512-BF16 or AMX), where bf16 is ~1.5x faster."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(setting: str, device: str):
    import torch

    if setting == "auto":
        if device == "cuda" or cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, setting)


def require_cuda(feature: str, key: str) -> None:
    """Stop with a clear message when a GPU-only feature is asked for without CUDA."""
    if not cuda_available():
        raise HardwareError(
            f"{key} asks for {feature}, which needs an NVIDIA GPU with CUDA, and torch sees none on this "
            f"machine. Set {key} to its CPU value (see docs/CONFIG.md) or run on a GPU (docs/RUNPOD.md)."
        )


def wants_gpu(cfg: dict) -> bool:
    """Whether this config runs its model jobs on a GPU (CUDA device, vLLM, Unsloth or 4-bit training)."""
    return (
        cfg["hardware"]["device"] == "cuda"
        or cfg["generation"]["backend"] == "vllm"
        or cfg["trainer"]["backend"] == "unsloth"
        or cfg["trainer"]["load_in_4bit"]
    )


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


def resolve_training_backend(setting: str, load_in_4bit: bool = False) -> str:
    """auto -> unsloth on CUDA when installed, else trl. Also checked inside the job (cluster nodes)."""
    if load_in_4bit:
        require_cuda("4-bit QLoRA (bitsandbytes)", "trainer.load_in_4bit")
    if setting == "auto":
        return "unsloth" if cuda_available() and importlib.util.find_spec("unsloth") else "trl"
    if setting == "unsloth":
        require_cuda("unsloth", "trainer.backend")
    return setting


def check_hardware(cfg: dict) -> None:
    """GPU-only options on a machine without CUDA (or without the gpu extra) fail here, before any job."""
    wants = []
    if cfg["hardware"]["device"] == "cuda":
        wants.append(("CUDA", "hardware.device"))
    if cfg["generation"]["backend"] == "vllm":
        wants.append(("vLLM generation", "generation.backend"))
    if cfg["trainer"]["backend"] == "unsloth":
        wants.append(("unsloth", "trainer.backend"))
    if cfg["trainer"]["load_in_4bit"]:
        wants.append(("4-bit QLoRA (bitsandbytes)", "trainer.load_in_4bit"))
    for feature, key in wants:
        require_cuda(feature, key)
    for module, key, extra in (("unsloth", "trainer.backend", "unsloth"), ("vllm", "generation.backend", "vllm")):
        if cfg[key.split(".")[0]]["backend"] == module and importlib.util.find_spec(module) is None:
            raise HardwareError(
                f"{key} is '{module}' but {extra} is not installed: pip install -e '.[gpu]' -c constraints/gpu.txt"
            )
