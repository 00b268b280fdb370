"""The raw layer dbt reads: each site's current snapshot of each file, without identifiers.

The current snapshot of a file at a site is the newest loaded batch (by export_id) that delivered an
accepted version of it; older batches stay in history. Only rows that passed ingestion reach it.
"""

import contextlib

import duckdb

from pod_pipeline.ingest import rules
from pod_pipeline.ingest.rules import lit, q
from pod_pipeline.ingest.specs import DICTIONARY_COLUMNS, HONOS_ITEMS, REDCAP_PLUMBING, SPECS, FileSpec

LINEAGE = ("_site as site, _export_id as export_id, _file as source_file, _line as line_number, "
           "_loaded_at as loaded_at")


def current_exports(con: duckdb.DuckDBPyConnection, file: str) -> dict[str, str]:
    """site -> export_id of the batch whose version of `file` is the current truth."""
    return dict(con.execute(
        "select site, max(export_id) from audit.load_ledger where file = $f and status = 'loaded' group by site",
        {"f": file},
    ).fetchall())


def _history_columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {c for (c,) in con.execute(
        "select column_name from information_schema.columns where table_schema = 'restricted' "
        "and table_name = $t", {"t": f"{table}_history"}).fetchall()}


def _projection(con: duckdb.DuckDBPyConnection, spec: FileSpec, site: str) -> list[str]:
    """The raw table's columns as SQL over the site's history rows."""
    present = _history_columns(con, spec.table)

    def column(name: str) -> str:
        return q(name) if name in present else f"cast(null as varchar) as {q(name)}"

    if spec.table == "register":
        return [column(c) for c in ("study_id", "gender", "ethnic_category", "arm", "cluster_id",
                                    "consent_date", "withdrawal_date", "withdrawal_type")] + [
            "_age_at_consent as age_at_consent", "_pseudonym is not null as has_nhs_number"]
    if spec.table == "honos":
        return ["assessment_id", "_study_id as study_id", "assessment_date", "rater_role",
                *HONOS_ITEMS, "honos_08_problem_type"]
    if spec.table == "redcap_dictionary":
        return [column(c) for c in DICTIONARY_COLUMNS]
    if spec.table == "redcap_records":
        flagged = _flagged(con, site)
        fields = []
        for item in rules.instrument_items():
            if item.field_name not in present or item.field_name in flagged:
                fields.append(f"cast(null as varchar) as {q(item.field_name)}")
            else:
                # A quarantined instrument's values are not trusted: they stay in history only.
                fields.append(f"case when list_contains(string_split(_quarantined_instruments, ','), "
                              f"{lit(item.instrument)}) then null else {q(item.field_name)} end "
                              f"as {q(item.field_name)}")
        return [column(c) for c in REDCAP_PLUMBING] + fields + ["_quarantined_instruments as quarantined_instruments"]
    return [column(c) for c in spec.required]


def _flagged(con: duckdb.DuckDBPyConnection, site: str) -> set[str]:
    exports = current_exports(con, "redcap_dictionary.csv")
    if site not in exports:
        return set()
    return {name for (name,) in con.execute(
        'select "Variable / Field Name" from restricted.redcap_dictionary_history where _site = $s '
        "and _export_id = $e and _status = 'loaded' and lower(trim(\"Identifier?\")) = 'y'",
        {"s": site, "e": exports[site]}).fetchall()}


def refresh(con: duckdb.DuckDBPyConnection, file: str, sites: set[str] | None = None) -> int:
    """Rebuild raw.<table> for the given sites (all when None); returns the table's row count."""
    spec = SPECS[file]
    exports = current_exports(con, file)
    target = f"raw.{spec.table}"
    con.execute("begin transaction")
    try:
        if sites is None:
            con.execute(f"drop table if exists {target}")
        for site in sorted(exports if sites is None else sites & exports.keys()):
            select = (f"select {', '.join(_projection(con, spec, site))}, {LINEAGE} "
                      f"from restricted.{spec.table}_history where _site = $site and _export_id = $export_id "
                      "and _status = 'loaded'")
            params = {"site": site, "export_id": exports[site]}
            if not _table_exists(con, target):
                con.execute(f"create table {target} as {select}", params)
                continue
            con.execute(f"delete from {target} where site = $site", {"site": site})
            con.execute(f"insert into {target} by name {select}", params)
        if not _table_exists(con, target):
            _create_empty(con, spec, target)
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed commit has ended the transaction
            con.execute("rollback")
        raise
    return con.execute(f"select count(*) from {target}").fetchall()[0][0]


def _create_empty(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str) -> None:
    """A site-less raw table still exists, so dbt can build on a landing zone missing a file type."""
    columns = {"register": ["study_id", "gender", "ethnic_category", "arm", "cluster_id", "consent_date",
                            "withdrawal_date", "withdrawal_type"],
               "honos": ["assessment_id", "study_id", "assessment_date", "rater_role", *HONOS_ITEMS,
                         "honos_08_problem_type"],
               "redcap_records": [*REDCAP_PLUMBING, *(i.field_name for i in rules.instrument_items()),
                                  "quarantined_instruments"],
               "redcap_dictionary": list(DICTIONARY_COLUMNS)}.get(spec.table, list(spec.required))
    typed = [f"{q(c)} varchar" for c in columns]
    if spec.table == "register":
        typed += ["age_at_consent integer", "has_nhs_number boolean"]
    typed += ["site varchar", "export_id varchar", "source_file varchar", "line_number bigint",
              "loaded_at timestamp"]
    con.execute(f"create table {target} ({', '.join(typed)})")


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(con.execute("select 1 from information_schema.tables where table_schema = $s "
                            "and table_name = $t", {"s": schema, "t": name}).fetchall())


def refresh_audit_views(con: duckdb.DuckDBPyConnection) -> None:
    """raw.quarantine and raw.load_ledger: the audit tables as dbt sources, flagged current or not."""
    con.execute("""
        create or replace table raw.quarantine as
        with current_files as (
            select site, file, max(export_id) as export_id
            from audit.load_ledger where status = 'loaded' group by site, file
        )
        select q.site, q.export_id, q.file, q.line, q."column", q.reason, q.detail, q.scope,
               q.instrument,
               -- Row problems of the current version, and file or batch rejections newer than it.
               coalesce(case when q.scope in ('row', 'instrument') then q.export_id = c.export_id
                             else q.export_id >= c.export_id end, true) as is_current_export,
               q.quarantined_at
        from audit.quarantine q
        left join current_files c on c.site = q.site and c.file = q.file
    """)
    con.execute("""
        create or replace view raw.load_ledger as
        select entry_id, site, export_id, file, sha256, status, rows_read, rows_loaded,
               rows_quarantined, error, loaded_at
        from audit.load_ledger
    """)
