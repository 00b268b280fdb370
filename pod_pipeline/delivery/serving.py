"""Serving the published marts from PostgreSQL (POD_PUBLISH_POSTGRES_URL), for analysts on a server.

Each publication loads every mart into a fresh schema, `marts_staged_<release>`, in one
transaction (COPY of CSV that DuckDB writes), then swaps it for `marts` in a second, short one:
`marts` is dropped and the staged schema renamed. A failure before the swap commits leaves `marts`
exactly as it was.

Why the swap waits for readers. PostgreSQL resolves table names against the newest committed
catalog, not the reader's snapshot; a transaction that read the old `marts` and reads again after a
swap would find the new tables and see none of their rows (they were written after its snapshot).
So the swap takes the old tables' locks with NOWAIT (held by any transaction that has read them),
and also waits for every transaction that was already open when the staged data was committed;
until both are clear it rolls back and retries, for up to `Target.wait_seconds`. A reader thus
sees the old marts for its whole transaction and the new ones in its next. A session left idle in a
transaction holds the swap back: `idle_in_transaction_session_timeout` ends such sessions.

Roles: the connecting user (the pipeline's role) owns the schemas; `pod_analyst` may read every
table of `marts`; `pod_site_<site>` may read its own site's rows of the SITE_TABLES (row-level
security) and nothing else. Roles are created when missing and never dropped; grants and policies
travel with the staged schema, so they change in the same commit as the data.
"""

import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg2
import psycopg2.errors
from psycopg2 import sql

from pod_pipeline import seeds
from pod_pipeline.delivery.dictionary import ColumnDoc
from pod_pipeline.settings import masked_url
from pod_pipeline.sql import lit, q

SCHEMA = "marts"
STAGED_PREFIX = "marts_staged_"
ANALYST_ROLE = "pod_analyst"
SITE_ROLE_PREFIX = "pod_site_"
SITE_TABLES = ("missing_assessments", "completeness", "quarantine")
SETTING = "POD_PUBLISH_POSTGRES_URL"
SCRATCH_PREFIX = ".pod_serving-"

_SCALAR_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "UTINYINT": "smallint",
    "INTEGER": "integer",
    "USMALLINT": "integer",
    "BIGINT": "bigint",
    "UINTEGER": "bigint",
    # Counts DuckDB sums are HUGEINT (128 bits): PostgreSQL's nearest exact type is numeric.
    "UBIGINT": "numeric(20,0)",
    "HUGEINT": "numeric(39,0)",
    "UHUGEINT": "numeric(39,0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "UUID": "uuid",
}


class ServingError(RuntimeError):
    """The marts could not be served from PostgreSQL; the served marts are left as they were."""


@dataclass(frozen=True)
class Target:
    """Where and what to serve: the server, and the documentation that becomes its comments."""

    url: str = field(repr=False)
    table_docs: dict[str, str] = field(default_factory=dict)
    column_docs: dict[str, dict[str, ColumnDoc]] = field(default_factory=dict)
    wait_seconds: float = 600.0


@dataclass(frozen=True)
class Served:
    url: str  # masked
    rows: dict[str, int]
    sites: list[str]
    waited_seconds: float
    columns_without_comment: int


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str
    select: str  # the DuckDB expression whose CSV text PostgreSQL reads as pg_type


def pg_type(duckdb_type: str) -> str:
    """The PostgreSQL type holding a DuckDB type's values exactly; ValueError when there is none."""
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", duckdb_type)
    if match:
        return f"numeric({match.group(1)},{match.group(2)})"
    if duckdb_type.endswith("[]") and not duckdb_type[:-2].endswith(("[]", "]")):
        return f"{pg_type(duckdb_type[:-2])}[]"
    if duckdb_type in _SCALAR_TYPES:
        return _SCALAR_TYPES[duckdb_type]
    raise ValueError(f"no faithful PostgreSQL type for DuckDB {duckdb_type}")


