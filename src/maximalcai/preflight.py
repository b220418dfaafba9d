"""Checks at workflow start that need the steps' own loaders: the constitution, pools, demonstrations and
constraint types a config names are parsed now, so a malformed file stops the workflow before any job with its
path, line and field instead of failing a job later.

``config`` validates the config's shape and values and imports no step; this module sits above the steps and
is what the Snakefile and the command line call after ``load_config``.
"""

from __future__ import annotations

from pathlib import Path

from maximalcai import verifiable
from maximalcai.constitution import load_constitution
from maximalcai.converter import checkout_script
from maximalcai.errors import ConfigError, ModelSourceError
from maximalcai.feedback.critique import load_critique_demos
from maximalcai.feedback.guard import load_safety_demos
from maximalcai.feedback.preference import load_preference_demos
from maximalcai.prompting import load_pool

# The module each tracker of trainer.report_to imports, and its PyPI name.
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
}


def missing_packages(cfg: dict) -> list[str]:
    """The optional packages and tools the config's options need that are missing, each with its fix: found
    now, not when train_dpo or the export starts after the data jobs (trackers of ``trainer.report_to``, the
    converter of ``export.llama_cpp``; GPU-only packages are checked with the hardware:
    hardware.check_hardware)."""
    from importlib.util import find_spec

    problems = []
    for tracker in cfg["trainer"]["report_to"]:
        module, package = TRACKERS[tracker]
        if find_spec(module) is None:
            problems.append(
                f"trainer.report_to: {tracker} needs the {package} package, which is not installed; "
                f"pip install {package} (or remove {tracker} from trainer.report_to)"
            )
    if cfg["export"]["gguf_types"] and cfg["export"]["llama_cpp"]:
        try:
            checkout_script(cfg["export"]["llama_cpp"])
        except ModelSourceError as exc:
            problems.append(str(exc))
    return problems


def check_resources(cfg: dict, sources: str = "config.yaml", root: str | Path | None = None) -> dict:
    """Load every resource file ``cfg`` names with the loader of the step that reads it; raise ConfigError
    naming the config key and the fix. Returns ``cfg``."""
    problems = []
    for index, stage in enumerate(cfg["stages"]):
        unknown = sorted(set(stage["instructions"]["constraints"]["types"] or ()) - set(verifiable.known_types()))
        if unknown:
            problems.append(
                f"stages[{index}].instructions.constraints.types: {unknown} are not IFEval instruction ids that "
                f"if-verifiable checks; choose from {', '.join(verifiable.known_types())}"
            )
    constitution = load_constitution(cfg["constitution"], Path(root) if root is not None else None)
    construction = [p.id for p in constitution.principles if p.mechanism == "construction"]
    for index, stage in enumerate(cfg["stages"]):
        unknown = sorted(set(stage["contrast"]["principles"] or ()) - set(construction))
        if stage["contrast"]["enabled"] and unknown:
            problems.append(
                f"stages[{index}].contrast.principles: {unknown} are not principles with mechanism construction "
                f"in {cfg['constitution']}; choose from {', '.join(construction)}"
            )
    problems += missing_packages(cfg)
    if problems:
        raise ConfigError(f"{sources} is invalid:\n  - " + "\n  - ".join(problems))
    load_critique_demos(cfg["feedback"]["critique_demos"])
    load_preference_demos(cfg["feedback"]["preference_demos"])
    if cfg["safety"]["backend"] == "fewshot":
        load_safety_demos(cfg["safety"]["demos"])
    for stage in cfg["stages"]:
        load_pool(stage["pool"], min_size=max(stage["instructions"]["fewshot_k"], stage["responses"]["fewshot_k"]) + 1)
    load_pool(cfg["evaluation"]["fewshot_pool"], min_size=cfg["evaluation"]["fewshot_k"] + 1)
    return cfg
