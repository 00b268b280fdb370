"""The dbt project as Dagster assets: seeds, staging, intermediate and marts, with dbt tests as checks."""

import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from dbt.version import __version__ as dbt_version
from packaging import version

from pod_pipeline.identifiers import without_ten_digits
from pod_pipeline.preload import import_in_background
from pod_pipeline.resources import Warehouse
from pod_pipeline.settings import DBT_PROJECT_DIR
from pod_pipeline.transform import partitions
from pod_pipeline.transform.parse import ensure_dbt_manifest, start_from_project_parse


class PodDbtTranslator(DagsterDbtTranslator):
    """Asset keys [schema, name] (sources keep the keys of the ingestion assets); groups by layer."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "dbt_seeds"
        fqn = dbt_resource_props.get("fqn", [])
        layer = fqn[1] if len(fqn) > 2 else "marts"
        return f"dbt_{layer}"


translator = PodDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


class DbtBuildConfig(dg.Config):
    """full_refresh: rebuild every row of every model, not only the participants of the sites whose
    inputs changed since the last build (`pod run --force` sets it)."""

    full_refresh: bool = False


@dbt_assets(manifest=ensure_dbt_manifest(), dagster_dbt_translator=translator, pool="duckdb_writer")
def pod_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse,
                   config: DbtBuildConfig) -> Iterator[Any]:
    """Seeds, staging, intermediate and marts built and tested by `dbt build` (grains in the dbt docs);
    the participant-level models rebuild only the sites whose inputs changed (transform/partitions.py)."""
    settings = warehouse.settings
    with warehouse.connect() as con:
        build = partitions.plan(con, settings, full_refresh=config.full_refresh, selection=context.is_subset)
        participants = partitions.begin(con, build)
    context.log.info(build.describe(None if build.full else participants))
    os.environ.update(settings.dbt_env())
    # Unit tests check the SQL's logic, not the data: the test suite runs them (tests/test_dbt_build.py).
    # dbt's target folder lives in the warehouse, one per warehouse rather than one per run: its
    # partial_parse.msgpack then matches the next run's profile (the working database's path is
    # part of it), so a run whose settings are unchanged skips dbt's full parse; a fresh warehouse
    # starts from the project's parse (transform/parse.py).
    if start_from_project_parse(settings.dbt_target_dir, settings.work_db):
        context.log.info("dbt starts from the project's parse (a fresh warehouse)")
    started = dt.datetime.now(dt.UTC)
    import_in_background(IMPORTED_WHILE_DBT_RUNS)
    counts = RowCounts(settings.dbt_target_dir / "row_counts")
    os.environ[ROW_COUNTS_ENV] = str(counts.folder)
    # No dbt.log: dbt's own debug log (every statement, ~9 MB a study-scale run) cost about 1.5 s
    # of its 11 s; its info lines are in the run's log, and the SQL of each node in dbt_target/run/.
    invocation = dbt.cli(["build", "--vars", json.dumps(settings.dbt_vars()),
                          "--exclude-resource-type", "unit_test", "--log-level-file", "none",
                          *build.dbt_args()], context=context, target_path=settings.dbt_target_dir)
    held: list[Any] = []
    failure = None
    try:
        yield from counts.relay(invocation.manifest, invocation.stream(), held)
    except DagsterDbtCliRuntimeError as exc:
        failure = exc
    with warehouse.connect() as con:
        counted_now = _counted_in(con)
        yield from (_with_row_count(invocation.manifest, event, counted_now) for event in held)
        if failure is None:
            partitions.finish(con, build, selection=context.is_subset)
        else:
            reason = dbt_failure(settings.dbt_target_dir / "run_results.json", since=started, con=con)
    if failure is not None:
        if reason is None:
            raise failure
        # The run's summary shows the first line of the innermost error: dbt's own reasons, rather
        # than dagster-dbt's "The dbt CLI process with command ... failed".
        raise DbtBuildFailed(reason) from None


# Libraries the steps after dbt use (the outcome and relapse statistics, the figures) that loading
# the definitions does not import: imported while dbt runs, when this process mostly waits for
# dbt's output, instead of by those steps (about 1.4 s of a study-scale run).
IMPORTED_WHILE_DBT_RUNS = ("scipy.stats", "statsmodels.duration.hazard_regression",
                           "statsmodels.duration.survfunc", "statsmodels.tools.sm_exceptions",
                           "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker",
                           "PIL.Image")


class DbtBuildFailed(Exception):
    """`dbt build` failed; the message names each failed node with dbt's reason."""


