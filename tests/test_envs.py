"""The conda environments for --use-conda pin what constraints/*.txt pins (no silent drift)."""

import re

import yaml

from conftest import REPO


def pins(lines):
    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_conda_envs_match_the_constraints():
    for env, constraints in (("maximalcai-cpu.yaml", "cpu.txt"), ("maximalcai-gpu.yaml", "gpu.txt")):
        spec = yaml.safe_load((REPO / "envs" / env).read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        env_pins = pins(pip)
        constraint_pins = pins((REPO / "constraints" / constraints).read_text().splitlines())
        assert env_pins, env
        for name, version in env_pins.items():
            assert constraint_pins.get(name) == version, f"envs/{env}: {name}=={version} vs constraints/{constraints}"


def test_the_container_installs_the_pinned_gpu_stack():
    """container/Dockerfile installs this package's gpu extra under constraints/gpu.txt and nothing else, and
    every package of that extra (and the training stack under it) is pinned there."""
    import tomllib

    dockerfile = (REPO / "container/Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n\\&]+)", dockerfile)
    assert installs == ["--no-cache-dir -e '.[gpu]' -c constraints/gpu.txt "], installs
    assert "COPY constraints/ constraints/" in dockerfile
    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M).group(1)
    conda = yaml.safe_load((REPO / "envs/maximalcai-gpu.yaml").read_text())
    assert f"python={python}" in conda["dependencies"]
    pinned = pins((REPO / "constraints/gpu.txt").read_text().splitlines())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in project["optional-dependencies"]["gpu"]}
    assert extra | {"torch", "transformers", "trl", "peft", "datasets", "snakemake"} <= set(pinned)
    definition = (REPO / "container/maximalcai-gpu.def").read_text()
    assert re.search(r"^From: maximalcai-gpu:latest$", definition, re.M)
    assert "docker build -f container/Dockerfile -t maximalcai-gpu ." in dockerfile
