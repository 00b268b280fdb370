"""Small DuckDB SQL helpers every layer uses: identifier quoting, literals, table existence and columns, row digests."""

from collections.abc import Iterable

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
