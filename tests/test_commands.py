"""Every snakemake command the README, docs/ and error messages print, run exactly as printed (a dry run on
the default config), and checked to plan only jobs of the stages and targets it names."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_workflow import fake_complete_run, make_workdir, planned_stage_jobs

from conftest import REPO
from maximalcai import tables
from maximalcai.errors import ConfigError
from maximalcai.targets import check_forcerun

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DATA_RULES = {
    "import_base_model",
    "generate_instructions",
    "aggregate_instructions",
    "generate_responses",
    "aggregate_responses",
}
PAIR_RULES = DATA_RULES | {
    "generate_contrast",
    "critique_revise",
    "safety_label",
    "preference_label",
    "aggregate_feedback",
    "build_pairs",
}


def documented() -> list[tuple[str, str]]:
    """(where, command) for every snakemake command in a code block of the README or docs/, comment cut off."""
    found = []
    for path in DOCS:
        block = False
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.startswith("```"):
                block = not block
            elif block and line.startswith("snakemake "):
                found.append((f"{path.name}:{number}", line.split("  #")[0].split(" # ")[0].strip()))
    return found


def printed_by_errors() -> list[tuple[str, str]]:
    """The rebuild commands that error messages print."""
    hint = tables._rerun_hint(Path("results/stage1/responses.parquet"), tables.TABLES["responses"])
    try:
        check_forcerun((), ("generate_responses", "results/stage1/responses.parquet"), ("generate_responses",))
    except ConfigError as exc:
        corrected = re.search(r"^\s+(snakemake .*)$", str(exc), re.M).group(1)
    return [
        ("tables._rerun_hint", hint.split(": ", 1)[1]),
        ("targets.check_forcerun", corrected),
        ("models: no model there", "snakemake --cores 1 results/models/base"),
        ("models.check_adapter", "snakemake --cores 1 --forcerun train_dpo -- results/stage1/adapter"),
    ]


def options_and_targets(command: str) -> tuple[list[str], list[str]]:
    """(arguments, targets) of a printed command; targets are the positional values and those after `--`."""
    args = shlex.split(command)[1:]
    takes_values = {"--cores", "--configfile", "--profile", "--config", "--report", "--forcerun", "-R", "--directory"}
    takes_values |= {"--software-deployment-method"}
    targets, option = [], None
    for index, token in enumerate(args):
        if token == "--":
            return args, targets + args[index + 1 :]
        if token.startswith("-"):
            option = token if token in takes_values else None
            continue
        if option in ("--cores", "--profile", "--report", "--directory", "--software-deployment-method"):
            option = None
        elif option is None:
            targets.append(token)
    return args, targets


def allowed(target: str):
    """(rule, stage or model) -> whether a dry run of ``target`` may plan that job.

    ``stageK_datasets`` / ``stageK_pairs``: everything of the stages before K (stage K's data is written by
    stage K-1's model), stage K's data (or feedback) rules, and the base model; ``stageK_model`` adds stage K's
    training and evaluation and the baselines' evaluations; a file under results/stageK/ is like the target
    of its kind; ``plan`` plans only itself; ``all`` and ``stages_report`` anything.
    """
    match = re.fullmatch(r"stage(\d+)_(datasets|pairs|model|export)", target) or re.fullmatch(
        r"results/stage(\d+)/(instructions|responses|pairs|adapter)\b.*", target
    )
    if target == "plan":
        return lambda rule, where: rule == "plan"
    if target == "results/models/base":
        return lambda rule, where: rule == "import_base_model"
    if not match:
        return lambda rule, where: True
    last, kind = int(match.group(1)), match.group(2)
    own = {"datasets": DATA_RULES, "instructions": DATA_RULES, "responses": DATA_RULES, "pairs": PAIR_RULES}.get(kind)

    def ok(rule: str, where: str) -> bool:
        if where.startswith("stage"):
            number = int(where[5:])
            return number < last or (number == last and (own is None or rule in own))
        return rule == "import_base_model" or own is None  # the baselines' evaluations belong to stageK_model

    return ok


def run_as_printed(command: str, workdir: Path, dry: bool = True):
    args, _ = options_and_targets(command)
    prefix = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    env = dict(os.environ)
    if "apptainer" in args and shutil.which("apptainer") is None:  # Snakemake asks for its version, even dry
        stub = workdir / "bin"
        stub.mkdir(exist_ok=True)
        (stub / "apptainer").write_text('#!/bin/sh\necho "apptainer version 1.3.4"\n')
        (stub / "apptainer").chmod(0o755)
        env["PATH"] = f"{stub}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        prefix + (["-n"] if dry else []) + args, capture_output=True, text=True, cwd=REPO, timeout=600, env=env
    )


COMMANDS = documented() + printed_by_errors()


def test_the_docs_print_commands_that_can_be_run():
    wheres = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "RUNPOD.md", "tables._rerun_hint", "targets.check_forcerun"} <= wheres
    assert any("--forcerun generate_responses -- results/stage1/responses.parquet" in c for _, c in COMMANDS)


@pytest.mark.parametrize("where, command", [c for c in COMMANDS if "--report" not in c[1]], ids=lambda v: v)
def test_every_printed_command_plans_only_what_it_names(tmp_path, where, command):
    make_workdir(tmp_path, config=REPO / "config.yaml")  # what a user runs them with
    args, targets = options_and_targets(command)
    if "--unlock" in args:
        result = run_as_printed(command, tmp_path, dry=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return
    if "--forcerun" in args:  # regenerating a dataset: on a finished stage, only that dataset's rules run
        fake_complete_run(tmp_path, "stage1_model")
    result = run_as_printed(command, tmp_path)
    assert result.returncode == 0, f"{where}: {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    jobs = planned_stage_jobs(result)
    checks = [allowed(target) for target in targets or ["all"]]
    stray = sorted(
        (rule, at)
        for rule, at in jobs
        if not re.fullmatch(r"stage\d+_\w+|all", rule) and not any(ok(rule, at) for ok in checks)
    )
    assert not stray, f"{where}: `{command}` plans jobs it does not name: {stray}"
    if "--forcerun" in args:  # exactly the forced rule and, for a dataset, its aggregation
        forced = args[args.index("--forcerun") + 1]
        expected = {"train_dpo"} if forced == "train_dpo" else {"generate_responses", "aggregate_responses"}
        assert {rule for rule, _ in jobs} == expected, jobs


def test_the_forcerun_trap_stops_before_any_job_with_the_corrected_command(tmp_path):
    make_workdir(tmp_path)
    trap = run_as_printed(
        "snakemake --cores 1 --forcerun generate_responses results/stage1/responses.parquet", tmp_path
    )
    output = trap.stdout + trap.stderr
    assert trap.returncode != 0 and "Put the target after `--`" in output
    assert "snakemake --cores 1 --forcerun generate_responses -- results/stage1/responses.parquet" in output
    assert not (tmp_path / "results").exists()
    everything = run_as_printed("snakemake --cores 1 --forcerun generate_responses -- all", tmp_path)
    assert everything.returncode == 0  # naming a target, even all, is a deliberate choice


@pytest.mark.parametrize(
    "targets, forcerun, stops",
    [
        ((), ("generate_responses", "results/stage1/responses.parquet"), True),
        ((), ("stage1_datasets",), True),  # a target rule builds nothing, so forcing it forces nothing
        ((), ("generate_responses",), False),
        (("results/stage1/responses.parquet",), ("generate_responses",), False),
        ((), (), False),
    ],
)
def test_check_forcerun(targets, forcerun, stops):
    building = ("generate_responses", "aggregate_responses")
    if stops:
        with pytest.raises(ConfigError, match="Put the target after"):
            check_forcerun(targets, forcerun, building)
    else:
        check_forcerun(targets, forcerun, building)


def test_the_command_line_is_read_with_snakemakes_own_parser():
    from maximalcai.targets import command_line_request

    trap = [
        "/venv/bin/snakemake",
        "--cores",
        "1",
        "--forcerun",
        "generate_responses",
        "results/stage1/responses.parquet",
    ]
    assert command_line_request(trap) == (set(), {"generate_responses", "results/stage1/responses.parquet"})
    fixed = ["/x/snakemake/__main__.py", "--cores", "1", "-R", "generate_responses", "--", "results/stage1/x.parquet"]
    assert command_line_request(fixed) == ({"results/stage1/x.parquet"}, {"generate_responses"})
    assert command_line_request(["pytest", "-q"]) is None  # not the snakemake command: no check
