"""Site partitions of the dbt build: which sites a build rebuilds, and when it must rebuild all.

Sites are independent until the cohort-level marts. The participant-level models (those that call
the macro `site_partitioned()`, dbt_project/macros/site_partitions.sql) are incremental: a build
that is not a full refresh deletes and rebuilds only the rows of the participants of the sites
named in `audit.dbt_partition_sites`. The other models are small tables rebuilt whole every time.

A site is rebuilt when its raw inputs changed since the last finished build: ingestion keeps a
digest of what each site's rows of each raw table are built from (`audit.current_inputs`,
ingest/current.py), and the build records the digests it was made from. Anything else a build
depends on, but the reference date, is in the fingerprint: the dbt project's files, the settings
passed to dbt, dbt's version and the raw tables' columns. When the fingerprint differs, when no
build has finished since the state was cleared (a first build, a failed or killed one, a build of
a selection of models), or when a full refresh is asked for, every row is rebuilt
(`dbt build --full-refresh`).

The reference date moves every day, and only some models read it: those whose SQL calls the macro
`reference_date()`, directly or through another macro, and every model built on one of them
(`reference_date_models`, from dbt's manifest). When the date is not the last finished build's,
those models are rebuilt whole, for every site (named in `audit.dbt_whole_models`), and the others
rebuild only the sites whose inputs changed, so a daily refresh with nothing new recomputes what
depends on the date and nothing else.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from dbt.version import __version__ as dbt_version

from pod_pipeline.settings import DBT_PROJECT_DIR, Settings
from pod_pipeline.sql import table_exists
from pod_pipeline.transform.parse import project_files

STATE_TABLE = "audit.dbt_build_state"
SITES_TABLE = "audit.dbt_partition_sites"
WHOLE_TABLE = "audit.dbt_whole_models"
# The macro every model that depends on the reference date reaches (dbt_project/macros/run_settings.sql).
REFERENCE_DATE_MACRO = "macro.pod.reference_date"


@dataclass(frozen=True)
class BuildPlan:
    """What one `dbt build` rebuilds: every row (`full`), or the rows of `sites` only and the
    partitioned models in `whole` for every site (those that depend on a new reference date)."""

    full: bool
    sites: tuple[str, ...]
    reason: str
    fingerprint: str
    inputs: dict[str, str] = field(default_factory=dict, compare=False)
    reference_date: str = ""
    whole: tuple[str, ...] = ()

    def dbt_args(self) -> list[str]:
        return ["--full-refresh"] if self.full else []

    def describe(self) -> str:
        if self.full:
            return f"dbt rebuilds every site ({self.reason})"
        if not self.sites:
            told = "dbt rebuilds no site's rows: no site's inputs changed since the last build"
        else:
            told = f"dbt rebuilds the rows of {len(self.sites)} site(s) whose inputs changed: {', '.join(self.sites)}"
        if self.whole:
            told += (f"; and, for the new reference date {self.reference_date}, every site's rows of the "
                     f"{len(self.whole)} model(s) that depend on it: {', '.join(self.whole)}")
        return told


def project_digest(root: Path = DBT_PROJECT_DIR) -> str:
    """A digest of the project's files (those dbt parses: parse.PROJECT_INPUTS) and their paths."""
    digest = hashlib.sha256()
    for file in project_files(root):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(con: duckdb.DuckDBPyConnection, settings: Settings, project: str | None = None) -> str:
    """Everything but the sites' inputs and the reference date that the rows of a partitioned
    model depend on."""
    raw_columns = con.execute(
        "select table_name, list(column_name || ' ' || data_type order by ordinal_position) "
        "from information_schema.columns where table_schema = 'raw' group by table_name order by table_name"
    ).fetchall()
    parts = {"project": project or project_digest(), "dbt": dbt_version, "settings": settings.dbt_vars(),
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


def reference_date_models(manifest: Mapping) -> tuple[str, ...]:
    """The site-partitioned models whose rows depend on the reference date: those whose SQL calls
    the macro reference_date(), directly or through other macros, and every model built on one."""
    # The macros that reach reference_date(): grown until no macro calling one is left out
    # (a fixed point, so that macros calling each other are judged right).
    calls = {uid: set(macro.get("depends_on", {}).get("macros", [])) for uid, macro in manifest["macros"].items()}
    dated_macros = {REFERENCE_DATE_MACRO}
    while grown := {uid for uid, called in calls.items() if uid not in dated_macros and called & dated_macros}:
        dated_macros |= grown
    nodes = {uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"}
    children: dict[str, list[str]] = {}
    for uid, node in nodes.items():
        for parent in node["depends_on"]["nodes"]:
            children.setdefault(parent, []).append(uid)
    dated = [uid for uid, node in nodes.items() if dated_macros & set(node["depends_on"]["macros"])]
    reached = set(dated)
    while dated:
        for child in children.get(dated.pop(), []):
            if child not in reached:
                reached.add(child)
                dated.append(child)
    return tuple(sorted(nodes[uid]["name"] for uid in reached
                        if (nodes[uid]["config"].get("meta") or {}).get("site_rows") == "participant_id"))


def plan(con: duckdb.DuckDBPyConnection, settings: Settings, full_refresh: bool = False,
         selection: bool = False, manifest: Mapping | None = None) -> BuildPlan:
    """The build this warehouse needs now (see the module's docstring); `manifest` is dbt's parse of
    the project, read for the models that depend on the reference date (its own when not given)."""
    first = not table_exists(con, "audit", "dbt_build_state")
    _ensure_tables(con)
    now = fingerprint(con, settings)
    inputs = current_inputs(con)
    date = settings.reference_date.isoformat()
    previous = con.execute(f"select fingerprint, inputs, reference_date from {STATE_TABLE}").fetchall()
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
        reason = "the dbt project, the settings, dbt or the raw tables' columns changed"
    if reason is not None:
        return BuildPlan(True, tuple(sorted({key.split("|", 1)[1] for key in inputs})), reason, now, inputs, date)
    whole = ()
    if previous[0][2] != date:
        whole = reference_date_models(manifest if manifest is not None else _project_manifest())
    return BuildPlan(False, changed_sites(json.loads(previous[0][1]), inputs), "", now, inputs, date, whole)


def _project_manifest() -> Mapping:
    # Imported here: parse.py's manifest is built on first use, which a plan made without one needs.
    from pod_pipeline.transform.parse import ensure_dbt_manifest

    return json.loads(Path(ensure_dbt_manifest()).read_text(encoding="utf-8"))


def begin(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> None:
    """Before dbt starts: name the sites to rebuild, and forget the last build, so that a build that
    does not finish is followed by a full one (`plan` has made the tables)."""
    con.execute("begin transaction")
    con.execute(f"delete from {STATE_TABLE}")
    con.execute(f"delete from {SITES_TABLE}")
    con.execute(f"delete from {WHOLE_TABLE}")
    _insert_sites(con, build.sites)
    for model in build.whole:
        con.execute(f"insert into {WHOLE_TABLE} values ($m)", {"m": model})
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
    con.execute(f"delete from {WHOLE_TABLE}")
    con.execute(f"insert into {STATE_TABLE} (fingerprint, inputs, finished_at, reference_date) "
                "values ($f, $i, $t, $d)",
                {"f": build.fingerprint, "i": json.dumps(build.inputs, sort_keys=True),
                 "t": dt.datetime.now(dt.UTC).replace(tzinfo=None), "d": build.reference_date})
    con.execute("commit")


def _insert_sites(con: duckdb.DuckDBPyConnection, sites: Iterable[str]) -> None:
    for site in sites:
        con.execute(f"insert into {SITES_TABLE} values ($s)", {"s": site})


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists {STATE_TABLE} (fingerprint varchar not null, "
                "inputs varchar not null, finished_at timestamp not null)")
    con.execute(f"create table if not exists {SITES_TABLE} (site varchar not null)")
    con.execute(f"create table if not exists {WHOLE_TABLE} (model varchar not null)")
    # Warehouses built before the reference date left the fingerprint (a null date: the
    # date-dependent models are rebuilt whole on their next build).
    con.execute(f"alter table {STATE_TABLE} add column if not exists reference_date varchar")
