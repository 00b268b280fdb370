"""Partitions of the dbt build: which sites and participants a build rebuilds, and when it must
rebuild all.

Sites, and within a site its participants, are independent until the cohort-level marts. The
participant-level models (those that call the macro `site_partitioned()`,
dbt_project/macros/site_partitions.sql) are incremental: a build that is not a full refresh
deletes and rebuilds only the rows of the participants named for each model in
`audit.dbt_rebuilt_participants`, at the sites named in `audit.dbt_partition_sites`. The other
models are small tables rebuilt whole every time.

A site's rows are looked at when its raw inputs changed since the last finished build: ingestion
keeps a digest of what each site's rows of each raw table are built from (`audit.current_inputs`,
ingest/current.py), and the build records the digests it was made from. Within such a site, only
the participants whose rows changed are rebuilt: ingestion also keeps a digest of each
participant's rows of each file, lineage aside (`audit.participant_inputs`), and the build keeps
a copy of those it was made from (`audit.dbt_built_participant_inputs`). A model rebuilds the
participants whose rows changed in a file it is built from (through any chain of models, to the
dbt sources), named per model in `audit.dbt_rebuilt_participants`; a change of a register
reaches every model, so a participant gone from a register leaves every model. Some changes reach every
participant of the site: a new data dictionary (REDCap's items), a new acute-care extract (its
export date is when each participant's follow-up is censored), a file no longer delivered, and,
for the models that read the load ledger, any new batch. Anything else a build
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

What the last finished build rebuilt stays on record for the checks that follow it
(`audit.dbt_last_build`, `audit.dbt_last_build_participants`): its id and the id of the build
before it, whether it rebuilt every row, the partitioned models it rebuilt whole, and per model
the participants whose rows it rebuilt. A mart's other rows are as the build before left them
(quality/identifier_scan.py scans only the rebuilt ones). A build that starts clears the record,
so a build that does not finish, or builds a selection of models, leaves none.
"""

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from dbt.version import __version__ as dbt_version

from pod_pipeline.ingest.current import PARTICIPANT_INPUTS_DDL
from pod_pipeline.ingest.specs import SPECS
from pod_pipeline.settings import DBT_PROJECT_DIR, Settings
from pod_pipeline.sql import table_exists
from pod_pipeline.transform.parse import project_files

STATE_TABLE = "audit.dbt_build_state"
SITES_TABLE = "audit.dbt_partition_sites"
WHOLE_TABLE = "audit.dbt_whole_models"
PARTICIPANTS_TABLE = "audit.dbt_rebuilt_participants"
BUILT_INPUTS_TABLE = "audit.dbt_built_participant_inputs"
# What the last finished build rebuilt (see the module's docstring).
LAST_BUILD_TABLE = "audit.dbt_last_build"
LAST_PARTICIPANTS_TABLE = "audit.dbt_last_build_participants"
# Files a change of which reaches every participant of the site (see the module's docstring), and
# what the dbt sources that are not a site's file (the load ledger, the quarantine) count as.
SITE_WIDE_FILES = ("redcap_dictionary.csv", "acute_care.csv")
EVERY_BATCH = "*"
REGISTER = "register.csv"
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
    # The 'file|site' inputs that changed, and (model, file): the files each partitioned model is
    # built from (EVERY_BATCH for the load ledger).
    changed: tuple[str, ...] = ()
    model_files: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    # This build's id, and the last finished build's (None when there is none on record).
    build_id: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)
    previous_build: str | None = field(default=None, compare=False)

    def dbt_args(self) -> list[str]:
        """A full build rebuilds everything. A build of some sites loads no seed: it follows a
        finished build of the same project (the fingerprint covers the seeds' files), so every seed
        table holds its file's rows already (18 seeds, 2.2 s of dbt's node time at any scale). The
        seeds' tests still run."""
        return ["--full-refresh"] if self.full else ["--exclude-resource-type", "seed"]

    def describe(self, participants: int | None = None) -> str:
        """What the build rebuilds; `participants`: how many participants' rows changed (begin())."""
        if self.full:
            return f"dbt rebuilds every site ({self.reason})"
        if not self.sites:
            told = "dbt rebuilds no site's rows: no site's inputs changed since the last build"
        else:
            told = (f"dbt rebuilds the rows of the participants whose inputs changed at {len(self.sites)} "
                    f"site(s): {', '.join(self.sites)}")
            if participants is not None:
                told += (f" ({participants} participant(s) whose rows changed; every participant of those "
                         "sites in the models built from the load ledger, and from a new acute-care "
                         "extract or data dictionary)")
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


