"""CSV files that a spreadsheet cannot turn into formulas (CSV/formula injection).

A text value that begins with `=`, `+`, `-` or `@` (or a tab or carriage return, which some
spreadsheets skip before looking for one) is prefixed with an apostrophe, the OWASP advice: Excel
and LibreOffice show it as text and run nothing. Only text columns are touched, so numbers, dates
and booleans keep their types and a negative number stays a number. Every CSV the pipeline writes
goes through `write_csv` (Python rows) or `copy_csv` (DuckDB tables and views).
"""

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from pod_pipeline.sql import lit, q

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PREFIX = "'"
_TEXT_TYPES = ("VARCHAR",)


def neutralise(value: Any) -> Any:
    """The value, with an apostrophe in front when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(TRIGGERS):
        return PREFIX + value
    return value


def neutralise_sql(expression: str) -> str:
    """The same rule as `neutralise`, as a DuckDB SQL expression over a text expression."""
    triggers = ", ".join(lit(t) for t in TRIGGERS)
    return (
        f"case when left({expression}, 1) in ({triggers}) "
        f"then '{PREFIX * 2}' || {expression} else {expression} end"
    )


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write rows as an RFC 4180 CSV with every text cell neutralised; returns the row count."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([neutralise(name) for name in header])
        for row in rows:
            writer.writerow([neutralise(value) for value in row])
            count += 1
    return count


def copy_csv(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> int:
    """COPY a table or view to CSV, text columns neutralised and every other type left as it is;
    returns the rows written."""
    columns = con.execute(f"select column_name, column_type from (describe {table})").fetchall()
    select = ", ".join(
        f"{neutralise_sql(q(name))} as {q(name)}"
        if data_type in _TEXT_TYPES
        else q(name)
        for name, data_type in columns
    )
    return con.execute(f"copy (select {select} from {table}) to {lit(str(path))} (format csv, header true)"
                       ).fetchall()[0][0]
