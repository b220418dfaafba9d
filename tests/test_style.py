"""Style is enforced, not hoped for: ruff's lint rules and formatter (line length 119, as TRL) over the Python,
snakefmt over the Snakefile and rules/. The configuration lives in pyproject.toml. To fix a failure:
``ruff check --fix . && ruff format . && snakefmt .``"""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format --check": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "snakefmt --check": [str(Path(sys.executable).parent / "snakefmt"), "--check", "."],  # console script only
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_style(name):
    result = subprocess.run(CHECKS[name], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{name} failed; fix with: ruff check --fix . && ruff format . && snakefmt .\n"
        + (result.stdout + result.stderr)[-4000:]
    )