def changed_inputs(before: dict[str, str], now: dict[str, str]) -> tuple[str, ...]:
    """The 'file|site' raw inputs added, removed or changed between two builds."""
    return tuple(sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key)))


def changed_sites(before: dict[str, str], now: dict[str, str]) -> tuple[str, ...]:
    """The sites with a raw input added, removed or changed between two builds."""
    return tuple(sorted({key.split("|", 1)[1] for key in changed_inputs(before, now)}))


def model_files(manifest: Mapping) -> tuple[tuple[str, str], ...]:
    """(model, file) for each site-partitioned model and each landing file its rows are built
    from, through any chain of models to the dbt sources; EVERY_BATCH stands for the sources that
    are not a file's raw table (the load ledger, the quarantine), which every batch changes."""
    by_table = {spec.table: spec.file for spec in SPECS.values()}
    files: dict[str, set[str]] = {}
    for uid, source in manifest.get("sources", {}).items():
        files[uid] = {by_table.get(source["name"], EVERY_BATCH) if source["schema"] == "raw" else EVERY_BATCH}
    nodes = manifest["nodes"]

    def reached(uid: str) -> set[str]:
        if uid not in files:
            files[uid] = set()  # a cycle cannot occur in dbt's graph; this only ends the walk
            node = nodes.get(uid)
            for parent in (node or {}).get("depends_on", {}).get("nodes", []):
                files[uid] |= reached(parent)
        return files[uid]

    return tuple(sorted((node["name"], file) for uid, node in nodes.items()
                        if node["resource_type"] == "model"
                        and (node["config"].get("meta") or {}).get("site_rows") == "participant_id"
                        for file in reached(uid)))


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
    previous = con.execute(f"select fingerprint, inputs, reference_date, build_id from {STATE_TABLE}").fetchall()
    previous_build = previous[0][3] if previous else None
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
        return BuildPlan(True, tuple(sorted({key.split("|", 1)[1] for key in inputs})), reason, now, inputs, date,
                         previous_build=previous_build)
    manifest = manifest if manifest is not None else _project_manifest()
    whole = reference_date_models(manifest) if previous[0][2] != date else ()
    before = json.loads(previous[0][1])
    return BuildPlan(False, changed_sites(before, inputs), "", now, inputs, date, whole,
                     changed_inputs(before, inputs), model_files(manifest), previous_build=previous_build)


def _project_manifest() -> Mapping:
    # Imported here: parse.py's manifest is built on first use, which a plan made without one needs.
    from pod_pipeline.transform.parse import ensure_dbt_manifest

    return json.loads(Path(ensure_dbt_manifest()).read_text(encoding="utf-8"))


