"""Parquet tables: schema checked on write and read, atomic writes, clear errors on bad files."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maximalcai.errors import TableError
from maximalcai.tables import TABLES, read_table, write_table


def funnel_rows(n=2):
    return [
        {"step": i, "filter": f"f{i}", "rows_in": 10, "rows_out": 9, "dropped": 1, "reason": "r"} for i in range(n)
    ]


def test_roundtrip_and_no_temporary_files_left(tmp_path):
    path = tmp_path / "t" / "funnel.parquet"
    write_table(funnel_rows(), path, "pairs_funnel")
    assert read_table(path, "pairs_funnel") == funnel_rows()
    assert [p.name for p in path.parent.iterdir()] == ["funnel.parquet"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("reason"), r"missing columns \['reason'\]"),
        (lambda r: r.update(extra=1), r"unexpected columns \['extra'\]"),
        (lambda r: r.update(rows_in="ten"), "does not fit the schema"),
        (lambda r: r.update(reason=None), "column 'reason' has 1 null"),
    ],
)
def test_bad_rows_are_refused_on_write(tmp_path, change, message):
    rows = funnel_rows()
    change(rows[0])
    with pytest.raises(TableError, match=message):
        write_table(rows, tmp_path / "x.parquet", "pairs_funnel")
    assert not (tmp_path / "x.parquet").exists()


def test_duplicate_keys_are_refused(tmp_path):
    rows = funnel_rows() + funnel_rows(1)
    with pytest.raises(TableError, match="not unique"):
        write_table(rows, tmp_path / "x.parquet", "pairs_funnel")


def test_missing_corrupt_empty_and_foreign_files_name_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "missing.parquet"
    with pytest.raises(
        TableError, match=r"missing.parquet: table 'pairs_funnel' is missing; .*--forcerun build_pairs"
    ):
        read_table(missing, "pairs_funnel")

    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(TableError, match="corrupt.parquet: not a readable Parquet file"):
        read_table(corrupt, "pairs_funnel")

    empty = tmp_path / "empty.parquet"
    write_table([], empty, "pairs_funnel")
    assert read_table(empty, "pairs_funnel", require_rows=False) == []
    with pytest.raises(TableError, match="empty.parquet: table 'pairs_funnel' has no rows"):
        read_table(empty, "pairs_funnel")

    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"step": [1], "something": ["x"]}), foreign)
    with pytest.raises(TableError, match=r"does not match the 'pairs_funnel' schema \(missing \["):
        read_table(foreign, "pairs_funnel")


def test_every_table_names_the_rule_that_writes_it():
    assert all(spec.rule and spec.key for spec in TABLES.values())
