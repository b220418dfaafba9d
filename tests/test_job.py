"""One channel from the config to the library: every rule hands its library function exactly the function's
parameters (its named inputs, outputs, params and wildcards), and the function gets no config besides."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO
from maximalcai import allocator

STUB = '''
import inspect, json, pathlib
import maximalcai.job as job

def bind(snakemake, function):
    """Instead of running the step: check that the job's arguments bind to the function, and fake its outputs."""
    arguments = job.job_arguments(snakemake, function)
    inspect.signature(function).bind(**arguments)  # TypeError on a missing or an unexpected argument
    for path in map(pathlib.Path, snakemake.output):
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        else:
            path.mkdir(parents=True, exist_ok=True)
    record = {{"rule": snakemake.rule, "function": function.__name__, "arguments": sorted(arguments)}}
    with open("bindings.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\\n")

job.run_job = bind
exec(compile(open({script!r}).read(), {script!r}, "exec"))
'''


def test_every_rule_passes_exactly_the_parameters_of_its_library_function(tmp_path):
    """Runs the workflow with each script's library call replaced by a check that Snakemake's named inputs,
    outputs (less the manifest), params and wildcards bind to the function's signature: nothing missing (a
    setting the function would have to find elsewhere), nothing extra (a param no code reads)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "Snakefile", repo)
    shutil.copytree(REPO / "rules", repo / "rules")
    for name in ("src", "resources", "report", "envs", "constitution.yaml"):
        (repo / name).symlink_to(REPO / name)
    (repo / "workflow_scripts").mkdir()
    scripts = sorted((REPO / "workflow_scripts").glob("*.py"))
    for script in scripts:
        (repo / "workflow_scripts" / script.name).write_text(STUB.format(script=str(script)))
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    targets = ("stage2_model", "stage1_export", "stages_report", "plan")
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--cores", "1", *targets]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    bindings = [json.loads(line) for line in (workdir / "bindings.jsonl").read_text().splitlines()]
    rules = {b["rule"] for b in bindings}
    assert rules == {s.stem for s in scripts}, sorted(rules ^ {s.stem for s in scripts})
    # The whole config goes into manifests only; the plan alone takes it, as it estimates every job.
    takes_config = {b["rule"] for b in bindings if {"config", "cfg"} & set(b["arguments"])}
    assert takes_config == {"plan"}
    stage2 = next(b for b in bindings if b["rule"] == "train_dpo" and "previous_adapter" in b["arguments"])
    assert {"hardware", "trainer", "settings", "seed", "deterministic", "sft"} <= set(stage2["arguments"])


def fake_job(tmp_path, function, outputs, threads=1, allocator="keep_freed", **arguments):
    from maximalcai.job import run_job

    snakemake = SimpleNamespace(
        input={},
        output={**outputs, "manifest": str(tmp_path / "manifest.json")},
        params=arguments,
        wildcards={"stage": "stage1", "shard": "3"},
        log=[str(tmp_path / "job.log")],
        threads=1,
        rule="some_rule",
        config={
            "seed": 7,
            "constitution": str(REPO / "constitution.yaml"),
            "hardware": {"threads": threads, "allocator": allocator},
        },
    )
    run_job(snakemake, function)
    return json.loads((tmp_path / "manifest.json").read_text())


def test_run_job_writes_the_manifest_with_the_rule_name_wildcards_and_what_the_function_returns(tmp_path):
    import torch

    seen = {}

    def step(table: str, stage: str, shard: int, size: int) -> dict:
        seen.update(table=table, stage=stage, shard=shard, size=size)
        Path(table).write_text("rows")
        return {"rows": size}

    before = torch.get_num_threads()
    try:
        manifest = fake_job(tmp_path, step, {"table": str(tmp_path / "t.txt")}, size=5)
    finally:
        torch.set_num_threads(before)
    assert seen == {"table": str(tmp_path / "t.txt"), "stage": "stage1", "shard": 3, "size": 5}  # shard: an int
    assert manifest["rule"] == "some_rule" and manifest["stage"] == "stage1" and manifest["shard"] == 3
    assert manifest["rows"] == 5 and manifest["seconds"] >= 0 and manifest["config"]["seed"] == 7
    assert manifest["hardware"]["torch_threads"] == 1  # hardware.threads: 1
    assert manifest["constitution"]["sha256"] and manifest["packages"]


def test_run_job_gives_torch_every_available_core_by_default_whatever_the_job_threads(tmp_path, monkeypatch):
    """`snakemake --cores 1` gives each job threads=1; on a 2-core laptop the one model job running must still
    use both cores (hardware.threads: auto), as torch would by default."""
    import torch

    from maximalcai import hardware

    monkeypatch.setattr(hardware, "available_cores", lambda: 3)
    before = torch.get_num_threads()
    try:
        manifest = fake_job(
            tmp_path, lambda table, stage, shard: None, {"table": str(tmp_path / "t.txt")}, threads="auto"
        )
        assert manifest["hardware"]["torch_threads"] == 3
    finally:
        torch.set_num_threads(before)


def test_a_job_sets_torch_threads_before_torch_is_imported_and_spares_jobs_without_torch_the_import():
    """set_threads in a fresh process: torch is not imported by it (an aggregate job never pays the import),
    and when the job's function imports torch, torch runs on hardware.threads."""
    from maximalcai.hardware import available_cores
    from maximalcai.job import THREAD_VARIABLES

    if available_cores() < 2:
        pytest.skip("one core: torch would take 1 thread by itself, so the setting could not be told apart")
    threads = 1  # torch by itself would take every core (and caps an environment's count at them)
    code = (
        f"import sys; from maximalcai.job import set_threads; set_threads({threads}); "
        "assert 'torch' not in sys.modules; import torch; print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(threads)]


def test_a_failing_step_writes_no_manifest_and_logs_its_error(tmp_path):
    from maximalcai.errors import ConfigError

    def step(table: str, stage: str, shard: int) -> dict:
        raise ConfigError("training.beta: must be positive; set it in config.yaml")

    with pytest.raises(ConfigError):
        fake_job(tmp_path, step, {"table": str(tmp_path / "t.txt")})
    assert not (tmp_path / "manifest.json").exists()
    assert "training.beta: must be positive" in (tmp_path / "job.log").read_text()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) for a real ENOSPC")
def test_a_full_disk_stops_the_job_with_the_path_and_the_rerun(tmp_path, monkeypatch):
    """Issue 29: a disk-full surfaced as a bare OSError, or as torch's 'basic_ios::clear: iostream error'."""
    import torch

    from maximalcai import job
    from maximalcai.errors import DiskFullError

    def python_write(table: str, stage: str, shard: int) -> dict:
        with open("/dev/full", "w") as full:  # a real ENOSPC from the kernel
            full.write("rows")
        return {}

    with pytest.raises(DiskFullError) as err:
        fake_job(tmp_path, python_write, {"table": str(tmp_path / "t.txt")})
    message = str(err.value)
    assert f"no space left on the disk holding {tmp_path / 't.txt'}" in message and "MiB left" in message
    assert "run the same snakemake command again" in message and "df -h" in message
    assert not (tmp_path / "manifest.json").exists() and "no space left" in (tmp_path / "job.log").read_text()

    def torch_write(table: str, stage: str, shard: int) -> dict:
        torch.save({"weights": torch.zeros(1000)}, "/dev/full")  # torch's writer: a RuntimeError, no errno
        return {}

    monkeypatch.setattr(job, "free_bytes", lambda path: 5 * 2**20)  # the disk is nearly full
    with pytest.raises(DiskFullError, match="5 MiB left"):
        fake_job(tmp_path, torch_write, {"table": str(tmp_path / "t.txt")})
    monkeypatch.setattr(job, "free_bytes", lambda path: 50 * 2**30)  # space left: another cause, left as it is
    with pytest.raises(RuntimeError) as other:
        fake_job(tmp_path, torch_write, {"table": str(tmp_path / "t.txt")})
    assert not isinstance(other.value, DiskFullError)


def test_workflow_scripts_only_hand_the_job_to_its_function():
    for script in sorted((REPO / "workflow_scripts").glob("*.py")):
        code = [line for line in script.read_text().splitlines() if line and not line.startswith(('"""', "from "))]
        assert len(code) == 1 and code[0].startswith("run_job(snakemake, "), script.name
    for path in (REPO / "src/maximalcai").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("run_") and node.name != "run_plan":
                assert not {"cfg", "config"} & {a.arg for a in node.args.args}, f"{path.name}: {node.name}"


@pytest.mark.skipif(allocator.keeps_freed_memory() is None, reason="needs Linux with glibc")
def test_jobs_keep_freed_memory_with_the_workflow_environment_and_say_so_without_it(tmp_path, monkeypatch):
    """hardware.allocator: keep_freed. A process started with the variables the Snakefile sets keeps a large
    freed block (it comes from the heap); this test process, started without them, does not, and a job run in
    it says so in its log, with the variables to set and the key that turns the check off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(allocator.job_environment("keep_freed", env))
    probe = [sys.executable, "-c", "from maximalcai.allocator import keeps_freed_memory as k; print(k())"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    env.pop("MALLOC_TRIM_THRESHOLD_")
    assert allocator.job_environment("keep_freed", env) == {}  # a MALLOC_ variable of the user's own: left alone
    assert allocator.job_environment("system", {}) == {}

    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)  # (read by glibc at start only: this process keeps glibc's defaults)

    def step(table: str, stage: str, shard: int) -> None:
        Path(table).write_text("rows")

    manifest = fake_job(tmp_path, step, {"table": str(tmp_path / "t.txt")})
    assert manifest["keeps_freed_memory"] is False
    log = (tmp_path / "job.log").read_text()
    assert "hardware.allocator is keep_freed" in log and "hardware.allocator: system" in log
    assert " ".join(f"{k}={v}" for k, v in allocator.KEEP_FREED.items()) in log
    (tmp_path / "job.log").unlink()
    fake_job(tmp_path, step, {"table": str(tmp_path / "t.txt")}, allocator="system")
    assert "allocator" not in (tmp_path / "job.log").read_text()
