"""The data dictionary of a delivery: every column, its type from the database, its dbt docs."""

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

HEADER = ("table", "name", "type", "description", "unit_or_codes")


@dataclass(frozen=True)
class ColumnDoc:
    description: str
    unit_or_codes: str


def dbt_docs(manifest_path: Path, schema: str = "marts") -> dict[str, dict[str, ColumnDoc]]:
    """Column documentation of the dbt models built into `schema`: {table: {column: doc}}.

    The unit comes from a column's `meta.unit`, the code list from its `meta.codes` (a list, or a
    mapping of code to meaning): the list the model's accepted_codes test enforces
    (dbt_project/tests/generic/accepted_codes.sql), so the dictionary prints what dbt checks.
    """
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    docs: dict[str, dict[str, ColumnDoc]] = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "model" or node.get("schema") != schema:
            continue
        columns = {}
        for name, column in node.get("columns", {}).items():
            meta = {**column.get("config", {}).get("meta", {}), **column.get("meta", {})}
            columns[name.lower()] = ColumnDoc(" ".join(column.get("description", "").split()),
                                              _unit_or_codes(meta))
        docs[node.get("alias") or node["name"]] = columns
    return docs


def model_descriptions(manifest_path: Path, schema: str = "marts") -> dict[str, str]:
    """The description of each dbt model built into `schema` (its first line states the grain)."""
    nodes = json.loads(Path(manifest_path).read_text(encoding="utf-8")).get("nodes", {})
    return {node.get("alias") or node["name"]: " ".join(node.get("description", "").split())
            for node in nodes.values()
            if node.get("resource_type") == "model" and node.get("schema") == schema}


def _unit_or_codes(meta: dict) -> str:
    parts = []
    if meta.get("unit"):
        parts.append(f"unit: {meta['unit']}")
    codes = meta.get("codes")
    if isinstance(codes, dict):
        parts.append(
            "codes: " + "; ".join(f"{code} = {meaning}" for code, meaning in codes.items())
        )
    elif codes:
        parts.append("codes: " + " | ".join(str(code) for code in codes))
    return "; ".join(parts)


def dictionary_rows(
    con: duckdb.DuckDBPyConnection,
    tables: list[str],
    docs: dict[str, dict[str, ColumnDoc]],
    schema: str = "marts",
) -> list[tuple[str, str, str, str, str]]:
    """One row per column of each table, in table order then column order."""
    rows = []
    for table in tables:
        described = docs.get(table, {})
        for name, data_type in con.execute(
            f'select column_name, column_type from (describe {schema}."{table}")'
        ).fetchall():
            doc = described.get(name.lower(), ColumnDoc("", ""))
            rows.append((table, name, data_type, doc.description, doc.unit_or_codes))
    return rows
