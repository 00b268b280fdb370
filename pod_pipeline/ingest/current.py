"""The raw layer dbt reads: each site's current snapshot of each file, without identifiers.

The current snapshot of a file at a site is the newest loaded batch (by export_id) that delivered an
accepted version of it; older batches stay in history. Its rows that passed the row rules at load
are judged here, on every run that finds their inputs changed, by the file's cross-file rules
against the site's *current* register: those that pass are the raw table, the others are the
current cross-file quarantine (`audit.cross_file_quarantine`). So a row is in `raw.*` exactly when
it passes every rule now, and is quarantined only while it still fails.
"""

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import duckdb

from pod_pipeline.identifiers import hmac_pads, sql_pseudonym
from pod_pipeline.ingest import rules
from pod_pipeline.ingest.rules import SEP
from pod_pipeline.ingest.specs import SPECS, FileSpec
from pod_pipeline.sql import in_any_order, lit, q, table_exists

LINEAGE = ("_site as site, _export_id as export_id, _file as source_file, _line as line_number, "
           "_loaded_at as loaded_at")
REFERENCE = "_reference"


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
    """The raw table's columns as SQL over the site's history rows `h` (and the reference `reg`)."""
    present = _history_columns(con, spec.table)
    columns = spec.raw_columns()
    flagged = _flagged(con, site) if any(c.instrument for c in columns) else set()
    select = []
    for column in columns:
        name = q(column.name)
        if column.sql is not None:
            select.append(f"{column.sql} as {name}")
        elif column.name not in present or column.name in flagged:
            select.append(f"cast(null as {column.type}) as {name}")
        elif column.instrument is not None:
            # A quarantined instrument's values are not trusted: they stay in history only.
            select.append(f"case when list_contains(string_split(_quarantined_instruments, ','), "
                          f"{lit(column.instrument)}) then null else {name} end as {name}")
        else:
            select.append(name)
    return select


def _flagged(con: duckdb.DuckDBPyConnection, site: str) -> set[str]:
    exports = current_exports(con, "redcap_dictionary.csv")
    if site not in exports:
        return set()
    return {name for (name,) in con.execute(
        'select "Variable / Field Name" from restricted.redcap_dictionary_history where _site = $s '
        "and _export_id = $e and _status = 'loaded' and lower(trim(\"Identifier?\")) = 'y'",
        {"s": site, "e": exports[site]}).fetchall()}


def refresh(con: duckdb.DuckDBPyConnection, file: str, pseudonym_key: str | None = None,
            run_id: str | None = None) -> int:
    """Rebuild raw.<table> for every site whose inputs changed since it was last built; returns the
    table's row count.

    A site's inputs are the SQL that builds its rows and the batches it reads: the file's current
    export and, for files judged against the register, the register's current export. A new
    register alone therefore re-judges the site's other current files; a run with nothing new
    rebuilds nothing.
    """
    spec = SPECS[file]
    target = f"raw.{spec.table}"
    if spec.table == "honos" and pseudonym_key is not None:
        _backfill_pseudonyms(con, pseudonym_key)
    exports = current_exports(con, file)
    registers = current_exports(con, "register.csv") if spec.uses_register else {}
    plans = {site: _site_plan(con, spec, site, export_id, registers.get(site))
             for site, export_id in sorted(exports.items())}
    con.execute("begin transaction")
    try:
        if not table_exists(con, "raw", spec.table):
            con.execute("delete from audit.current_inputs where file = $f", {"f": file})
        while not _rebuild_changed(con, spec, target, plans, run_id):
            pass  # the table's shape changed: it was dropped, every site is built anew
        if not table_exists(con, "raw", spec.table):
            _create_empty(con, spec, target)
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed commit has ended the transaction
            con.execute("rollback")
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"drop table if exists {REFERENCE}")
    return con.execute(f"select count(*) from {target}").fetchall()[0][0]


@dataclass(frozen=True)
class _Plan:
    """The SQL that builds one site's rows of a file (and its cross-file quarantine), and what it reads:
    the batches, and what they are copies of (`origins`: a batch that repeats an earlier one's bytes,
    judged alike, has that one's rows; load.py)."""

    rows: str
    rejected: str
    params: dict[str, str]
    register_export: str | None
    origins: tuple[str | None, str | None] = (None, None)

    @property
    def inputs(self) -> str:
        parts = [self.rows, self.rejected, self.params, self.register_export]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    @property
    def content(self) -> str:
        """The same for two plans whose rows differ in their lineage alone."""
        parts = [self.rows, self.rejected, self.params["site"], self.origins]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _rebuild_changed(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str, plans: dict[str, "_Plan"],
                     run_id: str | None) -> bool:
    """Rebuild the sites whose inputs changed; False when the table had to be reshaped (start again)."""
    built = {site: (inputs, content) for site, inputs, content in con.execute(
        "select site, inputs, content from audit.current_inputs where file = $f", {"f": spec.file}).fetchall()}
    for site, plan in plans.items():
        inputs, content = built.get(site, (None, None))
        if inputs == plan.inputs:
            continue
        if content == plan.content and table_exists(con, "raw", spec.table):
            _relabel_site(con, spec, target, site, plan)
        elif not _rebuild_site(con, spec, target, site, plan, run_id):
            return False
        con.execute("delete from audit.current_inputs where file = $f and site = $s", {"f": spec.file, "s": site})
        con.execute("insert into audit.current_inputs (file, site, inputs, content) values ($f, $s, $i, $c)",
                    {"f": spec.file, "s": site, "i": plan.inputs, "c": plan.content})
    return True


