"""Workflow configuration: JSON-schema validation with defaults, stage inheritance, semantic checks.

``load_config(raw, sources)`` is what the Snakefile calls at workflow start (before any job) and what the
tests call directly. It returns the *resolved* config: every key present with its default, and
``stages`` expanded so each entry is complete (``stage_defaults`` merged under it). A stage's id
(``stage1``, ``stage2``, ...) comes from its position. The resolved config is itself valid input, so
resolving twice gives the same result (cluster jobs re-read the Snakefile with the config they were given).

Errors name the file, the dotted key and a fix, e.g.
``config.yaml: stages[0].responses.sampling.temprature: unknown key (did you mean 'temperature'?)``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import warnings
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from maximalcai import yamlfile
from maximalcai.errors import ConfigError

SCHEMA_PATH = Path(str(files("maximalcai").joinpath("schemas/config.schema.yaml")))
STAGE_PREFIX = "stage"
_MISSING = object()


def load_schema() -> dict:
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict:
    return yamlfile.read(SCHEMA_PATH)


def stage_section(path: Sequence[str], section: dict) -> dict:
    """A stage's section at ``path`` (e.g. ("pairs", "verifiable")) with the schema's defaults under what
    ``section`` sets: what the typed sections are built from, so a partial one (a test's, a benchmark's) is
    complete, and a resolved one unchanged."""
    return _with_defaults(_schema()["$defs"]["stage"], path, section)


def config_section(path: Sequence[str], section: dict) -> dict:
    """A top-level section at ``path`` (e.g. ("trainer",)) with the schema's defaults under what ``section``
    sets, as ``stage_section`` does for a stage's."""
    return _with_defaults(_schema(), path, section)


def _with_defaults(node: dict, path: Sequence[str], section: dict) -> dict:
    root = _schema()
    for key in path:
        node = _resolve_ref(node, root)["properties"][key]
    return deep_merge(schema_defaults(node, root), section)