def site_role(site: str) -> str:
    """The role of a site's trial manager: pod_site_<site code in lower case>."""
    code = site.lower()
    if not re.fullmatch(r"[a-z0-9_]{1,50}", code):
        raise ServingError(f"site {site!r} cannot name a PostgreSQL role: expected letters, digits or _")
    return SITE_ROLE_PREFIX + code


def staged_schema(release: str) -> str:
    return STAGED_PREFIX + re.sub(r"[^a-z0-9_]", "_", release.lower())


def serve(con: duckdb.DuckDBPyConnection, tables: list[str], target: Target, release: str,
          scratch: Path) -> Served:
    """Load `tables` of the working database's marts into PostgreSQL and swap them in as `marts`."""
    shown = masked_url(target.url)
    columns = {table: _columns(con, table) for table in tables}
    sites = _sites(con, columns)
    roles = {site: site_role(site) for site in sites}
    if len(set(roles.values())) < len(roles):
        raise ServingError(f"sites {', '.join(sites)} do not map to distinct roles {SITE_ROLE_PREFIX}<site>")
    staged = staged_schema(release)
    try:
        pg = psycopg2.connect(target.url, application_name="pod publication", connect_timeout=30)
    except psycopg2.Error as exc:
        raise ServingError(f"cannot connect to {SETTING}={shown}: {_first_line(exc)}") from exc
    step = "preparing"
    try:
        pg.set_client_encoding("UTF8")
        _drop_stale_staged(pg)
        step = "creating roles"
        _ensure_roles(pg, [ANALYST_ROLE, *roles.values()])
        step = "loading"
        with tempfile.TemporaryDirectory(dir=scratch, prefix=SCRATCH_PREFIX) as folder:
            rows = _load(pg, con, staged, columns, Path(folder))
        undocumented = _comment(pg, staged, release, columns, target)
        step = "swapping"
        waited = _swap(pg, staged, columns, roles, target.wait_seconds)
    except psycopg2.Error as exc:
        _abandon(pg, staged)
        raise ServingError(f"serving the marts from {SETTING}={shown} failed while {step}: "
                           f"{_first_line(exc)}") from exc
    except BaseException:
        _abandon(pg, staged)
        raise
    finally:
        pg.close()
    return Served(shown, rows, sites, waited, undocumented)


def _first_line(exc: BaseException) -> str:
    """The server's reason, and where it arose when it says (a COPY names its table and line)."""
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    context = getattr(getattr(exc, "diag", None), "context", None)
    return f"{reason} ({context.splitlines()[0]})" if context else reason


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[_Column]:
    columns = []
    for name, duckdb_type in con.execute(
        f"select column_name, column_type from (describe {SCHEMA}.{q(table)})"
    ).fetchall():
        try:
            target_type = pg_type(duckdb_type)
        except ValueError as exc:
            raise ServingError(f"{SCHEMA}.{table}.{name}: {exc}") from exc
        columns.append(_Column(name, target_type, _csv_expression(name, duckdb_type)))
    return columns


def _csv_expression(name: str, duckdb_type: str) -> str:
    """A list becomes PostgreSQL's array literal ({"a","b",NULL}); every other type's CSV text as is."""
    if not duckdb_type.endswith("[]"):
        return q(name)
    element = "coalesce('\"' || replace(replace(x::varchar, '\\', '\\\\'), '\"', '\\\"') || '\"', 'NULL')"
    return f"'{{' || array_to_string(list_transform({q(name)}, lambda x: {element}), ',') || '}}'"


def _sites(con: duckdb.DuckDBPyConnection, columns: dict[str, list[_Column]]) -> list[str]:
    """Every site in the marts, and every site the protocol seed knows (before it has data)."""
    found = {row["site"] for row in seeds.rows("site_protocols")}
    for table, cols in columns.items():
        if any(c.name == "site" for c in cols):
            found |= {site for (site,) in con.execute(
                f"select distinct site::varchar from {SCHEMA}.{q(table)} where site is not null").fetchall()}
    return sorted(found)


def _drop_stale_staged(pg: "psycopg2.extensions.connection") -> None:
    """Staged schemas of this role's publications killed part-way (one publication at a time)."""
    with pg.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like %s and "
                    "nspowner = (select oid from pg_roles where rolname = current_user)",
                    (STAGED_PREFIX.replace("_", r"\_") + "%",))
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))
    pg.commit()