def _origin(con: duckdb.DuckDBPyConnection, file: str, site: str, export_id: str | None) -> str | None:
    """The export whose rows the site's export of the file repeats: the one judged (load.py)."""
    if export_id is None:
        return None
    rows = con.execute("select coalesce(copied_from, export_id) from audit.file_judgements where site = $s "
                       "and export_id = $e and file = $f", {"s": site, "e": export_id, "f": file}).fetchall()
    return rows[0][0] if rows else export_id


def _site_plan(con: duckdb.DuckDBPyConnection, spec: FileSpec, site: str, export_id: str,
               register_export: str | None) -> _Plan:
    source = (f"from restricted.{spec.table}_history h "
              + (f"left join {REFERENCE} reg on {spec.link} " if spec.uses_register else "")
              + "where h._site = $site and h._export_id = $export_id and h._status = 'loaded'")
    params = {"site": site, "export_id": export_id}
    origins = (_origin(con, spec.file, site, export_id),
               _origin(con, "register.csv", site, register_export) if spec.uses_register else None)
    if not spec.uses_register:
        return _Plan(f"select {', '.join(_projection(con, spec, site))}, {LINEAGE} {source}", "", params, None,
                     origins)
    first, detail = rules.checked(spec.cross_rules(site))
    rows = f"select {', '.join(_projection(con, spec, site))}, {LINEAGE} {source} and ({first}) is null"
    rejected = (f"select h._line, {first} as _first, {detail} as _detail {source} and ({first}) is not null")
    return _Plan(rows, rejected, params, register_export, origins)


def _relabel_site(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str, site: str, plan: _Plan) -> None:
    """The site's rows and cross-file verdicts stay as they are, named by the batch they are now read
    from: it repeats the bytes of the one they were built from, judged alike (so do the register's)."""
    lineage = con.execute(f"select _file, _loaded_at from restricted.{spec.table}_history "
                          "where _site = $site and _export_id = $export_id limit 1", plan.params).fetchall()
    file, loaded_at = lineage[0] if lineage else (None, None)
    con.execute(f"update {target} set export_id = $export_id, source_file = $file, loaded_at = $at "
                "where site = $site and export_id <> $export_id", {**plan.params, "file": file, "at": loaded_at})
    con.execute("update audit.cross_file_quarantine set export_id = $export_id where file = $f and site = $site "
                "and export_id <> $export_id", {**plan.params, "f": spec.file})


