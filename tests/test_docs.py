"""The docs stay true to the code: the config reference is generated, every table column is documented,
and the README's first commands are the ones CI runs."""

import re

from conftest import REPO
from maximalcai.configdoc import render
from maximalcai.tables import TABLES


def test_config_reference_is_current():
    assert (REPO / "docs/CONFIG.md").read_text() == render(), "run: python -m maximalcai.configdoc > docs/CONFIG.md"


def test_every_table_column_is_documented():
    text = (REPO / "docs/TABLES.md").read_text()
    sections = dict(re.findall(r"^## (\w+): (.*?)(?=^## |\Z)", text, re.M | re.S))
    for name, spec in TABLES.items():
        section = next((body for heading, body in sections.items() if heading == name), None)
        assert section is not None, f"docs/TABLES.md has no section for table {name}"
        documented = set(re.findall(r"`(\w+)`", section))
        missing = [c for c in spec.names if c not in documented]
        assert not missing, f"docs/TABLES.md, table {name}: columns {missing} are not documented"


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, re.M)
    assert len(commands) >= 2
    assert commands[1] in (REPO / ".ci/run").read_text()
    assert commands[0].endswith("snakemake --cores 1 stage1_model")


def test_every_test_the_docs_cite_exists():
    """A doc that names ``tests/FILE.py::test_name`` names a test that is there (renamed or moved tests
    left stale citations before)."""
    cited = set()
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "benchmarks/README.md"]:
        cited |= {(doc.name, *m) for m in re.findall(r"tests/(test_\w+\.py)::(test_\w+)", doc.read_text())}
    assert cited
    missing = [c for c in cited if f"def {c[2]}(" not in (REPO / "tests" / c[1]).read_text()]
    assert not missing, missing


def test_every_config_key_has_a_meaning():
    rows = [line.split("|") for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    assert not [row[1].strip() for row in rows if not row[4].strip()]


def test_generated_doc_tables_match_their_results_files():
    """Tables of measured figures are drawn from the results file they cite (benchmarks/doc_tables.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_tables", REPO / "benchmarks/doc_tables.py")
    doc_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc_tables)
    marked = [m for path in doc_tables.docs() for m in doc_tables.BLOCK.finditer(path.read_text())]
    assert len(marked) >= 5 and "README.md" in {p.name for p in doc_tables.docs()}
    assert doc_tables.stale() == [], "redraw them: python benchmarks/doc_tables.py"
