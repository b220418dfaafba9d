"""Run manifests: what built a table (package versions, resolved config, constitution hash, git commit,
hardware, timings). One JSON file per output table, under ``results/<stage>/manifests/``.

Tables themselves hold no timestamps, so they compare equal across runs; the manifest is where the
when/where goes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from maximalcai import yamlfile

PACKAGES = (
    "maximalcai",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "unsloth",
    "bitsandbytes",
    "vllm",
    "snakemake",
    "pyarrow",
    "pandas",
    "numpy",
    "gguf",
    "if-verifiable",
    "llama-cpp-python",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def constitution_hash(path: str | Path) -> str:
    """sha256 of the constitution's parsed content (comments and formatting do not change it)."""
    data = yamlfile.read(path)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def git_state(cwd: str | Path = ".") -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_kind() -> str:
    """The kind a figure is comparable within: "2-core AVX512-BF16 CPU", "2-core AVX2 CPU" (about 2x apart)."""
    from maximalcai.hardware import cpu_flags

    flags = cpu_flags()
    kind = "AVX512-BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else platform.machine()
    return f"{os.cpu_count()}-core {kind} CPU"


def result_stamp(repo: str | Path) -> dict[str, str]:
    """What every benchmark result file carries: the commit (short), the machine kind and the date."""
    commit = git_state(repo)["commit"]
    return {"commit": (commit or "unknown")[:7], "machine": machine_kind(), "date": time.strftime("%Y-%m-%d")}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "memory_gib": None,
        "cuda": None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    # torch's threads and devices where the process uses torch (a job that does not is spared its import)
    if (torch := sys.modules.get("torch")) is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = {
                "version": torch.version.cuda,
                "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            }
    return info


def build_manifest(config: dict | None, extra: dict | None = None) -> dict[str, Any]:
    cfg = dict(config or {})
    constitution = cfg.get("constitution")
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
        "git": git_state(),
        "hardware": hardware(),
        "constitution": {
            "path": constitution,
            "sha256": constitution_hash(constitution) if constitution and Path(constitution).is_file() else None,
        },
        "config": cfg,
        **(extra or {}),
    }


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text output via a temporary file in the same folder, so a killed job leaves no half file (and a
    full disk no temporary one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(path: str | Path, config: dict | None, extra: dict | None = None) -> dict[str, Any]:
    """Write the manifest JSON atomically and return it."""
    manifest = build_manifest(config, extra)
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


class Timer:
    """Wall time of a block, for manifests and logs."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
