"""The Snakemake workflow: lint, dry runs, config errors at start, and real runs on the embedded model."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from maximalcai import tables
from maximalcai.models import load_tokenizer
from maximalcai.prompting import ChatTokenCheck

TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake(workdir, *args, check=True, timeout=3000):  # a hang guard; AVX2 hosts take 2x
    """Run the checkout's workflow in ``workdir``, from there: every workflow test runs outside the checkout."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def planned_jobs(result) -> set[str]:
    """Rule names of the jobs a dry run would execute."""
    return set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, re.M))


def planned_stage_jobs(result) -> set[tuple[str, str]]:
    """(rule, stage or model) of the jobs a dry run would execute."""
    jobs = set()
    for block in re.split(r"^(?=(?:local)?rule )", result.stdout + result.stderr, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        where = re.search(r"^\s+wildcards: .*?(?:stage|model)=(\w+)", block, re.M)
        if rule:
            jobs.add((rule.group(1), where.group(1) if where else ""))
    return jobs


def make_workdir(path, config=TINY, **overrides):
    path.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(config.read_text())
    for key, value in overrides.items():
        data[key] = value
    (path / "config.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(REPO / "resources/pools/stage1_explicit.jsonl", path / "pool.jsonl")
    shutil.copy(REPO / "constitution.yaml", path / "constitution.yaml")  # found before the workflow's own copy
    return path


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_default_config_dry_runs_on_a_fresh_checkout(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", "stage1_datasets", "--cores", "1")
    jobs = planned_jobs(result)
    assert {"import_base_model", "generate_instructions", "generate_responses", "aggregate_responses"} <= jobs


def test_it_runs_from_a_folder_without_a_config_and_as_a_module(tmp_path):
    """Issue 30: `snakemake -s PATH/Snakefile` from another folder stopped on the missing config.yaml, and a
    module's basedir is the including workflow's. The workflow's own config and resources are found beside its
    Snakefile; results go where it runs."""
    alone, host = tmp_path / "alone", tmp_path / "host"
    alone.mkdir()
    host.mkdir()
    shutil.copy(REPO / "config.yaml", host / "config.yaml")
    (host / "Snakefile").write_text(
        'configfile: "config.yaml"\n\n\nmodule maximalcai:\n    snakefile:\n'
        f'        "{REPO / "Snakefile"}"\n    config:\n        config\n\n\nuse rule * from maximalcai\n'
    )
    for folder, snakefile in ((alone, ["-s", str(REPO / "Snakefile")]), (host, [])):
        command = [sys.executable, "-m", "snakemake", *snakefile, "-n", "--cores", "1", "stage1_model"]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert {"import_base_model", "train_dpo", "evaluate"} <= planned_jobs(result)


def test_a_bad_config_stops_the_workflow_before_any_job(tmp_path):
    make_workdir(tmp_path, generation={"batch_size": 0, "backend": "tensorrt"})
    result = snakemake(tmp_path, "--cores", "1", "stage1_datasets", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "generation.batch_size: 0 is less than the minimum of 1" in output
    assert "generation.backend: 'tensorrt' is not one of 'auto', 'transformers', 'vllm'" in output
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("e2e"))
    snakemake(workdir, "--cores", "2", "stage1_model", "stage2_model", "stages_report", "stage1_export")
    return workdir


@pytest.mark.e2e
def test_stage1_datasets_build_with_provenance_and_no_template_tokens(tiny_run):
    instructions = tables.read_table(tiny_run / "results/stage1/instructions.parquet", "instructions")
    responses = tables.read_table(tiny_run / "results/stage1/responses.parquet", "responses")
    assert 1 <= len(instructions) <= 6
    assert len(responses) == 3 * len(instructions)  # two sampled, and the greedy on-policy answer (no examples)
    sampled = [r for r in responses if r["candidate_index"] < 2]
    assert all(r["generator"] == "gemma-3-270m-q4_k_m" and r["fewshot_ids"] for r in instructions + sampled)
    assert all(not r["fewshot_ids"] for r in responses if r["candidate_index"] == 2)
    assert {r["instruction_id"] for r in responses} == {r["instruction_id"] for r in instructions}
    check = ChatTokenCheck(load_tokenizer(tiny_run / "results/models/base"))
    for row in instructions + responses:
        assert check.find(row.get("response", row["instruction"])) == []
    log = "".join(p.read_text() for p in (tiny_run / "logs/stage1/generate_responses").glob("*.log"))
    assert re.search(r"\d+\.\d tok/s", log)


@pytest.mark.e2e
def test_the_embedded_tokenizer_loads_straight_from_its_file_token_for_token(tiny_run):
    """load_tokenizer builds the imported Gemma tokenizer from tokenizer.json (models.DIRECT_TOKENIZERS), not
    through AutoTokenizer's rebuild: the same ids, with and without special tokens, padded, and decoded."""
    from transformers import AutoTokenizer

    from maximalcai.models import _direct_tokenizer

    base = tiny_run / "results/models/base"
    direct, auto = _direct_tokenizer(base), AutoTokenizer.from_pretrained(base)
    assert type(direct) is type(auto) and type(load_tokenizer(base)) is type(direct)
    files = sorted((REPO / "resources").rglob("*.jsonl"))
    texts = [line for path in files for line in path.read_text().splitlines()[:40]]
    texts += ["### Instruction:\n  two  spaces\ttab\n\n### Response:", "émoji 🙂 <bos><eos><pad>", ""]
    for special in (True, False):
        assert (
            direct(texts, add_special_tokens=special)["input_ids"]
            == auto(texts, add_special_tokens=special)["input_ids"]
        )
    ids = auto(texts[:64], padding=True)["input_ids"]
    assert direct(texts[:64], padding=True)["input_ids"] == ids
    assert direct.batch_decode(ids) == auto.batch_decode(ids)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "all_special_tokens"):
        assert getattr(direct, name) == getattr(auto, name), name


@pytest.mark.e2e
def test_same_seed_gives_identical_instructions(tiny_run):
    path = tiny_run / "results/stage1/instructions.parquet"
    before = tables.read_table(path, "instructions")
    snakemake(tiny_run, "--cores", "2", "--forcerun", "generate_instructions", "--", str(path.relative_to(tiny_run)))
    assert tables.read_table(path, "instructions") == before


@pytest.mark.e2e
def test_only_what_changed_reruns(tiny_run):
    assert (
        planned_jobs(snakemake(tiny_run, "-n", "--cores", "1", "stage1_model")) == set()
    )  # a second run has nothing to do

    # response sampling changed: responses rerun, instructions do not
    override = tiny_run / "override.yaml"
    override.write_text(yaml.safe_dump({"stage_defaults": {"responses": {"sampling": {"temperature": 0.5}}}}))
    result = snakemake(
        tiny_run,
        "-n",
        "--cores",
        "1",
        "--configfile",
        str(tiny_run / "config.yaml"),
        str(override),
        "--",
        "stage1_datasets",
    )
    jobs = planned_jobs(result)
    assert "generate_responses" in jobs and "aggregate_responses" in jobs
    assert not jobs & {"generate_instructions", "aggregate_instructions", "import_base_model"}, result.stdout

    # the few-shot pool changed: instruction generation and everything after it rerun
    pool = tiny_run / "pool.jsonl"
    original, stat = pool.read_text(), pool.stat()
    try:
        pool.write_text(original + '{"id": "new-1", "instruction": "Name a planet.", "response": "Mars."}\n')
        jobs = planned_jobs(snakemake(tiny_run, "-n", "--cores", "1", "stage1_datasets"))
        assert {"generate_instructions", "aggregate_instructions", "generate_responses"} <= jobs
        assert "import_base_model" not in jobs
    finally:
        pool.write_text(original)
        os.utime(pool, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.e2e
def test_regenerating_one_dataset_touches_only_its_rules(tiny_run):
    target = "results/stage1/responses.parquet"
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--cores", "1", "--forcerun", "generate_responses", "--", target))
    assert jobs == {"generate_responses", "aggregate_responses"}


@pytest.mark.e2e
def test_feedback_tables_pairs_and_funnel(tiny_run):
    stage = tiny_run / "results/stage1"
    responses = tables.read_table(stage / "responses.parquet", "responses")
    critiques = tables.read_table(stage / "critiques.parquet", "critiques")
    safety = {r["text_id"]: r for r in tables.read_table(stage / "safety.parquet", "safety")}
    preferences = tables.read_table(stage / "preferences.parquet", "preferences")
    pairs = tables.read_table(stage / "pairs.parquet", "pairs")
    funnel = tables.read_table(stage / "pairs_funnel.parquet", "pairs_funnel")
    assert len(critiques) == len({r["instruction_id"] for r in responses})  # 1 round, 1 response per instruction
    assert set(safety) == {r["response_id"] for r in responses} | {c["critique_id"] for c in critiques}
    assert all(
        r["label"] in ("safe", "unsafe", "malformed") and r["guard_backend"] == "fewshot" for r in safety.values()
    )
    assert len(preferences) == len({r["instruction_id"] for r in responses}) + len(critiques)  # candidates 0-1
    assert all(len(r["p_a_first"]) == len(r["p_a_second"]) == len(r["principle_ids"]) for r in preferences)
    code_revised = {p["chosen_id"]: p["rejected_id"] for p in pairs if p["kind"] == "code_revision"}
    guarded = [p for p in pairs if p["kind"] != "contrast"]  # contrast pairs pass checks by code instead
    assert all(safety[code_revised.get(p["chosen_id"], p["chosen_id"])]["label"] == "safe" for p in guarded)
    steps = [f for f in funnel if not f["filter"].startswith(("contrast:", "principle:"))]
    assert steps[0]["rows_out"] >= len(preferences) and steps[-1]["rows_out"] == len(pairs)
    assert all(a["rows_out"] == b["rows_in"] for a, b in zip(steps, steps[1:]))
    assert {p["decided_by"].split(":")[0] for p in pairs} <= {"labeller", "verifiable", "safety", "construction"}
    assert all(p["principle_id"] or p["mechanism"] == "guard" for p in pairs)
    assert "pair funnel for stage1" in (tiny_run / "logs/stage1/build_pairs.log").read_text()
    instructions = tables.read_table(stage / "instructions.parquet", "instructions")
    assert sum(bool(r["instruction_id_list"]) for r in instructions) == round(0.5 * len(instructions))
    sft = tables.read_table(stage / "sft.parquet", "sft_examples", require_rows=False)
    assert all(r["prompt"].endswith("### Response:\n") and r["completion"] for r in sft)
    # honesty by construction: the answer written for each request, never a model's, is the chosen side
    contrast = tables.read_table(stage / "contrast.parquet", "contrast")
    honest = [r for r in contrast if r["principle_id"] == "false-premise"]
    assert len({r["request_id"] for r in honest}) == 2  # tiny.yaml's on_policy adds the greedy "policy" answers
    assert {r["framing"] for r in honest} == {"violate", "policy", "written"}
    assert all(p["chosen_id"].endswith("-written0") for p in pairs if p["decided_by"] == "construction:false-premise")


@pytest.mark.e2e
def test_same_seed_gives_identical_pairs(tiny_run):
    path = tiny_run / "results/stage1/pairs.parquet"
    before = tables.read_table(path, "pairs")
    snakemake(tiny_run, "--cores", "2", "--forcerun", "critique_revise", "--", "stage1_pairs")
    assert tables.read_table(path, "pairs") == before


@pytest.mark.e2e
def test_constitution_and_filter_edits_rerun_only_downstream_rules(tiny_run):
    constitution = tiny_run / "constitution.yaml"
    original, stat = constitution.read_text(), constitution.stat()
    edited = yaml.safe_load(original)
    edited["principles"][0]["revision_request"] = "Rewrite the response so that it is harmless and still useful."
    try:
        constitution.write_text(yaml.safe_dump(edited))
        jobs = planned_jobs(snakemake(tiny_run, "-n", "--cores", "1", "stage1_pairs"))
        assert {"critique_revise", "safety_label", "preference_label", "build_pairs"} <= jobs
        assert not jobs & {
            "generate_instructions",
            "aggregate_instructions",
            "generate_responses",
            "import_base_model",
        }
    finally:
        constitution.write_text(original)
        os.utime(constitution, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    override = tiny_run / "filters.yaml"
    override.write_text(yaml.safe_dump({"stage_defaults": {"pairs": {"min_margin": 0.2}}}))
    jobs = planned_jobs(
        snakemake(
            tiny_run,
            "-n",
            "--cores",
            "1",
            "--configfile",
            str(tiny_run / "config.yaml"),
            str(override),
            "--",
            "stage1_pairs",
        )
    )
    assert jobs == {"build_pairs", "stage1_pairs"}


@pytest.mark.e2e
def test_stage1_model_yields_adapter_evaluation_and_report(tiny_run):
    import json

    stage = tiny_run / "results/stage1"
    assert (stage / "adapter/adapter_model.safetensors").is_file() and (stage / "adapter/README.md").is_file()
    log = tables.read_table(stage / "training_log.parquet", "training_log")
    assert log and log[-1]["phase"] == "dpo" and {r["phase"] for r in log} <= {"sft", "dpo"}
    metrics = json.loads((stage / "eval/metrics.json").read_text())
    assert metrics["models"] == ["stage1", "base", "base_fewshot"]
    assert metrics["prompts"] == {"helpful": 4, "redteam": 3, "borderline": 3, "honesty": 3}
    compared = {(c["metric"], c["baseline"]) for c in metrics["comparisons"]}
    for baseline in ("base", "base_fewshot"):
        for metric in (
            "ifeval_strict",
            "stop_rate",
            "repeated_4gram_rate",
            "distinct_2",
            "length_tokens",
            "unsafe_rate",
            "over_refusal_rate",
            "helpful_refusal_rate",
            "win",
        ):
            assert (metric, baseline) in compared
    assert {("shift", "base"), ("preference_accuracy", "base")} <= compared and (
        "shift",
        "base_fewshot",
    ) not in compared
    for c in metrics["comparisons"]:
        assert c["verdict"] in ("better", "worse", "no measurable difference", "measurably different", "too few items")
        assert c["ci_low"] <= c["estimate"] <= c["ci_high"] and c["method"]
    assert metrics["judge"]["model"] and "base" in metrics["judge"]["order_agreement"] and metrics["headline"]
    scores = tables.read_table(stage / "eval/per_prompt.parquet", "eval_scores")
    assert {r["model"] for r in scores} == {"stage1", "base", "base_fewshot"}
    fewshot = tables.read_table(tiny_run / "results/eval/base_fewshot/generations.parquet", "eval_generations")
    assert all(len(r["fewshot_ids"]) == 3 for r in fewshot)
    for name in ("training.svg", "funnel.svg", "eval.svg", "examples.html"):
        assert (stage / "report" / name).stat().st_size > 1000
    browsed = (stage / "browse.html").read_text()  # the data browser, every table of the stage
    tabs = {
        t["name"]: len(t["rows"])
        for t in json.loads(browsed.split('type="application/json">')[1].split("</script>")[0])
    }
    assert tabs["pairs"] == len(tables.read_table(stage / "pairs.parquet", "pairs")) and tabs["responses"] > 0

    command = next(
        line.split("  #")[0].strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("snakemake") and "--report" in line
    )
    snakemake(tiny_run, *command.split()[1:])  # the README's report command, as printed
    page = (tiny_run / "results/report.html").read_text()
    assert len(page) > 100_000 and "stage1" in page and "funnel" in page


@pytest.mark.e2e
def test_scored_prompts_zero_skips_the_judge_and_the_shift_only(tiny_run, tmp_path):
    from maximalcai.config import load_workflow_config
    from maximalcai.evaluation.evaluate import run_evaluate
    from maximalcai.evaluation.sets import Evaluation
    from maximalcai.hardware import Engine

    cfg = load_workflow_config(tiny_run / "config.yaml", root=tiny_run)
    cfg["evaluation"]["scored_prompts"] = 0
    results = tiny_run / "results"
    models = ("stage1", "base", "base_fewshot")
    run_evaluate(
        engine=Engine.of_config(cfg),
        evaluation=Evaluation.from_section(cfg["evaluation"]),
        labeller=cfg["feedback"]["labeller"],
        previous=None,
        seed=cfg["seed"],
        stage="stage1",
        base_model=str(results / "models/base"),
        adapters=[str(results / "stage1/adapter")],
        generations=[str(results / f"eval/{m}/generations.parquet") for m in models],
        safety=[str(results / f"eval/{m}/safety.parquet") for m in models],
        pairs=str(results / "stage1/pairs.parquet"),
        **{name: cfg["evaluation"][name] for name in ("helpful", "redteam", "borderline", "honesty")},
        constitution=cfg["constitution"],
        demos=cfg["feedback"]["preference_demos"],
        metrics=str(tmp_path / "metrics.json"),
        table=str(tmp_path / "per_prompt.parquet"),
    )
    without = json.loads((tmp_path / "metrics.json").read_text())
    full = json.loads((results / "stage1/eval/metrics.json").read_text())
    compared = {(c["metric"], c["baseline"]) for c in without["comparisons"]}
    assert not {m for m, _ in compared} & {"win", "shift"} and ("preference_accuracy", "base") in compared
    assert without["judge"]["order_agreement"] == {} and "scored_prompts" in without["judge"]["model"]
    same = [c for c in full["comparisons"] if c["metric"] not in ("win", "shift")]
    assert [c for c in without["comparisons"]] == same  # the verifiable metrics do not depend on the judge


def test_six_stages_dry_run_as_one_chain(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", "--cores", "1", "stage6_model")
    jobs = planned_stage_jobs(result)
    assert {("train_dpo", f"stage{k}") for k in range(1, 7)} <= jobs
    assert ("evaluate", "stage6") in jobs and ("eval_generate", "stage5") in jobs  # stage 6 is compared with stage 5
    # stage K's data is written by stage K-1's model
    assert re.search(
        r"rule generate_instructions:\n\s+input: results/models/base, results/stage1/adapter", result.stdout
    )


def job_requests(result) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job a dry run would execute."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule )", result.stdout + result.stderr, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule:
            continue
        fields = {}
        for name in ("wildcards", "resources"):
            found = re.search(rf"^\s+{name}: (.*)$", block, re.M)
            fields[name] = dict(item.split("=", 1) for item in found.group(1).split(", ")) if found else {}
        jobs.append((rule.group(1), fields["wildcards"], fields["resources"]))
    return jobs


def dry_run_32b(tmp_path, profile, target="stage2_model", *more_configs):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        target,
        "--configfile",
        str(tmp_path / "config.yaml"),
        str(REPO / "config/qwen2.5-32b.yaml"),
        *map(str, more_configs),
        "--profile",
        str(REPO / "profiles" / profile),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


QWEN_32B_BF16_MB = 32.8e9 * 2 / 1e6  # Qwen2.5-32B's weights in bf16, which every model job reads from disk


@pytest.mark.parametrize("profile", ["slurm", "runpod"])
def test_the_32b_plan_asks_each_job_for_what_the_plan_and_the_model_need(tmp_path, profile):
    from maximalcai.config import load_workflow_config
    from maximalcai.job_resources import MODEL_RULES, SMALL_RULES, planned_minutes

    (tmp_path / "tp4.yaml").write_text(yaml.safe_dump({"generation": {"vllm": {"tensor_parallel_size": 4}}}))
    extra = [tmp_path / "tp4.yaml"] if profile == "slurm" else []
    result = dry_run_32b(tmp_path, profile, "stage2_model", *extra)
    cfg = load_workflow_config(REPO / "config/qwen2.5-32b.yaml", REPO)
    jobs = job_requests(result)
    assert {("train_dpo", "stage1"), ("train_dpo", "stage2")} <= planned_stage_jobs(result)
    served = {
        "generate_instructions",
        "generate_responses",
        "generate_contrast",
        "critique_revise",
        "safety_label",
        "preference_label",
    }
    served |= {"eval_generate", "eval_safety", "evaluate"}
    seen = set()
    for rule, wildcards, resources in jobs:
        if rule.endswith("_model"):  # the target itself runs nothing
            continue
        seen.add(rule)
        runtime, gpus = int(resources["runtime"]), int(resources.get("gpu", 0))
        if rule in SMALL_RULES:
            assert gpus == 0, (rule, resources)
            continue
        assert rule in MODEL_RULES, rule
        assert int(resources["mem_mb"]) >= QWEN_32B_BF16_MB, (rule, resources)
        model = wildcards.get("model", "")
        stage = wildcards.get("stage") or (model if model.startswith("stage") else "stage1")
        minutes = planned_minutes(cfg, rule, stage)
        if minutes is not None:  # no job asks for less time than the plan's own estimate of its work
            assert runtime >= minutes, (rule, stage, runtime, minutes)
        expected_gpus = (4 if profile == "slurm" else 1) if rule in served else int(rule == "train_dpo")
        assert gpus == expected_gpus, (rule, resources)
        if profile == "slurm" and gpus:
            assert resources["gpu_model"] == "a100"
    assert served | {"train_dpo", "build_pairs", "aggregate_responses"} <= seen
    # the jobs the plan expects to take hours are not submitted with a one-hour limit
    limits = {rule: int(r["runtime"]) for rule, _, r in jobs if not rule.endswith("_model")}
    assert limits["train_dpo"] > 5 * 60 and limits["preference_label"] > 2 * 60


def test_small_jobs_run_on_the_submitting_host():
    from maximalcai.job_resources import MODEL_RULES, SMALL_RULES

    text = "".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    rules = dict(re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.M | re.S))
    assert set(rules) == set(MODEL_RULES) | set(SMALL_RULES) | {"plan"}
    for name, body in rules.items():
        assert ("localrule: True" in body) == (name in SMALL_RULES or name == "plan"), name
        assert name == "plan" or f'**rule_resources("{name}")' in body, name


def test_resources_come_from_the_config():
    from maximalcai.config import load_config_file, load_workflow_config
    from maximalcai.job_resources import job_resources

    cpu = load_config_file(REPO / "config.yaml")
    assert job_resources(cpu, "generate_responses", "stage1") == {
        "mem_mb": 8000,
        "runtime": 60,
        "cpus_per_task": 2,
        "gpu": 0,
    }
    assert job_resources(cpu, "train_dpo", "stage1")["runtime"] == 240
    assert job_resources(cpu, "build_pairs") == {"mem_mb": 2000, "runtime": 10, "cpus_per_task": 1, "gpu": 0}
    gpu = load_workflow_config(REPO / "config/qwen2.5-32b.yaml", REPO)
    plain = job_resources(gpu, "preference_label")  # no stage: the fixed floor
    planned = job_resources(gpu, "preference_label", "stage1")  # one of four shards, ~1.1 h of scoring
    assert plain["runtime"] == 60 and planned["runtime"] > 2 * 60 and planned["gpu"] == 1
    gpu["resources"]["rules"]["preference_label"] = {"runtime": 2000}  # the plan only ever raises a limit
    assert job_resources(gpu, "preference_label", "stage1")["runtime"] == 2000
    with pytest.raises(KeyError):
        job_resources(gpu, "no_such_rule")


def test_runpod_profile_and_plan_target(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "plan",
            "--configfile",
            str(tmp_path / "config.yaml"),
            str(REPO / "config/qwen2.5-32b.yaml"),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    # the plan target runs on a machine without a GPU: it only reads the config
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| stage6 | longform |" in result.stdout  # printed, not only written
    assert "| stage6 | longform |" in (tmp_path / "results/plan.md").read_text()


def test_gpu_runs_over_budget_or_without_cuda_stop_before_any_job(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    qwen = [str(tmp_path / "config.yaml"), str(REPO / "config/qwen2.5-32b.yaml")]
    (tmp_path / "small-budget.yaml").write_text(yaml.safe_dump({"budget": {"max_usd": 5}}))
    over = snakemake(
        tmp_path,
        "--cores",
        "1",
        "--configfile",
        *qwen,
        str(tmp_path / "small-budget.yaml"),
        "--",
        "stage1_datasets",
        check=False,
    )
    assert over.returncode != 0 and "exceeds budget.max_usd=$5" in over.stdout + over.stderr
    no_gpu = snakemake(tmp_path, "--cores", "1", "--configfile", *qwen, "--", "stage1_datasets", check=False)
    assert no_gpu.returncode != 0 and "hardware.device asks for CUDA" in no_gpu.stdout + no_gpu.stderr
    assert not (tmp_path / "results").exists()


def fake_complete_run(workdir, target):
    """Every output of `target` as a placeholder, recorded by --touch as built with the current config."""
    summary = snakemake(workdir, "--cores", "1", "--summary", target).stdout
    for line in summary.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if not line.startswith("results/"):
            continue
        if path.name in ("adapter", "base"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    snakemake(workdir, "--cores", "1", "--touch", target)
    assert planned_jobs(snakemake(workdir, "-n", "--cores", "1", target)) == set()


def test_editing_stage3_reruns_only_stages_3_to_6(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    fake_complete_run(tmp_path, "stage6_model")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["stages"][2]["responses"] = {"sampling": {"temperature": 0.5}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_stage_jobs(snakemake(tmp_path, "-n", "--cores", "1", "stage6_model"))
    stages = {where for _, where in jobs if where.startswith("stage")}
    assert stages == {"stage3", "stage4", "stage5", "stage6"}
    assert ("train_dpo", "stage3") in jobs and ("train_dpo", "stage6") in jobs
    assert ("aggregate_instructions", "stage3") not in jobs  # stage 3's own instructions did not change


def test_batch_sizes_and_dtype_rerun_the_model_rules(tmp_path):
    """Batching and dtype change a model job's numbers (padding, kernels), so they are in its params."""
    from maximalcai.config import load_workflow_config
    from maximalcai.job_resources import gpus

    gpu_config = load_workflow_config(REPO / "config/qwen2.5-32b.yaml", REPO)
    model_rules = set()
    for path in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule )", path.read_text(), flags=re.M)[1:]:
            name = block.split()[1].rstrip(":")
            if name != "plan" and gpus(gpu_config, name):  # a job that loads a model onto a GPU
                model_rules.add(name)
                carries = ("engine=ENGINE",) if name != "train_dpo" else ('hardware=config["hardware"]', "trainer=")
                assert all(param in block for param in carries), f"{path.name}: {name}"
    assert {"generate_instructions", "generate_responses", "critique_revise", "evaluate", "train_dpo"} <= model_rules
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    fake_complete_run(tmp_path, "stage1_model")
    # (the placeholder run records no metadata for instruction shards, so their params cannot be compared)
    inference = model_rules - {"generate_instructions", "train_dpo"}
    override = tmp_path / "override.yaml"
    for change in (
        {"generation": {"batch_size": 3}},
        {"generation": {"scoring_batch_size": 3}},
        {"hardware": {"dtype": "float32"}},
    ):
        override.write_text(yaml.safe_dump(change))
        config_files = ("--configfile", str(tmp_path / "config.yaml"), str(override))
        jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "1", *config_files, "--", "stage1_model"))
        assert inference <= jobs, (change, sorted(inference - jobs))
        assert "import_base_model" not in jobs
    override.write_text(yaml.safe_dump({"trainer": {"save_steps": 7}}))
    config_files = ("--configfile", str(tmp_path / "config.yaml"), str(override))
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "1", *config_files, "--", "stage1_model"))
    assert "train_dpo" in jobs and not jobs & {"generate_responses", "critique_revise", "safety_label"}


def test_reporting_fewer_stages_reruns_only_the_report(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    fake_complete_run(tmp_path, "stages_report")
    two = ("--config", "evaluation={report_stages: 2}")
    assert planned_jobs(snakemake(tmp_path, "-n", "--cores", "1", "stages_report", *two)) == {"stages_report"}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(REPO / "config.yaml", fresh / "config.yaml")
    jobs = planned_stage_jobs(snakemake(fresh, "-n", "--cores", "1", "stages_report", *two))
    assert {where for _, where in jobs if where.startswith("stage")} == {"stage1", "stage2"}


@pytest.mark.e2e
def test_a_hard_kill_mid_shard_needs_an_unlock_then_redoes_only_that_shard(tiny_run, tmp_path):
    """A pod restart is a kill -9 of Snakemake and its jobs: the lock stays, the finished shard stays."""
    import signal
    import time

    workdir = make_workdir(tmp_path)
    base = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    run = subprocess.Popen(
        [*base, "--cores", "2", "stage1_datasets"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    shards = workdir / "results/stage1/shards/responses"
    logs = workdir / "logs/stage1/generate_responses"
    deadline, killed = time.monotonic() + 1200, None
    while time.monotonic() < deadline and run.poll() is None:
        done = {p.stem for p in shards.glob("*.parquet")}
        started = {p.stem for p in logs.glob("*.log") if p.stat().st_size > 0}
        if len(done) == 1 and started - done:  # one shard written, the other one running
            killed = (started - done).pop()
            os.killpg(run.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    run.wait()
    assert killed is not None, "the run ended before a second response shard started"
    assert not (shards / f"{killed}.parquet").exists()
    finished = {p.stem for p in shards.glob("*.parquet")}
    written = {p.stem: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    # the rerun that docs/RUNPOD.md and the README describe: refused until --unlock
    locked = snakemake(workdir, "--cores", "2", "--rerun-incomplete", "stage1_datasets", check=False)
    assert locked.returncode != 0 and "LockException" in locked.stdout + locked.stderr
    snakemake(workdir, "--unlock")
    rerun = snakemake(workdir, "--cores", "2", "--rerun-incomplete", "stage1_datasets")
    redone = {(rule, wildcards.get("shard")) for rule, wildcards, _ in job_requests(rerun)}
    assert ("generate_responses", killed) in redone
    assert not any(
        rule == "generate_instructions" or (rule, shard) in {("generate_responses", s) for s in finished}
        for rule, shard in redone
    ), redone
    assert {p.stem: p.stat().st_mtime_ns for p in shards.glob("*.parquet") if p.stem in finished} == written
    resumed = tables.read_table(workdir / "results/stage1/responses.parquet", "responses")
    uninterrupted = tables.read_table(tiny_run / "results/stage1/responses.parquet", "responses")
    assert [(r["response_id"], r["response"]) for r in resumed] == [
        (r["response_id"], r["response"]) for r in uninterrupted
    ]


@pytest.mark.e2e
def test_stage2_is_written_by_stage1_and_compared_with_it(tiny_run):
    import json

    instructions = tables.read_table(tiny_run / "results/stage2/instructions.parquet", "instructions")
    assert {r["generator"] for r in instructions} == {"gemma-3-270m-q4_k_m+stage1"}
    assert all(i.startswith("s2-") for r in instructions for i in r["fewshot_ids"])  # stage 2's own pool
    training = json.loads((tiny_run / "results/stage2/manifests/training.json").read_text())
    assert training["previous_adapter"].endswith("results/stage1/adapter")
    assert training["reference"].startswith("previous stage")
    assert training["keeps_freed_memory"] is True  # hardware.allocator: keep_freed reached the job (glibc Linux)
    metrics = json.loads((tiny_run / "results/stage2/eval/metrics.json").read_text())
    assert metrics["models"] == ["stage2", "base", "base_fewshot", "stage1"]
    assert metrics["baselines"] == ["base", "base_fewshot", "stage1"]
    assert {c["baseline"] for c in metrics["comparisons"]} == {"base", "base_fewshot", "stage1"}
    assert "stage2" in (tiny_run / "results/stages/metrics.md").read_text()
    assert (tiny_run / "results/stages/metrics.svg").stat().st_size > 1000


def greedy_answers(model, tokenizer, prompts, max_new_tokens):
    """Answers of an exported model, prompted through its chat template, cut where the workflow cuts."""
    from maximalcai import formats

    answers = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**ids, max_new_tokens=max_new_tokens, tokenizer=tokenizer)
        answers.append(
            formats.cut_at_stop(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))[0]
        )
    return answers


@pytest.mark.e2e
def test_stage1_export_answers_as_the_workflow_does(tiny_run):
    import json

    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = tiny_run / "results/stage1/export"
    assert {"model.safetensors", "generation_config.json", "model-f32.gguf", "Modelfile", "README.md"} <= {
        p.name for p in export.iterdir()
    }
    assert ModelCard.load(export / "README.md").data.base_model == "google/gemma-3-270m"
    assert json.loads((tiny_run / "results/stage1/manifests/export.json").read_text())["gguf"] == ["model-f32.gguf"]
    generations = [
        g
        for g in tables.read_table(tiny_run / "results/eval/stage1/generations.parquet", "eval_generations")
        if g["set"] == "helpful"
    ]
    prompts, expected = [g["prompt"] for g in generations], [g["response"] for g in generations]
    tokenizer = AutoTokenizer.from_pretrained(export)
    merged = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert greedy_answers(merged, tokenizer, prompts, 32) == expected  # the tiny config's eval: greedy, 32 tokens
    gguf = AutoModelForCausalLM.from_pretrained(export, gguf_file="model-f32.gguf", dtype=torch.float32)
    assert greedy_answers(gguf, tokenizer, prompts, 32) == expected  # the GGUF holds the same weights
    assert (tiny_run / "results/stage1/runs/dpo").is_dir()  # trainer.report_to: tensorboard


@pytest.mark.e2e
@pytest.mark.llama_cpp
def test_the_gguf_answers_in_llama_cpp_as_the_workflow_does(tiny_run):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (docs/EXPORT.md)")
    from maximalcai import formats

    model = llama_cpp.Llama(str(tiny_run / "results/stage1/export/model-f32.gguf"), n_ctx=1024, seed=0, verbose=False)
    generations = [
        g
        for g in tables.read_table(tiny_run / "results/eval/stage1/generations.parquet", "eval_generations")
        if g["set"] == "helpful"
    ]
    for g in generations:
        out = model.create_completion(
            formats.prompt(g["prompt"]), max_tokens=32, temperature=0.0, stop=list(formats.STOP_STRINGS)
        )
        assert out["choices"][0]["text"].strip() == g["response"]


@pytest.mark.e2e
def test_the_readmes_maximalcai_commands_run_as_printed(tiny_run):
    import json
    from pathlib import Path

    script = Path(sys.executable).parent / "maximalcai"
    commands = [
        line.split("  #")[0].strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("maximalcai ")
    ]
    assert {c.split()[1] for c in commands} == {"chat", "generate", "push"}
    for command in commands:
        argv = [str(script), *shlex.split(command)[1:]]
        result = subprocess.run(
            argv,
            cwd=tiny_run,
            input="Name a color.\nAnd another?\n/quit\n",
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        if "generate" in command:
            assert json.loads(result.stdout)["model"] == "gemma-3-270m-q4_k_m+stage1"
        elif "push" in command:
            assert json.loads(result.stdout)["splits"]["train"] > 0 and (tiny_run / "shared/dataset").is_dir()
        else:
            assert result.stdout.count("assistant> ") == 2


@pytest.mark.parametrize("overlay", ["config/gpu-smoke.yaml", "config/gpu-airgapped.yaml"])
def test_the_gpu_smoke_run_is_ready_to_go(tmp_path, overlay):
    """benchmarks/gpu_smoke.sh runs stage2_model of config/gpu-smoke.yaml (the hub's models) or, with
    --airgapped, of config/gpu-airgapped.yaml (a random model it builds): a dry run of exactly its command, and
    the report step on a finished run's files."""
    from maximalcai.config import load_workflow_config

    script = (REPO / "benchmarks/gpu_smoke.sh").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks/gpu_smoke.sh")]).returncode == 0
    cfg = load_workflow_config(REPO / overlay, REPO)
    backends = (cfg["generation"]["backend"], cfg["trainer"]["backend"], cfg["safety"]["backend"])
    if overlay == "config/gpu-smoke.yaml":
        assert backends == ("vllm", "unsloth", "llama_guard")
        assert cfg["base_model"]["hub_id"] == "Qwen/Qwen2.5-0.5B" and cfg["trainer"]["load_in_4bit"]
    else:  # what an air-gapped node can run: nothing from the hub, no vLLM wheel
        assert backends == ("transformers", "trl", "fewshot") and cfg["base_model"]["source"] == "local"
        assert cfg["hardware"]["device"] == "cuda" and '--build-models "$workdir/models"' in script
        assert cfg["stage_defaults"]["preference"]["comparisons"] == ["responses", "revision"]
    command = re.search(r'^snakemake (.*) "\$overlay" -- (\w+)$', script, re.M)
    assert command and command.group(2) == "stage2_model" and f"overlay={overlay}" in script
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    result = snakemake(
        tmp_path,
        "-n",
        "--cores",
        "all",
        "--configfile",
        str(tmp_path / "config.yaml"),
        str(REPO / overlay),  # the script runs in the checkout; this test in its own folder
        "--",
        "stage2_model",
    )
    jobs = planned_stage_jobs(result)
    assert {("train_dpo", "stage1"), ("train_dpo", "stage2"), ("safety_label", "stage2")} <= jobs
    # the report step, on benchmark files and manifests like a finished run's
    (tmp_path / "results/benchmarks/stage1").mkdir(parents=True)
    (tmp_path / "results/benchmarks/stage1/train_dpo.tsv").write_text("s\th:m:s\tmax_rss\n61.5\t0:01:01\t2048\n")
    (tmp_path / "results/stage1/manifests").mkdir(parents=True)
    manifest = {"rule": "generate_responses", "seconds": 12, "generated_tokens": 4000, "generation_seconds": 8.0}
    (tmp_path / "results/stage1/manifests/responses-shard0.json").write_text(json.dumps(manifest))
    (tmp_path / "gpu.txt").write_text("512\n20480\n1024\n")
    report = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/rule_times.py"),
            str(tmp_path / "results/benchmarks"),
            "--manifests",
            str(tmp_path / "results"),
            "--gpu-memory",
            str(tmp_path / "gpu.txt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| stage1/train_dpo | 61.5 | 2048 |" in report and "| 500.0 |" in report and "20480 MiB" in report
