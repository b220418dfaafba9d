"""Style is enforced, not hoped for: ruff's lint rules and formatter (line length 119, as TRL) over the Python,
snakefmt over the Snakefile and rules/. The configuration lives in pyproject.toml. To fix a failure:
``ruff check --fix . && ruff format . && snakefmt .``"""

import ast
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


MAX_FUNCTION_LINES = 80  # issue 32: a function a reader takes in at once


def test_library_functions_are_short():
    """No function or method in src/ is longer than MAX_FUNCTION_LINES lines (signature and docstring included):
    a longer one is split into named steps."""
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted((REPO / "src").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)
