"""Joining the shards of a feedback step (critiques, safety labels, preference labels) into one table.

Shard k of each step works on the answers of response shard k; this writes the stage's table, sorted by its
key, and a manifest that sums the shards' time and summarises the whole table as the unsharded step did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maximalcai import tables
from maximalcai.feedback.critique import empty_revisions
from maximalcai.feedback.guard import label_counts
from maximalcai.feedback.preference import position_bias
from maximalcai.manifest import write_manifest

logger = logging.getLogger(__name__)


def summary(name: str, rows: Sequence[dict[str, Any]], shard_manifests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the step's manifest reports about the whole table."""
    if name == "critiques":
        return {"empty_revisions": empty_revisions(rows)}
    if name == "safety":
        calibration = next(
            (m["fewshot_demo_accuracy"] for m in shard_manifests if m.get("fewshot_demo_accuracy")), None
        )
        return {"labels": label_counts(rows), "fewshot_demo_accuracy": calibration}
    return {"position_bias": position_bias(rows)}


def run_aggregate_feedback(
    cfg: dict,
    stage: str,
    name: str,
    shard_paths: Sequence[str],
    shard_manifests: Sequence[str],
    table: str,
    manifest: str,
) -> None:
    rows = tables.read_shards(shard_paths, name)
    tables.write_table(rows, table, name)
    manifests = [json.loads(Path(path).read_text()) for path in shard_manifests]
    extra = summary(name, rows, manifests)
    logger.info("%s: %d rows from %d shards; %s", name, len(rows), len(shard_paths), extra)
    write_manifest(
        manifest,
        cfg,
        {
            "rule": f"aggregate_{name}",
            "stage": stage,
            "rows": len(rows),
            "shards": len(shard_paths),
            "shard_seconds": [m.get("seconds") for m in manifests],
            **extra,
        },
    )
