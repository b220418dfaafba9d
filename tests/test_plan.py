"""The budget plan and the guard that refuses an over-budget GPU run."""

import copy
import re

import pytest
import yaml

from conftest import REPO
from maximalcai.config import deep_merge, load_config
from maximalcai.errors import ConfigError
from maximalcai.plan import MAX_JOBS_PER_STAGE, build_plan, check_budget, check_size, format_plan


def qwen_config() -> dict:
    override = yaml.safe_load((REPO / "config/qwen2.5-32b.yaml").read_text())
    raw = deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()), override)
    raw["stages"] = override["stages"]
    return load_config(raw, "config.yaml + config/qwen2.5-32b.yaml", REPO)


def test_plan_covers_every_stage_and_adds_up():
    cfg = qwen_config()
    plan = build_plan(cfg)
    assert [s["stage"] for s in plan["stages"]] == [f"stage{i}" for i in range(1, 7)]
    for s in plan["stages"]:
        assert s["gpu_hours"] == pytest.approx(
            s["generation_h"] + s["scoring_h"] + s["training_h"] + s["overhead_h"], abs=0.02
        )
        assert s["usd"] == pytest.approx(s["gpu_hours"] * 1.79, abs=0.02)
    assert plan["total_gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in plan["stages"]), abs=0.05)
    longform = plan["stages"][5]
    assert longform["generated_tokens"] > plan["stages"][0]["generated_tokens"]  # 1024-token answers cost more
    text = format_plan(plan)
    assert "| stage6 | longform |" in text and "within budget" in text


def test_plan_scales_with_counts_and_throughput():
    cfg = qwen_config()
    doubled = copy.deepcopy(cfg)
    for stage in doubled["stages"]:
        stage["instructions"]["count"] *= 2
        stage["instructions"]["candidates"] *= 2
    assert build_plan(doubled)["total_gpu_hours"] > build_plan(cfg)["total_gpu_hours"]
    faster = copy.deepcopy(cfg)
    faster["budget"]["throughput"]["training_tokens_per_s"] *= 2
    assert build_plan(faster)["total_gpu_hours"] < build_plan(cfg)["total_gpu_hours"]


def test_budget_guard_refuses_and_can_be_overridden():
    cfg = qwen_config()
    cfg["budget"]["max_usd"] = 10
    with pytest.raises(ConfigError, match=r"exceeds budget.max_usd=\$10.*allow_over_budget"):
        check_budget(cfg)
    cfg["budget"]["allow_over_budget"] = True
    assert check_budget(cfg)["total_usd"] > 10


def test_plan_counts_the_sft_warmup_by_source():
    cfg = qwen_config()
    with_revisions = build_plan(cfg)["stages"][0]
    off = copy.deepcopy(cfg)
    for stage in off["stages"]:
        stage["training"]["sft_warmup"]["enabled"] = False
    without = build_plan(off)["stages"][0]
    more = copy.deepcopy(cfg)
    for stage in more["stages"]:
        stage["pairs"]["sft"]["sources"] = ["revisions", "responses"]
    both = build_plan(more)["stages"][0]
    assert without["training_tokens"] < with_revisions["training_tokens"] < both["training_tokens"]
    assert without["training_h"] < with_revisions["training_h"] < both["training_h"]
    faster = copy.deepcopy(cfg)
    faster["budget"]["throughput"]["sft_tokens_per_s"] *= 2
    assert build_plan(faster)["stages"][0]["training_h"] < with_revisions["training_h"]


def test_the_32b_throughput_table_is_what_the_results_file_gives():
    """benchmarks/README.md's table is printed by the command it shows, from the committed measurements."""
    import subprocess
    import sys

    readme = (REPO / "benchmarks/README.md").read_text()
    command = "python benchmarks/gpu_throughput.py --report benchmarks/results/gpu_throughput.json"
    assert command in readme
    out = subprocess.run([sys.executable, *command.split()[1:]], cwd=REPO, capture_output=True, text=True, check=True)
    table = out.stdout.strip().splitlines()
    assert len(table) == 6 and all(line in readme for line in table)
    measured = {"scoring_tokens_per_s": 2262, "training_tokens_per_s": 288, "sft_tokens_per_s": 253}
    throughput = qwen_config()["budget"]["throughput"]
    for key, value in measured.items():  # the config carries the scaled measurement, rounded
        assert f"`{key}`) |" in out.stdout and abs(throughput[key] - value) <= 5


def test_the_throughput_script_dry_runs_on_a_cpu(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "throughput.json"
    subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_throughput.py",
            "--device",
            "cpu",
            "--shrink",
            "40",
            "--layers",
            "1",
            "2",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    run = json.loads(out.read_text())["runs"][-1]
    assert set(run["depths"]) == {"1", "2"} and run["warmup"] is not None
    assert set(run["fits"]) == {"scoring", "generation", "sft", "dpo"}
    assert all(len(run["depths"][d]["dpo_step_s"]) == run["lengths"]["steps"] for d in run["depths"])


def test_counts_that_would_make_too_many_jobs_are_refused_before_the_dag(default_config):
    """Issue 29: instructions.count 1,000,000 kept `snakemake -n` in "Building DAG of jobs..." for minutes; the
    shipped configs stay far under the limit."""
    from maximalcai.config import load_workflow_config

    for cfg in (default_config, qwen_config(), load_workflow_config(REPO / "config/cpu-full.yaml", REPO)):
        check_size(cfg)
    big = copy.deepcopy(default_config)
    big["stages"][0]["instructions"].update(count=1_000_000, candidates=1_000_000)
    with pytest.raises(ConfigError) as err:
        check_size(big, "big.yaml")
    assert re.search(r"^big.yaml: stages\[0\] would run [0-9,]{7,} jobs", str(err.value))
    assert f"more than the {MAX_JOBS_PER_STAGE:,}" in str(err.value)
    assert "raise stages[0].instructions.shard_size and stages[0].responses.shard_size" in str(err.value)
    big["stages"][0]["instructions"]["shard_size"] = big["stages"][0]["responses"]["shard_size"] = 1_000
    check_size(big)  # the same counts in large shards plan fine