def deep_merge(base: Any, override: Any) -> Any:
    """Dicts merge key by key (recursively); anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _resolve_ref(node: dict, root: dict) -> dict:
    """Follow a local ``$ref`` and merge the referring node's own keywords over the target."""
    if "$ref" not in node:
        return node
    target: Any = root
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve_ref(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def schema_defaults(node: dict, root: dict) -> Any:
    """The default value tree a schema node describes.

    An object's default is built from its properties' defaults; a ``default`` on the object itself (or on a
    ``$ref`` to one) is merged over that, so one shared sampling schema can carry per-use defaults.
    """
    own_default = node.get("default", _MISSING)
    node = _resolve_ref(node, root)
    if node.get("type") == "object" and "properties" in node:
        built = {}
        for key, sub in node["properties"].items():
            value = schema_defaults(sub, root)
            if value is not _MISSING:
                built[key] = value
        if own_default is not _MISSING:
            built = deep_merge(built, own_default)
        return built
    if own_default is not _MISSING:
        return copy.deepcopy(own_default)
    return node.get("default", _MISSING)


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def did_you_mean(key: str, allowed) -> str:
    """`` (did you mean 'x'?)`` for the closest allowed name, or nothing."""
    hint = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


# Keys that moved, by their old dotted name: the error says where they went.
RENAMED = {
    "training": "the top-level section is now `trainer` (backend, load_in_4bit, gradient_checkpointing, "
    "save_steps, report_to); the hyperparameters stay in stage_defaults.training and stages[].training",
}


def _kind(node: dict) -> str:
    """A schema alternative in words: 'auto', 'an integer >= 1', 'one of ...', 'an array'."""
    if "const" in node:
        return repr(node["const"])
    if "enum" in node:
        return f"one of {', '.join(map(repr, node['enum']))}"
    types = node.get("type", "value")
    types = [types] if isinstance(types, str) else types
    bound = f" >= {node['minimum']}" if "minimum" in node else ""
    return " or ".join(f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}" for kind in types) + bound


def _explain(error: jsonschema.ValidationError, schema: dict) -> str:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_resolve_ref(error.schema, schema).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        parts = []
        for key in unknown:
            full = f"{where}.{key}" if where != "(top level)" else key
            if full in RENAMED:
                parts.append(f"{full}: {RENAMED[full]}")
                continue
            parts.append(f"{full}: unknown key{did_you_mean(key, allowed)}; allowed here: {', '.join(allowed)}")
        return "\n  - ".join(parts)
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    if error.validator in ("oneOf", "anyOf"):
        kinds = " or ".join(_kind(_resolve_ref(sub, schema)) for sub in error.validator_value)
        return f"{where}: {error.instance!r} is not {kinds}"
    return f"{where}: {error.message}"


def coerce_command_line_strings(raw: dict, validator) -> None:
    """Snakemake reads a nested ``--config`` value (``--config budget='{allow_over_budget: true}'``) with YAML's
    BaseLoader, which keeps every scalar inside it a string. Where the schema wants a number or a boolean (or
    one of several, such as ``auto`` or an integer) and gets a string, read the string again as YAML and keep
    the result if the schema takes it."""
    for error in list(validator.iter_errors(raw)):
        if error.validator not in ("type", "oneOf", "anyOf") or not isinstance(error.instance, str):
            continue
        if not error.absolute_path:
            continue
        try:
            value = yaml.safe_load(error.instance)
        except yaml.YAMLError:
            continue
        # The value's type is what the command line lost; its range is checked afterwards, so that -1 for a
        # positive integer is reported as below the minimum, not as "not of type integer".
        wanted = {"type": error.schema["type"]} if error.validator == "type" else error.schema
        if isinstance(value, str) or not validator.evolve(schema=wanted).is_valid(value):
            continue
        container = raw
        for key in list(error.absolute_path)[:-1]:
            container = container[key]
        container[error.absolute_path[-1]] = value


# Training keys renamed to the names TRL and PEFT give them: where in a stage's section -> former -> current.
RENAMED_KEYS: dict[tuple[str, ...], dict[str, str]] = {
    ("training",): {
        "epochs": "num_train_epochs",
        "batch_size": "per_device_train_batch_size",
        "grad_accum": "gradient_accumulation_steps",
        "warmup_ratio": "warmup_steps",
        "lr_scheduler": "lr_scheduler_type",
    },
    ("training", "lora"): {"alpha": "lora_alpha", "dropout": "lora_dropout"},
    ("training", "sft_warmup"): {"epochs": "num_train_epochs"},
}


def rename_former_keys(raw: dict, sources: str) -> dict:
    """``raw`` with each former training key (``RENAMED_KEYS``) under its current name, each named in a
    FutureWarning with the fix. A former key wins over the current one beside it: only a user's file still
    writes it, and Snakemake merged that file over config.yaml's current keys."""
    raw = copy.deepcopy(raw)
    stages = raw.get("stages") if isinstance(raw.get("stages"), list) else []
    sections = [("stage_defaults", raw.get("stage_defaults"))] + [(f"stages[{i}]", s) for i, s in enumerate(stages)]
    for where, section in sections:
        for path, names in RENAMED_KEYS.items():
            node = section
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            for old, new in names.items() if isinstance(node, dict) else ():
                if old in node:
                    node[new] = node.pop(old)
                    warnings.warn(
                        f"{sources}: {where}.{'.'.join(path)}.{old} is now {new} (the name TRL and PEFT use); "
                        "rename it there, the former name will stop being read",
                        FutureWarning,
                        stacklevel=2,
                    )
    return raw


def config_sources(configfiles, command_line: dict) -> str:
    """Where a run's config came from, for its error messages: the config files and the --config keys."""
    files = ", ".join(map(str, configfiles)) or "config.yaml"
    return files + (f" and --config {', '.join(sorted(command_line))}" if command_line else "")


def validate_against_schema(raw: dict, sources: str, schema: dict | None = None) -> None:
    """Raise ConfigError listing every schema violation of the raw (user-written) config."""
    schema = schema or load_schema()
    if not isinstance(raw, dict):
        raise ConfigError(f"{sources}: the config must be a mapping of keys to values, got {type(raw).__name__}")
    validator = jsonschema.Draft202012Validator(schema)
    coerce_command_line_strings(raw, validator)
    errors = sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n  - ".join(_explain(e, schema) for e in errors)
        raise ConfigError(
            f"{sources} is invalid ({len(errors)} problem{'s' if len(errors) > 1 else ''}):\n  - {lines}\n"
            "Fix these keys; docs/CONFIG.md lists every key with its type and default."
        )


def stage_id(index: int) -> str:
    """0-based position in ``stages`` -> stage id used in paths and wildcards (stage1, stage2, ...)."""
    return f"{STAGE_PREFIX}{index + 1}"


def stage_number(stage: str) -> int:
    """``stage3`` -> 3."""
    if not stage.startswith(STAGE_PREFIX) or not stage[len(STAGE_PREFIX) :].isdigit():
        raise ConfigError(f"'{stage}' is not a stage id (expected stage1, stage2, ...)")
    return int(stage[len(STAGE_PREFIX) :])


def resolve(raw: dict, schema: dict | None = None) -> dict:
    """Defaults filled in everywhere, stages expanded (defaults <- stage_defaults <- entry <- stage_overrides)."""
    schema = schema or load_schema()
    top_defaults = schema_defaults(schema, schema)
    resolved = deep_merge(top_defaults, {k: v for k, v in raw.items() if k not in ("stages", "stage_defaults")})
    stage_base = deep_merge(schema_defaults(schema["$defs"]["stage"], schema), raw.get("stage_defaults") or {})
    resolved["stage_defaults"] = stage_base
    entries = raw.get("stages") or [{}]
    resolved["stages"] = []
    for entry in entries:
        resolved["stages"].append(deep_merge(stage_base, entry or {}))
    for stage, override in resolved["stage_overrides"].items():  # a stage past the list: _check_semantics says so
        index = stage_number(stage) - 1
        if index < len(resolved["stages"]):
            resolved["stages"][index] = deep_merge(resolved["stages"][index], override)
    if resolved["evaluation"]["fewshot_pool"] is None:  # the in-context baseline uses stage 1's examples
        resolved["evaluation"]["fewshot_pool"] = resolved["stages"][0]["pool"]
    return resolved


def _path_keys(cfg: dict) -> list[tuple[dict, str, str]]:
    """(container, key, dotted name) of every config value that is a file path."""
    keys = [(cfg, "constitution", "constitution"), (cfg["safety"], "demos", "safety.demos")]
    keys += [(cfg["feedback"], k, f"feedback.{k}") for k in ("critique_demos", "preference_demos")]
    keys += [
        (cfg["evaluation"], k, f"evaluation.{k}")
        for k in ("helpful", "redteam", "borderline", "honesty", "fewshot_pool")
    ]
    keys += [(cfg["stage_defaults"], "pool", "stage_defaults.pool")]
    keys += [(stage, "pool", f"stages[{i}].pool") for i, stage in enumerate(cfg["stages"])]
    keys += [
        (stage["responses"], "constraint_pool", f"stages[{i}].responses.constraint_pool")
        for i, stage in enumerate(cfg["stages"])
    ]
    keys += [(cfg["stage_defaults"]["responses"], "constraint_pool", "stage_defaults.responses.constraint_pool")]
    return keys


def resolve_paths(cfg: dict, roots: Sequence[Path]) -> None:
    """Find file paths: a relative path is looked up in each root in turn (the working directory, then the
    workflow directory), so the workflow runs from anywhere with ``--directory``. A file found under the
    working directory keeps its relative path: Snakemake records the set of input paths, so an absolute one
    would rerun every job after the project folder is moved or copied (docs/KNOWN_BUGS_AND_FIXES.md)."""
    for container, key, _ in _path_keys(cfg):
        value = container[key]
        if value and not Path(value).is_absolute():
            found = [root / value for root in roots if (root / value).exists()]
            if found and found[0].resolve().is_relative_to(Path.cwd().resolve()):
                container[key] = str(found[0].resolve().relative_to(Path.cwd().resolve()))
            else:
                container[key] = str((found[0] if found else roots[0] / value).resolve())


def _check_semantics(cfg: dict, sources: str, root: Path | None = None) -> None:
    problems: list[str] = []

    def need_file(key: str, path: str) -> None:
        if not Path(path).is_file():
            problems.append(f"{key}: file '{path}' does not exist")

    need_file("constitution", cfg["constitution"])
    for name in ("helpful", "redteam", "borderline", "honesty", "fewshot_pool"):
        need_file(f"evaluation.{name}", cfg["evaluation"][name])
    need_file("feedback.critique_demos", cfg["feedback"]["critique_demos"])
    need_file("feedback.preference_demos", cfg["feedback"]["preference_demos"])
    if cfg["safety"]["backend"] == "fewshot":
        need_file("safety.demos", cfg["safety"]["demos"])

    source = cfg["base_model"]["source"]
    if source == "local" and not cfg["base_model"]["path"]:
        problems.append("base_model.path: required when base_model.source is 'local'")
    if source == "hub" and not cfg["base_model"]["hub_id"]:
        problems.append("base_model.hub_id: required when base_model.source is 'hub' (e.g. Qwen/Qwen2.5-32B)")

    first_lora = cfg["stages"][0]["training"]["lora"]
    for index, stage in enumerate(cfg["stages"]):
        key = f"stages[{index}]"
        need_file(f"{key}.pool", stage["pool"])
        if stage["responses"]["constraint_pool"]:
            need_file(f"{key}.responses.constraint_pool", stage["responses"]["constraint_pool"])
        ins = stage["instructions"]
        if ins["candidates"] < ins["count"]:
            problems.append(
                f"{key}.instructions.candidates: {ins['candidates']} is below instructions.count "
                f"({ins['count']}); generate at least as many candidates as you want to keep"
            )
        if ins["filters"]["min_words"] > ins["filters"]["max_words"]:
            problems.append(f"{key}.instructions.filters: min_words exceeds max_words")
        clamp = stage["preference"]["clamp"]
        if clamp is not None and not clamp[0] < 0.5 < clamp[1]:
            problems.append(f"{key}.preference.clamp: {clamp} must satisfy low < 0.5 < high, e.g. [0.4, 0.6]")
        if stage["pairs"]["min_chars"] >= stage["pairs"]["max_chars"]:
            problems.append(f"{key}.pairs: min_chars must be below max_chars")
        if stage["training"]["lora"] != first_lora:
            problems.append(
                f"{key}.training.lora: differs from stage 1's {first_lora}; each stage continues the previous "
                "stage's adapter, so r, alpha, dropout and target_modules must match across stages"
            )
    for stage in cfg["stage_overrides"]:
        if stage_number(stage) > len(cfg["stages"]):
            problems.append(
                f"stage_overrides.{stage}: there is no {stage}, the config has {len(cfg['stages'])} stage(s) "
                f"under 'stages'; name one of {', '.join(stage_ids(cfg))} or add the stage to 'stages'"
            )
    reported = cfg["evaluation"]["report_stages"]
    if reported is not None and reported > len(cfg["stages"]):
        problems.append(
            f"evaluation.report_stages: {reported} is more than the {len(cfg['stages'])} configured stage(s)"
        )
    if problems:
        raise ConfigError(f"{sources} is invalid:\n  - " + "\n  - ".join(problems))


def load_config(raw: dict, sources: str = "config.yaml", root: str | Path = ".") -> dict:
    """Validate a raw config (as Snakemake loaded it) and return the resolved config.

    Relative file paths are looked up in the working directory, then in ``root`` (the workflow directory):
    see ``resolve_paths``.
    """
    schema = load_schema()
    raw = rename_former_keys(raw, sources) if isinstance(raw, dict) else raw
    validate_against_schema(raw, sources, schema)
    cfg = resolve(raw, schema)
    resolve_paths(cfg, [Path.cwd(), Path(root)])
    _check_semantics(cfg, sources, Path(root))
    return cfg


def load_config_file(path: str | Path, root: str | Path | None = None) -> dict:
    """Read and resolve a YAML config file (tests, benchmarks and the plan script use this)."""
    path = Path(path)
    try:
        raw = yamlfile.parse(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return load_config(raw, str(path), root if root is not None else Path(__file__).resolve().parents[2])


def default_configfile(root: str | Path | None = None) -> str:
    """The config a run reads when none is named: the working directory's ``config.yaml`` when it has one, else
    the workflow's own (``root``; default this checkout). The Snakefile's ``configfile:`` and the CLI both use it,
    so a folder outside the checkout (``snakemake -s PATH/Snakefile``, the container's /workspace) works alike."""
    if Path("config.yaml").is_file():
        return "config.yaml"
    return str(Path(root if root is not None else Path(__file__).resolve().parents[2]) / "config.yaml")


def load_workflow_config(configfile: str | Path = "config.yaml", root: str | Path | None = None) -> dict:
    """The config a ``snakemake --configfile FILE`` run sees: ``config.yaml`` (the working directory's, else the
    workflow's), with FILE merged over it as Snakemake merges it (mappings merge, lists replace)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    path = Path(configfile)
    if not path.is_file():
        raise ConfigError(f"{path.resolve()}: config file not found; name the workflow's config with --configfile")
    base = Path(default_configfile(root))
    if not base.is_file() or base.resolve() == path.resolve():
        return load_config_file(path, root)
    raw = {}
    for source in (base, path):
        try:
            raw = deep_merge(raw, yamlfile.parse(source.read_text()) or {})
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    return load_config(raw, f"{base}, {path}", root)


def stage_ids(cfg: dict) -> list[str]:
    """Ids of the configured stages, in order."""
    return [stage_id(i) for i in range(len(cfg["stages"]))]


def stage_config(cfg: dict, stage: str) -> dict:
    """The resolved settings of one stage, by id."""
    number = stage_number(stage)
    if number > len(cfg["stages"]):
        raise ConfigError(f"{stage} is not configured: config has {len(cfg['stages'])} stage(s) under 'stages'")
    return cfg["stages"][number - 1]


def previous_stage(stage: str) -> str | None:
    """stage1 -> None (its generator is the base model); stageN -> stage{N-1}."""
    number = stage_number(stage)
    return None if number == 1 else f"{STAGE_PREFIX}{number - 1}"
