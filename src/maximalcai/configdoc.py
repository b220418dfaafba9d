"""docs/CONFIG.md, generated from the config schema so the reference cannot drift from the code.

    python -m maximalcai.configdoc > docs/CONFIG.md

tests/test_docs.py fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import json
from typing import Any

from maximalcai.config import _resolve_ref, load_schema, schema_defaults

HEADER = """# Configuration reference

Generated from `src/maximalcai/schemas/config.schema.yaml` by `python -m maximalcai.configdoc`; do not
edit by hand. The workflow validates the config against that schema at start: an unknown key, a wrong type
or an out-of-range value stops it before any job, with the key's dotted path in the message.

Files: `config.yaml` (the CPU default: embedded Gemma 3 270M, small counts; its time for `stage1_model`
is in the README), `config/qwen2.5-32b.yaml` (the real plan), `tests/configs/tiny.yaml` (tests).
Override any key on the command line, e.g. `snakemake --cores 1 stage1_model --config seed=7`, or with
another file: `--configfile my.yaml` (merged over `config.yaml`).

Stages: `stage_defaults` holds the settings every stage inherits; each entry of `stages` overrides only
what it names (nested keys merge, lists and scalars replace), and `stage_overrides` merges settings over one
stage by its id, so a file passed with `--configfile` changes one stage without repeating the list. Stage ids
are `stage1`, `stage2`, ... in list order. File paths are looked up in the working directory, then in the
workflow directory.
"""


def _type(node: dict, root: dict | None = None) -> str:
    if root is not None:
        node = _resolve_ref(node, root)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "oneOf" in node:
        return " or ".join(_type(n, root) for n in node["oneOf"])
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "items" in node and "array" in kinds:
        text += f" of {_type(node['items'], root) or 'values'}"
    bounds = [
        f"{word} {node[key]}"
        for key, word in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"))
        if key in node
    ]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _rows(node: dict, root: dict, path: str, defaults: Any) -> list[tuple[str, str, str, str]]:
    node = _resolve_ref(node, root)
    rows: list[tuple[str, str, str, str]] = []
    for key, sub in node.get("properties", {}).items():
        resolved = _resolve_ref(sub, root)
        dotted = f"{path}.{key}" if path else key
        default = defaults.get(key) if isinstance(defaults, dict) else None
        description = " ".join((sub.get("description") or resolved.get("description") or "").split())
        if resolved.get("type") == "object" and "properties" in resolved:
            if description:
                rows.append((dotted, "object", "", description))
            rows += _rows(resolved, root, dotted, default)
        else:
            rows.append((dotted, _type(resolved, root), json.dumps(default), description))
    return rows


def render() -> str:
    schema = load_schema()
    defaults = schema_defaults(schema, schema)
    stage_defaults = schema_defaults(schema["$defs"]["stage"], schema)
    parts = [HEADER]
    sections = [(k, v) for k, v in schema["properties"].items() if k not in ("stage_defaults", "stages")]
    top = [(k, v) for k, v in sections if "properties" not in _resolve_ref(v, schema)]
    parts.append("## Top level\n\n| key | type | default | meaning |\n|---|---|---|---|")
    for key, node in top:
        parts.append(
            f"| `{key}` | {_type(node)} | `{json.dumps(defaults.get(key))}` | "
            f"{' '.join(node.get('description', '').split())} |"
        )
    for key, node in sections:
        if (key, node) in top:
            continue
        parts.append(f"\n## `{key}`\n")
        if node.get("description"):
            parts.append(" ".join(node["description"].split()) + "\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for dotted, kind, default, description in _rows(node, schema, key, defaults.get(key)):
            parts.append(f"| `{dotted}` | {kind} | {'`' + default + '`' if default else ''} | {description} |")
    parts.append("\n## Stage settings (`stage_defaults` and each entry of `stages`)\n")
    parts.append("| key | type | default | meaning |\n|---|---|---|---|")
    for dotted, kind, default, description in _rows(schema["$defs"]["stage"], schema, "", stage_defaults):
        parts.append(f"| `{dotted}` | {kind} | {'`' + default + '`' if default else ''} | {description} |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
