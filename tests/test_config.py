"""Config validation: defaults, stage inheritance, and errors that name the key and the fix."""

import copy
import json
import subprocess
import sys
import typing

import pytest
import yaml

from conftest import REPO
from maximalcai.config import (
    config_sources,
    deep_merge,
    load_config,
    load_schema,
    schema_defaults,
    stage_config,
    stage_ids,
)
from maximalcai.errors import ConfigError
from maximalcai.preflight import check_resources


def raw_default() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def load(raw: dict) -> dict:
    return load_config(raw, "config.yaml", REPO)


def test_default_config_resolves_with_defaults(default_config):
    assert default_config["seed"] == 42
    assert stage_ids(default_config)[0] == "stage1"
    stage = stage_config(default_config, "stage1")
    assert stage["instructions"]["count"] == 32  # from config.yaml's stage_defaults
    assert stage["critique"]["rounds"] == 1  # from the schema default
    assert stage["pool"].endswith("resources/pools/stage1_explicit.jsonl")


def test_resolving_twice_gives_the_same_config(default_config):
    # Cluster jobs re-read the Snakefile with an already resolved config.
    assert load(copy.deepcopy(default_config)) == default_config


def test_unknown_key_names_the_path_and_suggests_the_fix():
    raw = raw_default()
    raw["stage_defaults"]["responses"]["sampling"]["temprature"] = 0.5
    with pytest.raises(ConfigError) as err:
        load(raw)
    message = str(err.value)
    assert "stage_defaults.responses.sampling.temprature: unknown key" in message
    assert "did you mean 'temperature'?" in message


def test_the_old_top_level_training_section_says_where_it_went():
    raw = raw_default()
    raw["training"] = raw.pop("trainer")
    with pytest.raises(ConfigError, match=r"training: the top-level section is now `trainer` \(backend"):
        load(raw)


def test_wrong_type_and_out_of_range_values_name_their_keys():
    raw = raw_default()
    raw["seed"] = "forty-two"
    raw["stages"][0]["responses"] = {"per_instruction": 1}
    with pytest.raises(ConfigError) as err:
        load(raw)
    message = str(err.value)
    assert "seed: 'forty-two' is not of type 'integer'" in message
    assert "stages[0].responses.per_instruction: 1 is less than the minimum of 2" in message
    assert "2 problems" in message


def test_enum_errors_list_the_allowed_values():
    raw = raw_default()
    raw["trainer"]["backend"] = "deepspeed"
    with pytest.raises(ConfigError, match=r"trainer.backend: 'deepspeed' is not one of 'auto', 'trl', 'unsloth'"):
        load(raw)


def test_stage_inherits_defaults_and_overrides_what_it_names():
    raw = raw_default()
    raw["stages"] = [{}, {"name": "implicit", "responses": {"sampling": {"temperature": 0.3}}}]
    cfg = load(raw)
    first, second = cfg["stages"]
    assert second["name"] == "implicit"
    assert second["responses"]["sampling"]["temperature"] == 0.3
    # everything it does not name is inherited, including sibling keys of what it overrides
    assert second["responses"]["sampling"]["max_new_tokens"] == first["responses"]["sampling"]["max_new_tokens"]
    assert second["instructions"] == first["instructions"]


def test_a_stage_override_changes_the_stage_it_names_and_no_other():
    raw = raw_default()
    raw["stages"] = [{}, {"name": "implicit", "responses": {"sampling": {"temperature": 0.3}}}]
    raw["stage_overrides"] = {"stage2": {"responses": {"sampling": {"max_new_tokens": 64}}}}
    cfg = load(raw)
    first, second = cfg["stages"]
    assert second["responses"]["sampling"]["max_new_tokens"] == 64
    assert second["responses"]["sampling"]["temperature"] == 0.3  # the entry's own setting merges under it
    assert first == load({**raw, "stage_overrides": {}})["stages"][0]
    assert load(copy.deepcopy(cfg)) == cfg  # a resolved config re-reads to itself (cluster jobs)