def _ensure_roles(pg: "psycopg2.extensions.connection", roles: Iterable[str]) -> None:
    """Group roles (NOLOGIN) that an administrator grants to people's login roles."""
    with pg.cursor() as cur:
        for role in roles:
            cur.execute("select 1 from pg_roles where rolname = %s", (role,))
            if not cur.fetchall():
                cur.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    pg.commit()


def _load(pg: "psycopg2.extensions.connection", con: duckdb.DuckDBPyConnection, staged: str,
          columns: dict[str, list[_Column]], folder: Path) -> dict[str, int]:
    """Create the staged schema and COPY every table into it, in one transaction."""
    rows = {}
    with pg.cursor() as cur:
        cur.execute(sql.SQL("create schema {}").format(sql.Identifier(staged)))
        for table, cols in columns.items():
            name = sql.Identifier(staged, table)
            cur.execute(sql.SQL("create table {} ({})").format(name, sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in cols)))
            path = folder / "table.csv"
            # Every value quoted, so an empty string stays distinct from NULL (left unquoted) and a
            # lone \. is data, not PostgreSQL's end-of-data marker.
            con.execute(f"copy (select {', '.join(c.select for c in cols)} from {SCHEMA}.{q(table)}) "
                        f"to {lit(str(path))} (format csv, header false, force_quote *)")
            with path.open("rb") as handle:
                cur.copy_expert(sql.SQL("copy {} ({}) from stdin with (format csv)").format(
                    name, sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)), handle, size=1 << 20)
            rows[table] = cur.rowcount
            path.unlink()
            expected = con.execute(f"select count(*) from {SCHEMA}.{q(table)}").fetchall()[0][0]
            if rows[table] != expected:
                raise ServingError(f"{SCHEMA}.{table}: PostgreSQL read {rows[table]} rows of {expected}")
    pg.commit()
    return rows


def _comment(pg: "psycopg2.extensions.connection", staged: str, release: str,
             columns: dict[str, list[_Column]], target: Target) -> int:
    """The dbt docs as comments (\\d+ in psql, any client's catalogue); returns columns left bare."""
    bare = 0
    with pg.cursor() as cur:
        cur.execute(sql.SQL("comment on schema {} is {}").format(
            sql.Identifier(staged), sql.Literal(f"POD trial marts, release {release}")))
        for table, cols in columns.items():
            if target.table_docs.get(table):
                cur.execute(sql.SQL("comment on table {} is {}").format(
                    sql.Identifier(staged, table), sql.Literal(target.table_docs[table])))
            docs = target.column_docs.get(table, {})
            for column in cols:
                doc = docs.get(column.name.lower())
                if doc is None or not doc.description:
                    bare += 1
                    continue
                text = f"{doc.description} ({doc.unit_or_codes})" if doc.unit_or_codes else doc.description
                cur.execute(sql.SQL("comment on column {} is {}").format(
                    sql.Identifier(staged, table, column.name), sql.Literal(text)))
    pg.commit()
    return bare


class _ReadersStillOpen(Exception):
    def __init__(self, sessions: list[tuple]) -> None:
        super().__init__(sessions)
        self.sessions = sessions


