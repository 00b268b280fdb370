"""Site partitions of the dbt build: which sites a build rebuilds, and when it must rebuild all.

Sites are independent until the cohort-level marts. The participant-level models (those that call
the macro `site_partitioned()`, dbt_project/macros/site_partitions.sql) are incremental: a build
that is not a full refresh deletes and rebuilds only the rows of the participants of the sites
named in `audit.dbt_partition_sites`. The other models are small tables rebuilt whole every time.

A site is rebuilt when its raw inputs changed since the last finished build: ingestion keeps a
digest of what each site's rows of each raw table are built from (`audit.current_inputs`,
ingest/current.py), and the build records the digests it was made from. Anything else a build
depends on is in the fingerprint: the dbt project's files, the settings passed to dbt, the
reference date, dbt's version and the raw tables' columns. When the fingerprint differs, when no
build has finished since the state was cleared (a first build, a failed or killed one, a build of
a selection of models), or when a full refresh is asked for, every row is rebuilt
(`dbt build --full-refresh`).
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from dbt.version import __version__ as dbt_version

from pod_pipeline.settings import DBT_PROJECT_DIR, Settings
from pod_pipeline.sql import table_exists
from pod_pipeline.transform.parse import project_files

STATE_TABLE = "audit.dbt_build_state"
SITES_TABLE = "audit.dbt_partition_sites"


@dataclass(frozen=True)
class BuildPlan:
    """What one `dbt build` rebuilds: every row (`full`), or the rows of `sites` only."""

    full: bool
    sites: tuple[str, ...]
    reason: str
    fingerprint: str
    inputs: dict[str, str] = field(default_factory=dict, compare=False)

    def dbt_args(self) -> list[str]:
        return ["--full-refresh"] if self.full else []

    def describe(self) -> str:
        if self.full:
            return f"dbt rebuilds every site ({self.reason})"
        if not self.sites:
            return "dbt rebuilds no site's rows: no site's inputs changed since the last build"
        return f"dbt rebuilds the rows of {len(self.sites)} site(s) whose inputs changed: {', '.join(self.sites)}"


def project_digest(root: Path = DBT_PROJECT_DIR) -> str:
    """A digest of the project's files (those dbt parses: parse.PROJECT_INPUTS) and their paths."""
    digest = hashlib.sha256()
    for file in project_files(root):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(con: duckdb.DuckDBPyConnection, settings: Settings, project: str | None = None) -> str:
    """Everything but the sites' inputs that the rows of a partitioned model depend on."""
    raw_columns = con.execute(
        "select table_name, list(column_name || ' ' || data_type order by ordinal_position) "
        "from information_schema.columns where table_schema = 'raw' group by table_name order by table_name"
    ).fetchall()
    parts = {"project": project or project_digest(), "dbt": dbt_version, "settings": settings.run_settings(),
             "raw": [[table, list(columns)] for table, columns in raw_columns]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def current_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """'file|site' -> ingestion's digest of what the site's rows of that raw table are built from."""
    if not table_exists(con, "audit", "current_inputs"):
        return {}
    return {f"{file}|{site}": inputs for file, site, inputs in con.execute(
        "select file, site, inputs from audit.current_inputs order by file, site").fetchall()}


def changed_sites(before: dict[str, str], now: dict[str, str]) -> tuple[str, ...]:
    """The sites with a raw input added, removed or changed between two builds."""
    keys = {key for key in before.keys() | now.keys() if before.get(key) != now.get(key)}
    return tuple(sorted({key.split("|", 1)[1] for key in keys}))


def plan(con: duckdb.DuckDBPyConnection, settings: Settings, full_refresh: bool = False,
         selection: bool = False) -> BuildPlan:
    """The build this warehouse needs now (see the module's docstring)."""
    first = not table_exists(con, "audit", "dbt_build_state")
    _ensure_tables(con)
    now = fingerprint(con, settings)
    inputs = current_inputs(con)
    previous = con.execute(f"select fingerprint, inputs from {STATE_TABLE}").fetchall()
    reason = None
    if full_refresh:
        reason = "a full refresh was asked for"
    elif selection:
        reason = "a selection of models is built"
    elif first:
        reason = "the warehouse's first build"
    elif not previous:
        reason = "the last build did not finish, or built a selection of models"
    elif previous[0][0] != now:
        reason = "the dbt project, the settings, the reference date, dbt or the raw tables' columns changed"
    if reason is not None:
        return BuildPlan(True, tuple(sorted({key.split("|", 1)[1] for key in inputs})), reason, now, inputs)
    return BuildPlan(False, changed_sites(json.loads(previous[0][1]), inputs), "", now, inputs)


def begin(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> None:
    """Before dbt starts: name the sites to rebuild, and forget the last build, so that a build that
    does not finish is followed by a full one (`plan` has made the tables)."""
    con.execute("begin transaction")
    con.execute(f"delete from {STATE_TABLE}")
    con.execute(f"delete from {SITES_TABLE}")
    _insert_sites(con, build.sites)
    con.execute("commit")


def finish(con: duckdb.DuckDBPyConnection, build: BuildPlan, selection: bool = False) -> None:
    """After dbt finished every node: record what this build was made from (a selection's build
    leaves the models it did not select as they were, so the next build is a full one), and name
    no site, so that dbt run by hand tests every row and rebuilds none of a partitioned model."""
    if selection:
        return
    con.execute("begin transaction")
    con.execute(f"delete from {STATE_TABLE}")
    con.execute(f"delete from {SITES_TABLE}")
    con.execute(f"insert into {STATE_TABLE} values ($f, $i, $t)",
                {"f": build.fingerprint, "i": json.dumps(build.inputs, sort_keys=True),
                 "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    con.execute("commit")


def _insert_sites(con: duckdb.DuckDBPyConnection, sites: Iterable[str]) -> None:
    for site in sites:
        con.execute(f"insert into {SITES_TABLE} values ($s)", {"s": site})


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists {STATE_TABLE} (fingerprint varchar not null, "
                "inputs varchar not null, finished_at timestamp not null)")
    con.execute(f"create table if not exists {SITES_TABLE} (site varchar not null)")
