"""The constitution: HHH principles that drive critique, revision and preference labels.

``load_constitution`` validates constitution.yaml against its JSON schema and a few rules the schema
cannot express (unique ids, every HHH category present, a question that reads as a question). Errors
name the file, the principle and the field. ``sample_principles`` draws principles reproducibly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jsonschema
import yaml

from maximalcai.errors import ConstitutionError
from maximalcai.manifest import constitution_hash

SCHEMA_PATH = Path(str(files("maximalcai").joinpath("schemas/constitution.schema.yaml")))
CATEGORIES = ("helpful", "harmless", "honest")


@dataclass(frozen=True)
class Principle:
    id: str
    category: str
    critique_request: str
    revision_request: str
    preference_question: str


@dataclass(frozen=True)
class Constitution:
    path: str
    sha256: str
    principles: tuple[Principle, ...]

    def by_id(self, principle_id: str) -> Principle:
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise ConstitutionError(f"{self.path}: no principle with id '{principle_id}'")


def _where(data: dict, path: Sequence) -> str:
    """'principle 'toxicity' (#5), field critique_request' for an error path like
    ['principles', 4, 'critique_request']."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "principles" and isinstance(parts[1], int):
        item = data["principles"][parts[1]]
        name = item.get("id") if isinstance(item, dict) else None
        label = f"principle '{name}' (#{parts[1] + 1})" if name else f"principle #{parts[1] + 1}"
        return label + (f", field '{parts[2]}'" if len(parts) > 2 else "")
    return ".".join(map(str, parts)) or "top level"


def load_constitution(path: str | Path) -> Constitution:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConstitutionError(f"{path}: constitution file not found (config key 'constitution')") from exc
    except yaml.YAMLError as exc:
        raise ConstitutionError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConstitutionError(f"{path}: must be a mapping with a 'principles' list")
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(map(str, e.path)))
    if errors:
        lines = []
        for error in errors:
            where = _where(data, error.absolute_path)
            if error.validator == "required":
                lines.append(
                    f"{where}: {error.message} (each principle needs id, category, critique_request, "
                    "revision_request, preference_question)"
                )
            elif error.validator == "enum":
                lines.append(f"{where}: unknown category {error.instance!r}; use one of {', '.join(CATEGORIES)}")
            elif error.validator == "minItems":
                lines.append(f"{where}: the list is empty; write at least one principle")
            else:
                lines.append(f"{where}: {error.message}")
        raise ConstitutionError(f"{path} is invalid:\n  - " + "\n  - ".join(lines))

    principles = tuple(
        Principle(**{k: p[k].strip() if isinstance(p[k], str) else p[k] for k in Principle.__dataclass_fields__})
        for p in data["principles"]
    )
    problems = []
    seen: set[str] = set()
    for index, principle in enumerate(principles):
        if principle.id in seen:
            problems.append(f"principle '{principle.id}' (#{index + 1}), field 'id': duplicate id")
        seen.add(principle.id)
        if not principle.preference_question.rstrip().endswith("?"):
            problems.append(
                f"principle '{principle.id}' (#{index + 1}), field 'preference_question': "
                "must be a question ending with '?'"
            )
    missing = [c for c in CATEGORIES if c not in {p.category for p in principles}]
    if missing:
        problems.append(f"categories {missing} have no principle; an HHH constitution needs all three")
    if problems:
        raise ConstitutionError(f"{path} is invalid:\n  - " + "\n  - ".join(problems))
    return Constitution(str(path), constitution_hash(path), principles)


def sample_principles(constitution: Constitution, k: int, rng: random.Random) -> list[Principle]:
    """k distinct principles (all of them if k exceeds the count), in random order."""
    return rng.sample(list(constitution.principles), min(k, len(constitution.principles)))