def _swap(pg: "psycopg2.extensions.connection", staged: str, columns: dict[str, list[_Column]],
          roles: dict[str, str], wait_seconds: float) -> float:
    """Grant, then swap the staged schema for `marts` in one transaction once no reader needs the old
    one; returns the seconds spent waiting for readers."""
    with pg.cursor() as cur:
        # Transactions open now may hold snapshots from before the staged data was committed.
        cur.execute("select l.virtualxid from pg_locks l join pg_stat_activity a using (pid) "
                    "where l.locktype = 'virtualxid' and l.granted and l.pid <> pg_backend_pid() "
                    "and a.datname = current_database() and a.usesysid is not null")
        earlier = [vxid for (vxid,) in cur.fetchall()]
    pg.commit()
    started = time.monotonic()
    pause = 0.1
    while True:
        try:
            with pg.cursor() as cur:
                cur.execute("set local lock_timeout = '5s'")
                _grant(cur, staged, columns, roles)
                cur.execute("select tablename from pg_tables where schemaname = %s", (SCHEMA,))
                old = [sql.Identifier(SCHEMA, name) for (name,) in cur.fetchall()]
                if old:
                    cur.execute(sql.SQL("lock table {} in access exclusive mode nowait").format(
                        sql.SQL(", ").join(old)))
                cur.execute("select a.pid, a.usename, a.application_name from pg_locks l "
                            "join pg_stat_activity a using (pid) where l.locktype = 'virtualxid' "
                            "and l.virtualxid = any(%s)", (earlier,))
                still_open = cur.fetchall()
                if still_open:
                    raise _ReadersStillOpen(still_open)
                cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(SCHEMA)))
                cur.execute(sql.SQL("alter schema {} rename to {}").format(
                    sql.Identifier(staged), sql.Identifier(SCHEMA)))
            pg.commit()
            return time.monotonic() - started
        except (psycopg2.errors.LockNotAvailable, _ReadersStillOpen) as exc:
            pg.rollback()
            if time.monotonic() - started > wait_seconds:
                raise ServingError(f"readers kept {SCHEMA} open for {wait_seconds:.0f} s: "
                                   f"{_readers(pg, exc)}; the served marts are unchanged (set "
                                   "idle_in_transaction_session_timeout to end abandoned sessions)") from None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _readers(pg: "psycopg2.extensions.connection", exc: Exception) -> str:
    """Who holds the old marts open, by session (user and application), for the error message."""
    if isinstance(exc, _ReadersStillOpen):
        sessions = exc.sessions
    else:
        with pg.cursor() as cur:
            cur.execute("select distinct a.pid, a.usename, a.application_name from pg_locks l "
                        "join pg_stat_activity a using (pid) join pg_class c on c.oid = l.relation "
                        "where c.relnamespace = %s::regnamespace and l.granted and l.pid <> pg_backend_pid()",
                        (SCHEMA,))
            sessions = cur.fetchall()
        pg.rollback()
    return ", ".join(f"pid {pid} ({user or '?'}{', ' + app if app else ''})" for pid, user, app in sessions) \
        or "sessions that have since ended"


def _grant(cur: "psycopg2.extensions.cursor", staged: str, columns: dict[str, list[_Column]],
           roles: dict[str, str]) -> None:
    """Analysts read every table; each site role reads its own site's rows of SITE_TABLES only."""
    schema = sql.Identifier(staged)
    analyst = sql.Identifier(ANALYST_ROLE)
    site_roles = [sql.Identifier(role) for role in roles.values()]
    cur.execute(sql.SQL("grant usage on schema {} to {}").format(
        schema, sql.SQL(", ").join([analyst, *site_roles])))
    cur.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, analyst))
    cur.execute(sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(
        schema, analyst))
    for table in SITE_TABLES:
        if not any(c.name == "site" for c in columns.get(table, [])):
            continue
        name = sql.Identifier(staged, table)
        cur.execute(sql.SQL("alter table {} enable row level security").format(name))
        cur.execute(sql.SQL("create policy analysts_read_all on {} for select to {} using (true)").format(
            name, analyst))
        for site, role in roles.items():
            cur.execute(sql.SQL("create policy {} on {} for select to {} using (site = {})").format(
                sql.Identifier(role), name, sql.Identifier(role), sql.Literal(site)))
        if site_roles:
            cur.execute(sql.SQL("grant select on {} to {}").format(name, sql.SQL(", ").join(site_roles)))


def _abandon(pg: "psycopg2.extensions.connection", staged: str) -> None:
    """After a failure: roll back, and drop the staged schema if it was committed. Best effort (the
    server may be gone); a schema left behind is dropped by the next publication."""
    try:
        pg.rollback()
        with pg.cursor() as cur:
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(staged)))
        pg.commit()
    except psycopg2.Error:
        return
