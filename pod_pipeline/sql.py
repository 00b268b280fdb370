"""Small DuckDB SQL helpers every layer uses: identifier quoting, literals, table existence and columns, row digests,
and writing rows in no particular order."""

import contextlib
from collections.abc import Iterable, Iterator

import duckdb


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("select 1 from information_schema.tables where table_schema = $s "
                            "and table_name = $t", {"s": schema, "t": table}).fetchall())


def columns(con: duckdb.DuckDBPyConnection, schema: str, table: str,
            database: str | None = None) -> list[tuple[str, str]]:
    """A relation's columns and types, in order, in a database (the connection's own by default)."""
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = coalesce($d, current_database()) and table_schema = $s and table_name = $t "
        "order by ordinal_position",
        {"d": database, "s": schema, "t": table},
    ).fetchall()


def rows_digest(columns: Iterable[str], alias: str = "") -> str:
    """SQL: `n`, the row count, and `digest`, an order-free digest of every row (the listed columns)
    of a relation, which tells two relations' rows apart whatever order they are stored in."""
    row = ", ".join(f"{alias}{q(name)}" for name in columns)
    return f"count(*) as n, coalesce(sum(hash({row})), 0) as digest"


@contextlib.contextmanager
def in_any_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within the block, DuckDB need not keep the rows a statement writes in the order it reads them.

    The pipeline's connections keep insertion order (resources.connect), because a staged file's
    row numbers are its lines. A table whose rows carry their own place (a line, a key) has no
    order to keep, and DuckDB writes it on every core instead of one: a REDCap export's 470,117
    rows into its history took 3.0 s instead of 6.0 s at 1,000,000 participants. The setting is
    the connection's; the block restores what it was.
    """
    (was,) = con.execute("select current_setting('preserve_insertion_order')").fetchall()[0]
    con.execute("set preserve_insertion_order = false")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # never in the way of the error that ended the block
            con.execute(f"set preserve_insertion_order = {'true' if was else 'false'}")
