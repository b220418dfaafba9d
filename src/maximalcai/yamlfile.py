"""YAML read through libyaml's C parser when PyYAML has it (SafeLoader's rules, about 10x faster).

Every Snakemake call reads config.yaml, the config schema and constitution.yaml before planning; with
PyYAML's pure-Python parser that was most of the project's own start-up (benchmarks/dry_run.py). The C
loader resolves tags with the same Python resolver as ``yaml.safe_load``, so the data is the same
(tests/test_config.py compares both on every YAML file of the repository).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml where installed."""
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader


def read(path: str | Path) -> Any:
    return parse(Path(path).read_text(encoding="utf-8"))
