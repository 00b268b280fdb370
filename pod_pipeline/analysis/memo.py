"""Cohort-level analyses computed again only when what they read has changed.

The outcome summary, the cost-effectiveness bootstrap and the relapse analysis are deterministic
functions of the marts they read (the bootstrap is seeded), of their settings and of the code. A
routine re-export that changes none of those marts would recompute the same figures: at 1,000,000
participants that costs half a minute a run. So each analysis is keyed by the digest of its
inputs: for every relation it reads, its columns, row count and an order-free digest of every row
(the publication's digest), with the settings it takes, the code version (every file of the
product and of the dbt project, as in the publication fingerprint) and the versions of the
statistics libraries. When the key equals the one recorded with the analysis's last result and
every table it wrote still holds what it wrote (the same digest), the tables are left as they are
and the asset reports the metadata recorded with them. Anything else, a forced run included
(`pod run --force`, the daily and weekly schedules), computes the analysis again.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from importlib import metadata as package_metadata
from typing import Any

import dagster as dg
import duckdb

from pod_pipeline.ingest.fingerprint import code_version
from pod_pipeline.sql import columns as columns_of
from pod_pipeline.sql import q, rows_digest

STORE = "audit.analysis_inputs"
DDL = f"""
create schema if not exists audit;
create table if not exists {STORE} (
    analysis varchar primary key, inputs_key varchar not null, outputs_key varchar not null,
    results varchar not null, recorded_at timestamp not null
);
"""
LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "duckdb")


class AnalysisConfig(dg.Config):
    """recompute: compute the analysis even when its inputs are those of its last result
    (`pod run --force` sets it)."""

    recompute: bool = False


def _relations(con: duckdb.DuckDBPyConnection, relations: Sequence[str]) -> list[object]:
    """Each relation's columns, row count and order-free digest of its rows."""
    parts: list[object] = []
    for relation in relations:
        schema, table = relation.split(".")
        columns = columns_of(con, schema, table)
        if not columns:
            parts.append([relation, "missing"])
            continue
        count, digest = con.execute(f"select {rows_digest(name for name, _ in columns)} "
                                    f"from {q(schema)}.{q(table)}").fetchall()[0]
        parts.append([relation, [list(c) for c in columns], count, str(digest)])
    return parts


def _key(described: object) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def inputs_key(con: duckdb.DuckDBPyConnection, relations: Sequence[str], settings: Mapping[str, Any]) -> str:
    """The digest of everything an analysis's result depends on (see the module's docstring)."""
    libraries = {name: package_metadata.version(name) for name in LIBRARIES}
    return _key({"inputs": _relations(con, relations), "settings": dict(settings), "code": code_version(),
                 "libraries": libraries})


def recorded(con: duckdb.DuckDBPyConnection, analysis: str, key: str,
             outputs: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """The metadata recorded with the analysis's last result (by asset key) when that result was
    computed from inputs with this key and every table it wrote still holds what it wrote; else None."""
    con.execute(DDL)
    rows = con.execute(f"select inputs_key, outputs_key, results from {STORE} where analysis = $a",
                       {"a": analysis}).fetchall()
    if not rows or rows[0][0] != key or rows[0][1] != _key(_relations(con, outputs)):
        return None
    return {asset: dg.deserialize_value(value, dict)
            for asset, value in json.loads(rows[0][2]).items()}


def record(con: duckdb.DuckDBPyConnection, analysis: str, key: str, outputs: Sequence[str],
           results: Mapping[str, Mapping[str, Any]]) -> None:
    """Record the key of the inputs an analysis's result was computed from, the digest of the
    tables it wrote, and the metadata of each of its assets."""
    con.execute(DDL)
    stored = json.dumps({asset: dg.serialize_value(dict(values)) for asset, values in results.items()})
    con.execute(f"insert or replace into {STORE} values ($a, $k, $o, $r, current_timestamp)",
                {"a": analysis, "k": key, "o": _key(_relations(con, outputs)), "r": stored})


def forget(con: duckdb.DuckDBPyConnection, analysis: str) -> None:
    """Drop the record of an analysis whose tables are about to be replaced."""
    con.execute(DDL)
    con.execute(f"delete from {STORE} where analysis = $a", {"a": analysis})