def _rebuild_site(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str, site: str, plan: _Plan,
                  run_id: str | None) -> bool:
    if spec.uses_register:
        _reference(con, site, plan.register_export)
    # The rows' shape from the query's plan alone: the rows go straight into the table.
    shape = con.execute(f"select * from ({plan.rows}) limit 0", plan.params).description
    if table_exists(con, "raw", spec.table) and [c[0] for c in shape] != _columns(con, target):
        # The raw table's shape changed (an instrument item added to the seeds, say): every site
        # is rebuilt into the new shape.
        con.execute(f"drop table {target}")
        con.execute("delete from audit.current_inputs where file = $f", {"f": spec.file})
        return False
    if not table_exists(con, "raw", spec.table):
        con.execute(f"create table {target} as select * from ({plan.rows}) where false", plan.params)
    con.execute(f"delete from {target} where site = $site", {"site": site})
    # Raw rows carry their lineage (file and line); written in any order, on every core.
    with in_any_order(con):
        con.execute(f"insert into {target} by name {plan.rows}", plan.params)
    _digest_participants(con, spec, target, site)
    con.execute("delete from audit.cross_file_quarantine where file = $f and site = $s",
                {"f": spec.file, "s": site})
    if spec.uses_register:
        con.execute(
            "insert into audit.cross_file_quarantine select $site, $export_id, $file, _line, "
            "split_part(_first, $sep, 1), split_part(_first, $sep, 2), "
            f"{rules.without_ten_digits('_detail')}, 'row', null, $at, $run_id from ({plan.rejected})",
            {**plan.params, "file": spec.file, "sep": SEP, "run_id": run_id,
             "at": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    return True


# The column by which each raw table's rows belong to a participant (the dictionary's belong to
# the whole site). The digests leave out the lineage, which differs with every batch and which no
# mart carries, so a participant is rebuilt by dbt only when what their rows say changed, and a
# cumulative export repeating a site's rows costs the participants it changed. HoNOS keeps each
# row's place among its participant's rows: a duplicate rating is told apart by its line
# (int_honos_ratings_windowed), the one use any model makes of a line number.
# A digest of each participant's rows in each site's raw table of a file, made when the site's rows
# are rebuilt: the dbt build rebuilds the participants whose digests changed (transform/partitions.py).
PARTICIPANT_INPUTS_DDL = """
create table if not exists audit.participant_inputs (
    file varchar not null, site varchar not null, participant_id varchar not null, digest varchar not null
)
"""
PARTICIPANT_KEYS = {"register": "study_id", "redcap_records": "record_id", "honos": "study_id",
                    "network_meetings": "study_id", "acute_care": "study_id"}
_ORDERED = ("honos",)
_NOT_DIGESTED = ("site", "export_id", "source_file", "line_number", "loaded_at")


def _digest_participants(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str, site: str) -> None:
    """audit.participant_inputs for the site's rows of the file: per participant, the sum of their
    rows' hashes (free of row order, and duplicates do not cancel) and their rows' count."""
    con.execute("delete from audit.participant_inputs where file = $f and site = $s",
                {"f": spec.file, "s": site})
    key = PARTICIPANT_KEYS.get(spec.table)
    if key is None:
        return
    values = [q(c) for c in _columns(con, target) if c not in _NOT_DIGESTED]
    rows = f"select * from {target} where site = $s and {q(key)} is not null"
    if spec.table in _ORDERED:
        values.append("place")
        rows = (f"select *, row_number() over (partition by {q(key)} order by line_number) as place "
                f"from ({rows})")
    con.execute(
        f"insert into audit.participant_inputs select $f, $s, {q(key)}, "
        f"cast(sum(hash({', '.join(values)})) as varchar) || ':' || count(*) "
        f"from ({rows}) group by {q(key)}", {"f": spec.file, "s": site})


def _reference(con: duckdb.DuckDBPyConnection, site: str, register_export: str | None) -> None:
    """The participants of the site's current register, one row per study id and per pseudonym."""
    con.execute(f"create or replace temp table {REFERENCE} "
                "(ref_study_id varchar, ref_arm varchar, ref_consent_date date, ref_pseudonym varchar)")
    if register_export is None:
        return
    # A pseudonym two participants share links to neither: such HoNOS rows are unlinked.
    con.execute(
        f"insert into {REFERENCE} select study_id, arm, cast(consent_date as date), "
        "case when count(*) over (partition by _pseudonym) = 1 then _pseudonym end "
        "from restricted.register_history where _site = $site and _export_id = $export_id and _status = 'loaded'",
        {"site": site, "export_id": register_export})


def _backfill_pseudonyms(con: duckdb.DuckDBPyConnection, key: str) -> None:
    """HoNOS rows loaded before pseudonyms were kept with them get theirs (same key, same value)."""
    if "_pseudonym" in _columns(con, "restricted.honos_history"):
        pads = dict(zip(("inner_pad", "outer_pad"), hmac_pads(key), strict=True))
        con.execute(f"update restricted.honos_history set _pseudonym = {sql_pseudonym('nhs_number')} "
                    "where _pseudonym is null and nhs_number is not null and _status = 'loaded'", pads)
    elif table_exists(con, "restricted", "honos_history"):
        con.execute("alter table restricted.honos_history add column _pseudonym varchar")
        _backfill_pseudonyms(con, key)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, name = table.split(".") if "." in table else (None, table)
    return [c for (c,) in con.execute(
        "select column_name from information_schema.columns where table_name = $t "
        "and ($s is null or table_schema = $s) order by ordinal_position", {"t": name, "s": schema}).fetchall()]


def _create_empty(con: duckdb.DuckDBPyConnection, spec: FileSpec, target: str) -> None:
    """A site-less raw table still exists, so dbt can build on a landing zone missing a file type."""
    typed = [f"{q(c.name)} {c.type}" for c in spec.raw_columns()]
    typed += ["site varchar", "export_id varchar", "source_file varchar", "line_number bigint",
              "loaded_at timestamp"]
    con.execute(f"create table {target} ({', '.join(typed)})")


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
        union all
        -- Cross-file verdicts are judged on the current files only: current by construction.
        select site, export_id, file, line, "column", reason, detail, scope, instrument,
               true as is_current_export, quarantined_at
        from audit.cross_file_quarantine
    """)
    con.execute("""
        create or replace view raw.load_ledger as
        select entry_id, site, export_id, file, sha256, status, rows_read, rows_loaded,
               rows_quarantined, error, loaded_at
        from audit.load_ledger
    """)