def test_a_stage_override_names_a_configured_stage():
    raw = raw_default()
    raw["stage_overrides"] = {"stage9": {"contrast": {"written": True}}}
    with pytest.raises(ConfigError, match=r"stage_overrides.stage9: there is no stage9, the config has 6 stage"):
        load(raw)
    raw["stage_overrides"] = {"explicit": {}}
    with pytest.raises(ConfigError, match=r"stage_overrides: 'explicit' does not match"):
        load(raw)


def test_semantic_errors_name_the_key():
    raw = raw_default()
    raw["stages"][0]["instructions"] = {"count": 50, "candidates": 10}
    raw["stages"][0]["pool"] = "resources/pools/missing.jsonl"
    with pytest.raises(ConfigError) as err:
        load(raw)
    assert "stages[0].instructions.candidates: 10 is below instructions.count (50)" in str(err.value)
    assert "stages[0].pool: file" in str(err.value) and "does not exist" in str(err.value)


def test_lora_shape_must_match_across_stages():
    raw = raw_default()
    raw["stages"] = [{}, {"training": {"lora": {"r": 32}}}]
    with pytest.raises(ConfigError, match=r"stages\[1\].training.lora: differs from stage 1"):
        load(raw)


def test_per_use_sampling_defaults_come_from_the_schema():
    schema = load_schema()
    stage = schema_defaults(schema["$defs"]["stage"], schema)
    assert stage["instructions"]["sampling"]["max_new_tokens"] == 48
    assert stage["responses"]["sampling"]["max_new_tokens"] == 128
    assert stage["instructions"]["sampling"]["top_k"] == 0  # shared default kept under the override


