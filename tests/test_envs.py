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
