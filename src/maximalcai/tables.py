"""One explicit Parquet schema per table, checked when a table is written and when it is read.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so an interrupted job
never leaves a half-written table behind. Reads fail with the table's path and the fix when the file is
missing, unreadable, off-schema or (where rows are required) empty. Tables hold no timestamps: same
inputs and seed give the same rows; run-time facts go in the manifest next to them.

docs/TABLES.md describes every column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from maximalcai.errors import TableError

STR = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
STRS = pa.list_(pa.string())
FLOATS = pa.list_(pa.float64())


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, pa.DataType, bool], ...]  # (name, type, nullable)
    key: tuple[str, ...]
    rule: str  # the rule that writes it, for "rerun" hints

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in self.columns])

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]


def _spec(name: str, rule: str, key: tuple[str, ...], *columns: tuple) -> TableSpec:
    return TableSpec(name, tuple((c[0], c[1], c[2] if len(c) > 2 else False) for c in columns), key, rule)


_GENERATED = (("generator", STR), ("fewshot_ids", STRS), ("seed", INT), ("sampling", STR))

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "instruction_candidates",
            "generate_instructions",
            ("candidate_id",),
            ("candidate_id", STR),
            ("stage", STR),
            ("shard", INT),
            ("text", STR),
            ("finish_reason", STR),
            ("num_tokens", INT),
            *_GENERATED,
        ),
        _spec(
            "instructions",
            "aggregate_instructions",
            ("instruction_id",),
            ("instruction_id", STR),
            ("stage", STR),
            ("instruction", STR),
            ("task", STR),
            ("instruction_id_list", STRS),
            ("constraint_kwargs", STR),
            ("candidate_id", STR),
            *_GENERATED,
        ),
        _spec(
            "responses",
            "generate_responses",
            ("response_id",),
            ("response_id", STR),
            ("instruction_id", STR),
            ("stage", STR),
            ("instruction", STR),
            ("candidate_index", INT),
            ("response", STR),
            ("finish_reason", STR),
            ("num_tokens", INT),
            *_GENERATED,
        ),
        _spec(
            "contrast",
            "generate_contrast",
            ("contrast_id",),
            ("contrast_id", STR),
            ("stage", STR),
            ("principle_id", STR),
            ("request_id", STR),
            ("request", STR),
            ("origin", STR),
            ("category", STR),
            ("framing", STR),
            ("response", STR),
            ("finish_reason", STR),
            ("num_tokens", INT),
            *_GENERATED,
        ),
        _spec(
            "critiques",
            "critique_revise",
            ("critique_id",),
            ("critique_id", STR),
            ("response_id", STR),
            ("instruction_id", STR),
            ("stage", STR),
            ("round", INT),
            ("principle_id", STR),
            ("input", STR),
            ("critique", STR),
            ("revision", STR),
            ("critique_finish_reason", STR),
            ("revision_finish_reason", STR),
            *_GENERATED,
            ("constitution_hash", STR),
        ),
        _spec(
            "safety",
            "safety_label",
            ("text_id",),
            ("text_id", STR),
            ("kind", STR),
            ("instruction_id", STR),
            ("stage", STR),
            ("label", STR),
            ("categories", STRS),
            ("p_unsafe", FLOAT, True),
            ("raw_output", STR, True),
            ("guard_backend", STR),
            ("guard_model", STR),
        ),
        _spec(
            "preferences",
            "preference_label",
            ("comparison_id",),
            ("comparison_id", STR),
            ("instruction_id", STR),
            ("stage", STR),
            ("kind", STR),
            ("a_id", STR),
            ("b_id", STR),
            ("principle_ids", STRS),
            ("p_a_first", FLOATS),
            ("p_a_second", FLOATS),
            ("p_a", FLOAT),
            ("soft_label", FLOAT),
            ("labeller", STR),
            ("seed", INT),
            ("constitution_hash", STR),
        ),
        _spec(
            "pairs",
            "build_pairs",
            ("pair_id",),
            ("pair_id", STR),
            ("stage", STR),
            ("prompt", STR),
            ("chosen", STR),
            ("rejected", STR),
            ("instruction_id", STR),
            ("chosen_id", STR),
            ("rejected_id", STR),
            ("comparison_id", STR),
            ("kind", STR),
            ("principle_ids", STRS),
            ("soft_label", FLOAT),
            ("margin", FLOAT),
            ("chosen_safety", STR),
            ("rejected_safety", STR),
            ("safety_swapped", BOOL),
            ("decided_by", STR),
            ("principle_id", STR),
            ("mechanism", STR),
            ("split", STR),
            ("constitution_hash", STR),
        ),
        _spec(
            "sft_examples",
            "build_pairs",
            ("example_id",),
            ("example_id", STR),
            ("instruction_id", STR),
            ("source", STR),
            ("prompt", STR),
            ("completion", STR),
            ("principle_id", STR),
            ("mechanism", STR),
        ),
        _spec(
            "pairs_funnel",
            "build_pairs",
            ("step",),
            ("step", INT),
            ("filter", STR),
            ("rows_in", INT),
            ("rows_out", INT),
            ("dropped", INT),
            ("reason", STR),
        ),
        _spec(
            "training_log",
            "train_dpo",
            ("phase", "step"),
            ("phase", STR),
            ("step", INT),
            ("epoch", FLOAT, True),
            ("loss", FLOAT, True),
            ("rewards_chosen", FLOAT, True),
            ("rewards_rejected", FLOAT, True),
            ("rewards_margins", FLOAT, True),
            ("rewards_accuracies", FLOAT, True),
            ("learning_rate", FLOAT, True),
            ("grad_norm", FLOAT, True),
        ),
        _spec(
            "eval_generations",
            "eval_generate",
            ("prompt_id",),
            ("prompt_id", STR),
            ("set", STR),
            ("model", STR),
            ("prompt", STR),
            ("response", STR),
            ("finish_reason", STR),
            ("num_tokens", INT),
            ("fewshot_ids", STRS),
            ("seed", INT),
            ("sampling", STR),
        ),
        _spec(
            "eval_scores",
            "evaluate",
            ("item_id", "model", "metric"),
            ("item_id", STR),
            ("set", STR),
            ("model", STR),
            ("metric", STR),
            ("value", FLOAT),
        ),
    )
}


def canonical_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no spaces) for dict-valued provenance columns such as sampling."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _rerun_hint(path: Path, spec: TableSpec) -> str:
    return f"rebuild it with: snakemake --cores 1 --forcerun {spec.rule} -- {path}"


def to_arrow(rows: Iterable[dict[str, Any]], schema: str) -> pa.Table:
    """Rows -> an Arrow table of the named schema; raises TableError on missing/extra columns or bad types."""
    spec = TABLES[schema]
    rows = list(rows)
    expected = set(spec.names)
    for index, row in enumerate(rows):
        if set(row) != expected:
            missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
            raise TableError(f"table '{schema}' row {index}: missing columns {missing}, unexpected columns {extra}")
    try:
        arrow = pa.Table.from_pylist(rows, schema=spec.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise TableError(f"table '{schema}': a value does not fit the schema ({exc})") from exc
    _check_content(arrow, spec, f"table '{schema}'")
    return arrow


def _check_content(arrow: pa.Table, spec: TableSpec, where: str) -> None:
    for name, _, nullable in spec.columns:
        if not nullable and arrow.column(name).null_count:
            raise TableError(f"{where}: column '{name}' has {arrow.column(name).null_count} null value(s)")
    if arrow.num_rows:
        keys = list(zip(*(arrow.column(k).to_pylist() for k in spec.key)))
        if len(set(keys)) != len(keys):
            raise TableError(f"{where}: key {spec.key} is not unique")


def write_table(rows: Iterable[dict[str, Any]], path: str | Path, schema: str) -> pa.Table:
    """Validate rows against the table's schema and write them atomically to ``path``."""
    arrow = to_arrow(rows, schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(arrow, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return arrow


def read_table(path: str | Path, schema: str, require_rows: bool = True) -> list[dict[str, Any]]:
    """Rows of a Parquet table, after checking it exists, parses, matches its schema and (optionally) has rows."""
    spec = TABLES[schema]
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: table '{schema}' is missing; {_rerun_hint(path, spec)}")
    try:
        arrow = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated or non-Parquet files
        raise TableError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); {_rerun_hint(path, spec)}"
        ) from exc
    actual = {f.name: f.type for f in arrow.schema}
    expected = {n: t for n, t, _ in spec.columns}
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        wrong = sorted(n for n in set(actual) & set(expected) if actual[n] != expected[n])
        raise TableError(
            f"{path}: does not match the '{schema}' schema (missing {missing}, unexpected {extra}, "
            f"wrong type {wrong}); it was written by another version or edited by hand; {_rerun_hint(path, spec)}"
        )
    arrow = arrow.select(spec.names)
    _check_content(arrow, spec, str(path))
    if require_rows and arrow.num_rows == 0:
        raise TableError(
            f"{path}: table '{schema}' has no rows, so nothing downstream can be built from it; "
            "check the log of the rule that wrote it (its filters may have dropped everything) and the "
            "counts in the config"
        )
    return arrow.to_pylist()


def read_shards(paths: Iterable[str | Path], schema: str) -> list[dict[str, Any]]:
    """The rows of a sharded table's shard files (any may be empty), in the order of the table's key."""
    key = TABLES[schema].key
    rows = (row for path in paths for row in read_table(path, schema, require_rows=False))
    return sorted(rows, key=lambda r: tuple(r[k] for k in key))