def test_deep_merge_replaces_lists_and_scalars():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_files_in_the_working_directory_keep_relative_paths(tmp_path, monkeypatch):
    """Snakemake reruns a job whose set of input paths changed: absolute paths would rerun everything after
    the project folder is moved. Files found in the working directory stay relative; others are absolute."""
    (tmp_path / "constitution.yaml").write_text((REPO / "constitution.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    cfg = load(raw_default())
    assert cfg["constitution"] == "constitution.yaml"  # found in the working directory
    assert cfg["evaluation"]["helpful"] == str(REPO / "resources/eval/helpful.jsonl")  # found in the workflow's
    assert load(copy.deepcopy(cfg)) == cfg


def test_nested_command_line_values_are_read_as_yaml():
    """`--config budget='{allow_over_budget: true}'` reaches the config as the string 'true' (Snakemake reads
    nested --config values with YAML's BaseLoader); where the schema wants a boolean or a number, it is
    read again. A string that is not of the wanted type still fails, naming its key."""
    raw = raw_default()
    raw["budget"] = {"allow_over_budget": "true", "max_usd": "12.5"}
    raw["evaluation"] = {"report_stages": "2"}
    cfg = load(raw)
    assert cfg["budget"]["allow_over_budget"] is True and cfg["budget"]["max_usd"] == 12.5
    assert cfg["evaluation"]["report_stages"] == 2
    raw = raw_default()
    raw["evaluation"] = {"report_stages": "two"}
    with pytest.raises(ConfigError, match="evaluation.report_stages: 'two' is not of type"):
        load(raw)
    raw["evaluation"] = {"report_stages": 7}
    with pytest.raises(ConfigError, match="evaluation.report_stages: 7 is more than the 6 configured stage"):
        load(raw)
    # a key that takes one of several kinds (auto or a number): `--config hardware='{threads: 2}'`
    raw = raw_default()
    raw["hardware"] = {"threads": "2"}
    assert load(raw)["hardware"]["threads"] == 2
    raw["hardware"] = {"threads": "0"}
    with pytest.raises(ConfigError, match=r"hardware.threads: '0' is not 'auto' or an integer >= 1"):
        load(raw)
    # a negative number is a range error, not a type error (issue 30: `--config generation='{batch_size: -1}'`)
    raw = raw_default()
    raw["generation"] = {"batch_size": "-1"}
    with pytest.raises(ConfigError, match=r"generation.batch_size: -1 is less than the minimum of 1"):
        load(raw)


def test_errors_from_command_line_values_name_them():
    assert config_sources([], {}) == "config.yaml"
    assert config_sources(["a.yaml"], {"generation": "{batch_size: -1}"}) == "a.yaml and --config generation"


def test_config_imports_no_step_module():
    """config sits on the ground floor: validating a config loads no step (preflight does, above them)."""
    code = "import sys, maximalcai.config; print(sorted(m for m in sys.modules if m.startswith('maximalcai')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['maximalcai', 'maximalcai.config', 'maximalcai.errors', 'maximalcai.yamlfile']"


def test_preflight_names_the_key_of_an_unknown_constraint_type_and_principle():
    raw = raw_default()
    raw["stage_defaults"]["instructions"]["constraints"] = {"types": ["detectable_format:json_format", "no_such"]}
    raw["stage_defaults"]["contrast"] = {"enabled": True, "principles": ["privacy", "be-nice"]}
    with pytest.raises(ConfigError) as err:
        check_resources(load(raw), "config.yaml", REPO)
    message = str(err.value)
    assert "stages[0].instructions.constraints.types: ['no_such'] are not IFEval instruction ids" in message
    assert "stages[0].contrast.principles: ['be-nice'] are not principles with mechanism construction" in message


def test_preflight_names_a_malformed_pool_file(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "a", "response": "b"}\nnot json\n')
    raw = raw_default()
    raw["stages"][0]["pool"] = str(pool)
    with pytest.raises(Exception) as err:
        check_resources(load(raw), "config.yaml", REPO)
    assert str(pool) in str(err.value)


def test_a_tracker_that_is_not_installed_stops_the_run_at_start_with_its_install(monkeypatch):
    """Issue 30: trainer.report_to [tensorboard] without tensorboard failed only when train_dpo ran."""
    import importlib.util

    raw = raw_default()
    raw["trainer"] = {"report_to": ["tensorboard", "wandb"]}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        check_resources(load(raw), "config.yaml", REPO)
    assert "trainer.report_to: wandb needs the wandb package, which is not installed; pip install wandb" in str(
        err.value
    )
    assert "tensorboard" not in str(err.value).split("wandb needs")[0]  # installed here (test extra): no complaint


def test_a_llama_cpp_checkout_without_the_converter_stops_the_run_at_start(tmp_path):
    """Issue 30: a wrong export.llama_cpp failed only when the export job ran, after training."""
    raw = raw_default()
    raw["export"] = {"llama_cpp": str(tmp_path)}
    with pytest.raises(ConfigError, match=f"export.llama_cpp: {tmp_path} has no convert_hf_to_gguf.py"):
        check_resources(load(raw), "config.yaml", REPO)
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    check_resources(load(raw), "config.yaml", REPO)
    raw["export"] = {"llama_cpp": str(tmp_path / "nowhere"), "gguf_types": []}  # no GGUF: the converter is not run
    check_resources(load(raw), "config.yaml", REPO)


def test_training_keys_under_their_former_names_are_read_with_a_warning_naming_the_rename():
    """Issue 32: the training section took TRL's and PEFT's names; a user's file written before keeps working
    (a former key wins over config.yaml's current one merged beside it) and says what to rename."""
    raw = raw_default()
    training = raw["stage_defaults"]["training"]
    training |= {"epochs": 3, "batch_size": 4, "grad_accum": 2, "warmup_ratio": 0.05, "lr_scheduler": "cosine"}
    training |= {"lora": {"alpha": 32, "dropout": 0.1}}
    training["sft_warmup"]["epochs"] = 2
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(raw, "my.yaml", REPO)
    messages = [str(w.message) for w in caught]
    assert "my.yaml: stage_defaults.training.grad_accum is now gradient_accumulation_steps" in messages[2]
    assert any("stage_defaults.training.lora.alpha is now lora_alpha" in m for m in messages)
    assert len(messages) == 8
    stage = stage_config(cfg, "stage1")["training"]
    assert stage["num_train_epochs"] == 3 and stage["per_device_train_batch_size"] == 4  # not config.yaml's 1
    assert stage["gradient_accumulation_steps"] == 2 and stage["warmup_steps"] == 0.05
    assert stage["lr_scheduler_type"] == "cosine" and stage["lora"]["lora_alpha"] == 32
    assert stage["sft_warmup"]["num_train_epochs"] == 2 and "epochs" not in stage["sft_warmup"]


def test_the_typed_sections_are_the_schemas_sections(default_config):
    """One source of truth: every typed section's fields (and its INPUTS, the keys rules pass as inputs) are
    exactly the keys the schema validates and documents, at every level of nesting; a resolved section goes
    through its class and back unchanged; every section a job reads is typed; and the training fields passed to
    TRL and PEFT are names their configs have."""
    import dataclasses
    import importlib

    from peft import LoraConfig
    from trl import DPOConfig, SFTConfig

    from maximalcai.typed import SECTIONS

    for module in TYPED_MODULES:
        importlib.import_module(f"maximalcai.{module}")
    from maximalcai.training.settings import Training

    schema = load_schema()
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731

    def same_keys(cls, node):
        if "$ref" in node:
            node = {**schema["$defs"][node["$ref"].split("/")[-1]], **node}
        assert fields(cls) | set(getattr(cls, "INPUTS", ())) == set(node["properties"]), cls.__name__
        hints = typing.get_type_hints(cls)
        for name in fields(cls):
            nested = [h for h in (hints[name], *typing.get_args(hints[name])) if dataclasses.is_dataclass(h)]
            if nested:
                same_keys(nested[0], node["properties"][name])

    stage = stage_config(default_config, "stage1")
    paths = set()
    for cls in SECTIONS:
        node, section = (schema["$defs"]["stage"], stage) if cls.STAGE else (schema, default_config)
        for key in cls.PATH:
            node, section = node["properties"][key], section[key]
        same_keys(cls, node)
        plain = json.loads(json.dumps(cls.from_section(section).as_dict()))
        assert plain == cls.settings(section), cls.__name__  # nothing lost, renamed or added
        paths.add((cls.STAGE, cls.PATH))
    job_sections = {"instructions", "responses", "contrast", "critique", "preference", "pairs", "training"}
    assert {path[0] for at_stage, path in paths if at_stage} == job_sections
    top = {"base_model", "hardware", "generation", "safety", "trainer", "export", "evaluation", "resources"}
    assert {path[0] for at_stage, path in paths if not at_stage} == top
    settings = Training.from_section(stage["training"])
    for config_class in (SFTConfig, DPOConfig):
        assert set(settings.trl_fields()) <= fields(config_class)
    assert set(settings.lora.peft_fields()) <= fields(LoraConfig)
    assert settings.as_dict() == stage["training"]


# The modules that define the typed sections (maximalcai.typed.Section subclasses).
TYPED_MODULES = (
    "hardware",
    "models",
    "generation",
    "contrast",
    "code_checks",
    "distillation",
    "pairs",
    "feedback.critique",
    "feedback.preference",
    "feedback.guard",
    "training.settings",
    "evaluation.sets",
    "export",
    "job_resources",
)


def test_yaml_read_through_libyaml_is_what_safe_load_reads():
    """maximalcai.yamlfile parses with libyaml's C loader (the start-up of every Snakemake call reads the
    config, its schema and the constitution): the same data as yaml.safe_load on every YAML file tracked."""
    import subprocess

    import yaml

    from maximalcai import yamlfile

    assert yamlfile.LOADER is yaml.CSafeLoader  # PyYAML's wheels ship libyaml; without it the lever is off
    tracked = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=REPO, capture_output=True, text=True)
    paths = [REPO / line for line in tracked.stdout.split()] or sorted(REPO.glob("**/*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        text = path.read_text()
        assert yamlfile.parse(text) == yaml.safe_load(text), path
