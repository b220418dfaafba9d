"""The constitution: HHH principles that drive critique, revision and preference labels.

``load_constitution`` validates constitution.yaml against its JSON schema and a few rules the schema
cannot express (unique ids, every HHH category present, a question that reads as a question). Errors
name the file, the principle and the field. ``sample_principles`` draws principles reproducibly.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import jsonschema
import yaml

from maximalcai import yamlfile
from maximalcai.errors import ConstitutionError
from maximalcai.manifest import constitution_hash
from maximalcai.resources import chat_markers

WORKFLOW_DIR = Path(__file__).resolve().parents[2]  # this checkout: where the shipped resources are
SCHEMA_PATH = Path(str(files("maximalcai").joinpath("schemas/constitution.schema.yaml")))


@functools.cache
def constitution_schema() -> dict:
    return yamlfile.read(SCHEMA_PATH)


CATEGORIES = ("helpful", "harmless", "honest")


MECHANISMS = ("construction", "checks", "model")
# Checks by code a principle can name with mechanism checks: the pair checks (code_checks.CHECKS) and the text
# checks on refusals (verifiable.TEXT_CHECKS).
# The files a construction names (written is optional).
CONSTRUCTION_FILES = ("requests", "follow", "violate", "written")
PRINCIPLE_CHECKS = ("answers", "not_empty", "stops", "no_loop", "constraint", "offers_alternative", "no_lecture")


@dataclass(frozen=True)
class Construction:
    """Labels by construction (RLCD): the same request answered after examples that follow the principle
    (``follow``) and after examples that violate it (``violate``); the first is chosen when it passes the
    ``chosen`` check by code and the second passes ``rejected``. ``written``: answers written by hand per
    category of the requests, the fallback of one side (``written_side``) when no generated answer passes
    its check: a refusal chosen when no follow answer passes, or an over-refusal rejected when the model
    answered a benign request under both framings. A written answer may instead name one request
    (``request_id``); with no ``follow`` pool, those are the chosen side (the facts of an honest answer, which
    a small model does not know)."""

    requests: str
    violate: str
    chosen: str
    rejected: str
    follow: str | None = None
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    written: str | None = None
    written_side: str = "chosen"

    def as_dict(self) -> dict:
        return {**asdict(self), "where": {k: list(v) for k, v in self.where.items()}}


@dataclass(frozen=True)
class Principle:
    id: str
    category: str
    critique_request: str
    revision_request: str
    preference_question: str
    mechanism: str = "model"
    check: str | None = None
    construction: Construction | None = None
    cpu: str | None = None


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


def load_constitution(path: str | Path, root: str | Path | None = None) -> Constitution:
    """The validated constitution. Construction files are found from the working directory, beside the
    constitution, then under ``root`` (the workflow's folder; default this checkout), as the config's own paths
    are."""
    path = Path(path)
    try:
        data = yamlfile.read(path)
    except FileNotFoundError as exc:
        raise ConstitutionError(f"{path}: constitution file not found (config key 'constitution')") from exc
    except yaml.YAMLError as exc:
        raise ConstitutionError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConstitutionError(f"{path}: must be a mapping with a 'principles' list")
    schema = constitution_schema()
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

    folders = [path.parent, Path(root) if root else WORKFLOW_DIR]
    principles = tuple(_principle(p, folders) for p in data["principles"])
    problems = [problem for index, p in enumerate(principles) for problem in _mechanism_problems(p, index, path)]
    seen: set[str] = set()
    for index, principle in enumerate(principles):
        if principle.id in seen:
            problems.append(f"principle '{principle.id}' (#{index + 1}), field 'id': duplicate id")
        seen.add(principle.id)
        for name in ("critique_request", "revision_request", "preference_question"):
            leaked = chat_markers(getattr(principle, name))
            if leaked:
                problems.append(
                    f"principle '{principle.id}' (#{index + 1}), field '{name}': chat-template token(s) "
                    f"{', '.join(leaked)}; principles go into base-model prompts as plain text "
                    "(docs/BASE_MODEL_TRUTH.md)"
                )
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


def _find(file: str, folders: Sequence[Path]) -> str:
    """A construction file as written when it exists from the working directory, else the first of
    ``folders`` (beside the constitution, the workflow's folder) that has it, as an absolute path."""
    if Path(file).exists() or Path(file).is_absolute():
        return file
    return next((str((folder / file).resolve()) for folder in folders if (folder / file).exists()), file)


def _principle(data: dict, folders: Sequence[Path]) -> Principle:
    values = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
    if isinstance(values.get("construction"), dict):
        spec = _typed_where(values["construction"])
        spec |= {k: _find(spec[k], folders) for k in CONSTRUCTION_FILES if spec.get(k)}
        values["construction"] = Construction(**spec)
    return Principle(**values)


def _mechanism_problems(principle: Principle, index: int, path: Path) -> list[str]:
    """What a principle's mechanism needs: a check, or a construction whose files exist (relative to the
    constitution's folder's working directory, as the workflow reads them), or nothing for a model."""
    where = f"principle '{principle.id}' (#{index + 1})"
    needs = {"checks": "check", "construction": "construction"}
    problems = [
        f"{where}, field '{name}': only used with mechanism {mechanism}; set mechanism: {mechanism} or remove it"
        for mechanism, name in needs.items()
        if getattr(principle, name) is not None and principle.mechanism != mechanism
    ]
    if principle.mechanism in needs and getattr(principle, needs[principle.mechanism]) is None:
        problems.append(f"{where}: mechanism {principle.mechanism} needs the field '{needs[principle.mechanism]}'")
    if principle.construction is not None:
        for name in CONSTRUCTION_FILES:
            file = getattr(principle.construction, name)
            if file is not None and not Path(file).is_file():
                problems.append(
                    f"{where}, field 'construction.{name}': file {file} not found (looked in the working "
                    "directory, beside the constitution and in the workflow's folder)"
                )
        if principle.construction.follow is None and (
            principle.construction.written is None or principle.construction.written_side != "chosen"
        ):
            problems.append(
                f"{where}, field 'construction': with no 'follow' pool the chosen side is the written answers; "
                "name them in 'written' (written_side: chosen), or add a 'follow' pool"
            )
        if principle.construction.chosen == principle.construction.rejected:
            problems.append(
                f"{where}, field 'construction': chosen and rejected name the same check "
                f"({principle.construction.chosen}); a pair needs answers that differ"
            )
        problems += _written_problems(principle.construction, where)
    return problems


def _written_problems(spec: Construction, where: str) -> list[str]:
    """Written answers that fail a check their side must pass (they could never be used): the check of
    ``written_side``, and for a chosen refusal the checks on refusals (an alternative, no lecture)."""
    from maximalcai.resources import read_jsonl
    from maximalcai.verifiable import REFUSAL_CHECKS, TEXT_CHECKS

    if spec.written is None or not Path(spec.written).is_file() or not Path(spec.requests).is_file():
        return []
    side = spec.written_side
    checks = [spec.chosen, *REFUSAL_CHECKS] if side == "chosen" and spec.chosen == "refuses" else [getattr(spec, side)]
    rows = read_jsonl(spec.written, {"category": str, "response": str}, f"{where}'s written answers")
    requests = read_jsonl(spec.requests, {"request": str}, f"{where}'s requests")
    selected = {r["id"]: r for r in requests if all(str(r.get(k)) in values for k, values in spec.where.items())}
    ids = {r["id"] for r in requests}
    # an answer written for one request is checked when the principle selects that request; one per category always
    problems = [
        f"{where}, file {spec.written}:{number} ({row['id']}): fails the check '{check}' that a {side} "
        "answer must pass; rewrite it"
        for number, row in enumerate(rows, start=1)
        if row.get("request_id") is None or row["request_id"] in selected
        for check in checks
        if not TEXT_CHECKS[check](row["response"])
    ]
    problems += [
        f"{where}, file {spec.written}:{number} ({row['id']}): request_id '{row['request_id']}' is no request "
        f"of {spec.requests}; fix the id or remove the answer"
        for number, row in enumerate(rows, start=1)
        if "request_id" in row and row["request_id"] not in ids
    ]
    if spec.follow is None:  # the written answers are the only chosen side: every request needs one
        field = next(iter(spec.where), None)
        keys = {row.get("request_id") or row["category"] for row in rows}
        bare = [
            rid
            for rid, r in selected.items()
            if not {rid, str(r.get(field) or r.get("hazard") or r.get("kind") or ""), "any"} & keys
        ]
        if bare:
            problems.append(
                f"{where}, file {spec.written}: no answer written for request(s) {', '.join(bare[:5])} of "
                f"{spec.requests}, and the principle has no 'follow' pool; write one (request_id) per request"
            )
    return problems


@dataclass(frozen=True)
class Labelling:
    """How a principle's pairs are labelled: what build_pairs and generate_contrast read of a principle."""

    mechanism: str
    check: str | None = None
    construction: Construction | None = None


class Labellings(dict[str, Labelling]):
    """Each principle's labelling by id, in the constitution's order. A rule's params hold it as plain data
    (``as_dict``: so that only a change of mechanism reruns the rule); ``job.job_arguments`` builds this class
    from that data (``from_section``) where the library function annotates its parameter with it."""

    @classmethod
    def of(cls, constitution: Constitution) -> Labellings:
        return cls({p.id: Labelling(p.mechanism, p.check, p.construction) for p in constitution.principles})

    @classmethod
    def from_section(cls, plain: dict[str, dict]) -> Labellings:
        """From ``as_dict``'s plain data."""
        return cls(
            {
                pid: Labelling(
                    p["mechanism"],
                    p["check"],
                    None if p["construction"] is None else Construction(**_typed_where(p["construction"])),
                )
                for pid, p in plain.items()
            }
        )

    def as_dict(self) -> dict[str, dict]:
        return {
            pid: {
                "mechanism": p.mechanism,
                "check": p.check,
                "construction": p.construction.as_dict() if p.construction else None,
            }
            for pid, p in self.items()
        }

    def constructions(self, only: Sequence[str] | None = None) -> dict[str, Construction]:
        """The principles labelled by construction (``only``: a subset by id; None: all), id -> construction."""
        return {
            pid: p.construction
            for pid, p in self.items()
            if p.construction is not None and p.mechanism == "construction" and (only is None or pid in only)
        }

    def checked(self) -> dict[str, str]:
        """The principles carried by checks by code: check -> principle id (the first that names it)."""
        checked: dict[str, str] = {}
        for pid, p in self.items():
            if p.mechanism == "checks" and p.check is not None:
                checked.setdefault(p.check, pid)
        return checked


def _typed_where(construction: dict) -> dict:
    """A construction's plain data with its ``where`` values as tuples, as ``Construction`` holds them."""
    return {**construction, "where": {k: tuple(v) for k, v in construction.get("where", {}).items()}}


def sample_principles(constitution: Constitution, k: int, rng: random.Random) -> list[Principle]:
    """k distinct principles (all of them if k exceeds the count), in random order."""
    return rng.sample(list(constitution.principles), min(k, len(constitution.principles)))
