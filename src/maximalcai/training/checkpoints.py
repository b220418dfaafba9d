"""Resumable training: a stage's checkpoints, the fingerprint of what they were trained from, and the
newest complete one to resume from.

Checkpoints live in ``results/<stage>/checkpoints/{sft,dpo}/`` (not a declared output, so Snakemake never
deletes them when a job is killed). A checkpoint that a kill, an out-of-memory kill or a full disk cut short
while it was saved is removed, and the run resumes from the one before (benchmarks/kill_train.py).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from maximalcai.manifest import write_text_atomic

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
# What a checkpoint needs to resume from: the trainer's state (written last), the weights and the optimizer.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")


def complete_checkpoint(path: Path) -> bool:
    """A checkpoint a killed save did not cut short: its files are there and its state parses."""
    if not all((path / name).is_file() for name in CHECKPOINT_FILES):
        return False
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint of a phase. A checkpoint that a kill, an out-of-memory kill or a full disk
    cut short while it was saved is removed, with a log line, so the rerun resumes from the one before."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    for path in reversed(checkpoints):
        if complete_checkpoint(path):
            return str(path)
        logger.warning("%s was cut short while it was saved (files missing); removing it and resuming before it", path)
        shutil.rmtree(path)
    return None


def checkpoint_step(checkpoint: str | None) -> int:
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else 0


def prepare_checkpoints(folder: Path, fingerprint: dict) -> None:
    """Clear checkpoints made for other inputs or settings, then stamp the folder with this run's fingerprint;
    each phase (``folder/sft``, ``folder/dpo``) resumes from its own last checkpoint (run_phase)."""
    stamp = folder / FINGERPRINT
    try:
        same = json.loads(stamp.read_text()) == fingerprint
    except (OSError, ValueError):  # none yet, or cut short by a kill while it was written
        same = False
    if folder.exists() and not same:
        logger.info("checkpoints in %s were made for other inputs or settings; starting over", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a kill mid-write leaves the old stamp or none, never half of one
    write_text_atomic(stamp, json.dumps(fingerprint, indent=2, sort_keys=True))