def dbt_failure(run_results: Path, since: dt.datetime, shown: int = 3,
                con: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """One line from dbt's run_results.json: the nodes that failed and why (None when the file is
    missing, unreadable or older than `since`, or names no failure). With a connection to the
    working database, a failed not-null or accepted-codes test (one per model:
    tests/generic/not_null_columns.sql, accepted_codes.sql) also names the failing columns, as
    the per-column tests' names did."""
    try:
        content = json.loads(run_results.read_text(encoding="utf-8"))
        generated = dt.datetime.fromisoformat(content["metadata"]["generated_at"].replace("Z", "+00:00"))
        results = content["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if generated < since:
        return None  # dbt stopped before writing this build's results
    failed = [r for r in results if r.get("status") in ("error", "fail", "runtime error")]
    if not failed:
        return None
    parts = []
    for result in failed[:shown]:
        kind, _, name = result["unique_id"].split(".")[:3]
        lines = [line.strip() for line in (result.get("message") or "").splitlines() if line.strip()]
        # A runtime error's first line only repeats the node ("Runtime Error in model x (path)").
        detail = " ".join(lines[1:] if len(lines) > 1 and lines[0].startswith("Runtime Error") else lines)
        parts.append(f"{kind} {name}: {detail or result['status']}{_failing_columns(con, name, result)}")
    more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
    told = f"dbt build failed at {len(failed)} node{'s' if len(failed) > 1 else ''}: {'; '.join(parts)}{more}"
    # dbt may quote a value it could not convert; the summary goes to the terminal and the run
    # history, so ten digits in a row are withheld, as in quarantine details.
    return without_ten_digits(told)


# The tests that return one row per failing column (and value), and how the summary names them.
_BY_COLUMN = {
    ("not_null_", "source_not_null_"): ("nulls in", "select column_name, null_rows from ({sql}) order by 1"),
    ("accepted_values_",): ("codes not accepted in",
                            "select column_name, sum(n_rows) from ({sql}) group by 1 order by 1"),
}


def _failing_columns(con: duckdb.DuckDBPyConnection | None, name: str, result: Mapping[str, Any]) -> str:
    """" (nulls in arm: 3 rows, ...)" for a failed not-null test, " (codes not accepted in
    gender: 2 rows)" for a failed accepted-codes test, from its compiled query (counts, never a
    value); "" for any other test, without a connection, or when the query cannot be run again."""
    prefixes = next((p for p in _BY_COLUMN if name.startswith(p)), None)
    if con is None or prefixes is None or not result.get("compiled_code"):
        return ""
    said, query = _BY_COLUMN[prefixes]
    try:
        found = con.execute(query.format(sql=result["compiled_code"])).fetchall()
    except duckdb.Error:
        return ""
    counts = ", ".join(f"{column}: {rows} row{'' if rows == 1 else 's'}" for column, rows in found)
    return f" ({said} {counts})" if found else ""


ROW_COUNTS_ENV = "POD_DBT_ROW_COUNTS"


def _counted_node(manifest: Mapping[str, Any], event: Any) -> Mapping[str, Any] | None:
    """The dbt table (not view) whose materialization `event` reports, if it reports one."""
    if not isinstance(event, dg.Output | dg.AssetMaterialization) or "unique_id" not in event.metadata:
        return None
    node = manifest["nodes"].get(event.metadata["unique_id"].value)
    if node is None or node["config"].get("materialized") == "view":
        return None
    return node


def _with_row_count(manifest: Mapping[str, Any], event: Any,
                    count_of: Callable[[Mapping[str, Any]], int | None]) -> Any | None:
    """The event, with its table's row count (`count_of` the table's manifest node) when it
    reports a table; None when that count is not to be had."""
    node = _counted_node(manifest, event)
    if node is None:
        return event
    count = count_of(node)
    return None if count is None else event.with_metadata({**event.metadata, "dagster/row_count": count})


def _counted_in(con: duckdb.DuckDBPyConnection) -> Callable[[Mapping[str, Any]], int]:
    """A table's row count in the working database. The manifest's relation names carry the
    catalog of the database dbt parsed against; the schema and alias identify the table in ours."""
    return lambda node: con.execute(f'select count(*) from "{node["schema"]}"."{node["alias"]}"').fetchall()[0][0]


class RowCounts:
    """The row counts dbt's builds write as they go (macros/row_counts.sql), one file per table,
    in a folder emptied before each build so that no count is a previous build's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def written(self, node: Mapping[str, Any]) -> int | None:
        """The count the table's build wrote; None when it is not there (yet)."""
        try:
            return int((self.folder / f"{node['schema']}.{node['alias']}.count").read_text().strip())
        except (OSError, ValueError):
            return None

    def relay(self, manifest: Mapping[str, Any], events: Iterable[Any], held: list[Any]) -> Iterator[Any]:
        """dbt's events as it reports its nodes, each table's with its row count. An event whose
        count is not there is put in `held`, and so is every event after it, to keep their order
        (a check's result follows its asset's materialization): the caller counts those once dbt
        has exited and released the database."""
        for event in events:
            counted = None if held else _with_row_count(manifest, event, self.written)
            if counted is None:
                held.append(event)
            else:
                yield counted


class PodDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two things it does before every command, for this project
    about 5 s of each run's fixed cost and used by nothing here:

    - `dbt --version` in a subprocess, to learn the executable's version: the executable is this
      venv's own dbt, whose version is the dbt-core package's (pinned; tools/check_pins.py);
    - a dbt adapter opened in this process (profile, project and macros loaded), which only
      dagster-dbt's row counts and column metadata use: `pod_dbt_models` counts rows itself.
      (So `fetch_row_counts()` and `fetch_column_metadata()` would do nothing here: use
      DbtCliResource itself before reaching for them.)
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(dbt_version)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_resource() -> DbtCliResource:
    # The venv's dbt, found without the venv on PATH (`.venv/bin/pod run` does not activate it),
    # through `pod-dbt`: the run's warm dbt process when `pod run` started one (transform/warm_dbt.py).
    return PodDbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                             dbt_executable=str(Path(sys.executable).with_name("pod-dbt")))
