"""Seeds and determinism: one global seed (42 by default) fans out into per-task seeds.

``derive_seed`` makes a stable seed for one unit of work (a stage, a table, a shard) so that a shard
re-run after an interruption draws the same random numbers as it did the first time, whatever else ran.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed derived from ``seed`` and the parts naming a unit of work (stable across runs)."""
    text = "/".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks): provenance of inputs, downloads and checkpoints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dir_sha256(path: str | Path) -> str:
    """One hash of a folder's files: their names and contents, in name order."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic algorithms where it has them."""
    import torch

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        # warn_only: some kernels (a few CUDA scatter ops) have no deterministic version; we would rather
        # run and record it than refuse.
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
