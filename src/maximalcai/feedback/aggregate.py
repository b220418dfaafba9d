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
    stage: str, feedback: str, shard_tables: Sequence[str], shard_manifests: Sequence[str], table: str
) -> dict[str, Any]:
    """Rule aggregate_feedback: join the shards of one feedback step (``feedback``: critiques, safety or
    preferences) into the stage's table."""
    rows = tables.read_shards(shard_tables, feedback)
    tables.write_table(rows, table, feedback)
    manifests = [json.loads(Path(path).read_text()) for path in shard_manifests]
    extra = summary(feedback, rows, manifests)
    logger.info("%s: %d rows from %d shards; %s", feedback, len(rows), len(shard_tables), extra)
    return {
        "rows": len(rows),
        "shards": len(shard_tables),
        "shard_seconds": [m.get("seconds") for m in manifests],
        **extra,
    }