def begin(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> int:
    """Before dbt starts: name the sites and, per model, the participants to rebuild, and forget the
    last build, so that a build that does not finish is followed by a full one (`plan` has made
    the tables). Returns how many participants' rows changed in a file (0 on a full build)."""
    con.execute("begin transaction")
    for table in (STATE_TABLE, SITES_TABLE, WHOLE_TABLE, PARTICIPANTS_TABLE, LAST_BUILD_TABLE,
                  LAST_PARTICIPANTS_TABLE):
        con.execute(f"delete from {table}")
    _insert_sites(con, build.sites)
    for model in build.whole:
        con.execute(f"insert into {WHOLE_TABLE} values ($m)", {"m": model})
    changed = 0 if build.full else _insert_rebuilt_participants(con, build)
    con.execute("commit")
    return changed


def _insert_rebuilt_participants(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> int:
    """audit.dbt_rebuilt_participants: for each partitioned model, the participants whose rows in
    a file it is built from changed (see the module's docstring). Returns how many participants'
    rows changed, those reached only as participants of a site aside."""
    con.execute("create or replace temp table _pod_changed (file varchar, participant_id varchar, "
                "site_wide boolean)")
    for key in build.changed:
        file, site = key.split("|", 1)
        if file in SITE_WIDE_FILES or key not in build.inputs:
            con.execute(f"insert into _pod_changed select *, true from ({_participants_of_site()})",
                        {"f": file, "s": site})
        else:
            con.execute(f"""
                insert into _pod_changed
                select $f, coalesce(now.participant_id, built.participant_id), false
                from (select * from audit.participant_inputs where file = $f and site = $s) as now
                full join (select * from {BUILT_INPUTS_TABLE} where file = $f and site = $s) as built
                    on now.participant_id = built.participant_id
                where now.digest is distinct from built.digest""", {"f": file, "s": site})
    changed = con.execute("select count(distinct participant_id) from _pod_changed where not site_wide"
                          ).fetchall()[0][0]
    for site in build.sites:
        con.execute(f"insert into _pod_changed select *, true from ({_participants_of_site()})",
                    {"f": EVERY_BATCH, "s": site})
    con.execute("create or replace temp table _pod_model_files (model varchar, file varchar)")
    con.executemany("insert into _pod_model_files values (?, ?)", [list(pair) for pair in build.model_files])
    # A change of a register reaches every model, built from it or not: a participant gone from a
    # register has their rows deleted from every model (macro delete_rebuilt_partitions).
    con.execute(f"insert into {PARTICIPANTS_TABLE} select distinct m.model, c.participant_id "
                "from _pod_changed c join (select distinct model, file from _pod_model_files "
                f"union all select distinct model, '{REGISTER}' from _pod_model_files) m on m.file = c.file")
    con.execute("drop table _pod_changed")
    con.execute("drop table _pod_model_files")
    return changed


def _participants_of_site() -> str:
    """SQL: ($f, each participant of site $s): its current register's, and any its rows were built for."""
    return (f"select $f, study_id from raw.register where site = $s and study_id is not null "
            f"union select $f, participant_id from {BUILT_INPUTS_TABLE} where site = $s")


def finish(con: duckdb.DuckDBPyConnection, build: BuildPlan, selection: bool = False) -> None:
    """After dbt finished every node: record what this build was made from (a selection's build
    leaves the models it did not select as they were, so the next build is a full one), and name
    no site, so that dbt run by hand tests every row and rebuilds none of a partitioned model."""
    if selection:
        return
    con.execute("begin transaction")
    _record_last_build(con, build)
    con.execute(f"delete from {STATE_TABLE}")
    con.execute(f"delete from {SITES_TABLE}")
    con.execute(f"delete from {WHOLE_TABLE}")
    con.execute(f"delete from {PARTICIPANTS_TABLE}")
    # The participants' digests this build was made from: every one after a full build, else
    # those of the inputs that changed.
    if build.full:
        con.execute(f"delete from {BUILT_INPUTS_TABLE}")
        con.execute(f"insert into {BUILT_INPUTS_TABLE} select * from audit.participant_inputs")
    else:
        for key in build.changed:
            file, site = key.split("|", 1)
            con.execute(f"delete from {BUILT_INPUTS_TABLE} where file = $f and site = $s", {"f": file, "s": site})
            con.execute(f"insert into {BUILT_INPUTS_TABLE} select * from audit.participant_inputs "
                        "where file = $f and site = $s", {"f": file, "s": site})
    con.execute(f"insert into {STATE_TABLE} (fingerprint, inputs, finished_at, reference_date, build_id) "
                "values ($f, $i, $t, $d, $b)",
                {"f": build.fingerprint, "i": json.dumps(build.inputs, sort_keys=True),
                 "t": dt.datetime.now(dt.UTC).replace(tzinfo=None), "d": build.reference_date,
                 "b": build.build_id})
    con.execute("commit")


def _record_last_build(con: duckdb.DuckDBPyConnection, build: BuildPlan) -> None:
    """What this finished build rebuilt, for the checks after it (see the module's docstring)."""
    con.execute(f"delete from {LAST_BUILD_TABLE}")
    con.execute(f"delete from {LAST_PARTICIPANTS_TABLE}")
    partitioned = sorted({model for model, _ in build.model_files})
    con.execute(f"insert into {LAST_BUILD_TABLE} values ($b, $p, $full, $whole, $partitioned)",
                {"b": build.build_id, "p": build.previous_build, "full": build.full,
                 "whole": list(build.whole), "partitioned": partitioned})
    if not build.full:
        con.execute(f"insert into {LAST_PARTICIPANTS_TABLE} select model, participant_id from {PARTICIPANTS_TABLE}")


def last_build(con: duckdb.DuckDBPyConnection) -> "LastBuild | None":
    """What the last finished build rebuilt; None when no finished build is on record."""
    if not table_exists(con, "audit", LAST_BUILD_TABLE.split(".")[1]):
        return None
    found = con.execute(f"select build_id, previous_build, full_refresh, whole, partitioned "
                        f"from {LAST_BUILD_TABLE}").fetchall()
    if not found:
        return None
    build_id, previous, full, whole, partitioned = found[0]
    return LastBuild(build_id, previous, full, tuple(whole), tuple(partitioned))


@dataclass(frozen=True)
class LastBuild:
    """The last finished build: its id, the id of the build before it (None when unknown), whether
    it rebuilt every row, and, when it did not, the partitioned models it rebuilt whole (a new
    reference date) and every partitioned model (the others were rebuilt whole)."""

    build_id: str
    previous_build: str | None
    full: bool
    whole: tuple[str, ...]
    partitioned: tuple[str, ...]

    def rebuilt_every_row(self, model: str) -> bool:
        """Whether this build rebuilt every row of `model` (else only its participants named in
        audit.dbt_last_build_participants)."""
        return self.full or model in self.whole or model not in self.partitioned


def _insert_sites(con: duckdb.DuckDBPyConnection, sites: Iterable[str]) -> None:
    for site in sites:
        con.execute(f"insert into {SITES_TABLE} values ($s)", {"s": site})


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists {STATE_TABLE} (fingerprint varchar not null, "
                "inputs varchar not null, finished_at timestamp not null)")
    con.execute(f"create table if not exists {SITES_TABLE} (site varchar not null)")
    con.execute(f"create table if not exists {WHOLE_TABLE} (model varchar not null)")
    con.execute(f"create table if not exists {PARTICIPANTS_TABLE} (model varchar not null, "
                "participant_id varchar not null)")
    con.execute(PARTICIPANT_INPUTS_DDL)
    con.execute(f"create table if not exists {BUILT_INPUTS_TABLE} as "
                "select * from audit.participant_inputs where false")
    # Warehouses built before the reference date left the fingerprint (a null date: the
    # date-dependent models are rebuilt whole on their next build); and before builds had ids.
    con.execute(f"alter table {STATE_TABLE} add column if not exists reference_date varchar")
    con.execute(f"alter table {STATE_TABLE} add column if not exists build_id varchar")
    con.execute(f"create table if not exists {LAST_BUILD_TABLE} (build_id varchar not null, "
                "previous_build varchar, full_refresh boolean not null, whole varchar[] not null, "
                "partitioned varchar[] not null)")
    con.execute(f"create table if not exists {LAST_PARTICIPANTS_TABLE} (model varchar not null, "
                "participant_id varchar not null)")
