"""Reading the hand-written JSONL files under resources/ with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maximalcai.errors import ResourceError


def read_jsonl(path: str | Path, required: dict[str, type | tuple[type, ...]], what: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each must be an object with the ``required`` fields (non-empty) and a unique id.

    ``what`` says what the file is for, so the error reads like "few-shot pool resources/x.jsonl:12: ...".
    """
    path = Path(path)
    if not path.is_file():
        raise ResourceError(f"{what} {path}: file not found")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{what} {path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResourceError(
                f"{where}: not UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8"
            ) from exc
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResourceError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ResourceError(f"{where}: each line must be a JSON object")
        for field, kind in {"id": str, **required}.items():
            value = row.get(field)
            if value is None or not isinstance(value, kind) or (isinstance(value, (str, list)) and not value):
                raise ResourceError(f"{where}: field '{field}' is missing, empty or not {_kind_name(kind)}")
        leaked = chat_markers(row)
        if leaked:
            raise ResourceError(
                f"{where}: chat-template token(s) {', '.join(leaked)} in the text; base-model prompts are plain "
                "strings in the project's format (docs/BASE_MODEL_TRUTH.md): remove them"
            )
        if row["id"] in seen:
            raise ResourceError(f"{where}: duplicate id '{row['id']}'")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise ResourceError(f"{what} {path}: the file has no rows")
    return rows


def chat_markers(value: Any) -> list[str]:
    """The chat-template control tokens (prompting.KNOWN_CHAT_MARKERS) in any string of ``value``."""
    from maximalcai.prompting import KNOWN_CHAT_MARKERS

    if isinstance(value, str):
        return [m for m in KNOWN_CHAT_MARKERS if m in value]
    if isinstance(value, dict):
        return sorted({m for v in value.values() for m in chat_markers(v)})
    if isinstance(value, list):
        return sorted({m for v in value for m in chat_markers(v)})
    return []


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
