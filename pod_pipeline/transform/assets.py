"""The dbt project as Dagster assets: seeds, staging, intermediate and marts, with dbt tests as checks."""

import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from dbt.cli.main import dbtRunner
from dbt.version import __version__ as dbt_version
from packaging import version

from pod_pipeline.resources import Warehouse
from pod_pipeline.settings import DBT_PROJECT_DIR

TARGET_DIR = DBT_PROJECT_DIR / "target"
DBT_MANIFEST = TARGET_DIR / "manifest.json"
# A file under these changes what `dbt parse` writes to the manifest.
PROJECT_INPUTS = ("models", "seeds", "macros", "tests", "dbt_project.yml", "profiles.yml")


def _newest_input() -> float:
    newest = 0.0
    for name in PROJECT_INPUTS:
        path = DBT_PROJECT_DIR / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def ensure_dbt_manifest() -> Path:
    """Build dbt's manifest when it is missing or older than the project (prepare_if_dev does
    nothing outside `dagster dev`, and a fresh clone has no target folder).

    Checked and built under a file lock, so processes loading the definitions at once (the test
    suite's workers, the UI's code server beside `pod run`) parse once; dbt writes into a folder of
    its own and the manifest is moved into place whole, so no process reads one half written."""
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    with (TARGET_DIR / ".manifest.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if DBT_MANIFEST.exists() and DBT_MANIFEST.stat().st_mtime >= _newest_input():
            return DBT_MANIFEST
        os.environ.setdefault("POD_WORK_DB", str(TARGET_DIR / "parse_only.duckdb"))
        staging = Path(tempfile.mkdtemp(prefix=".parse-", dir=TARGET_DIR))
        try:
            state = TARGET_DIR / "partial_parse.msgpack"
            if state.exists():
                shutil.copy2(state, staging / state.name)
            result = dbtRunner().invoke(["parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                                         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(staging)])
            if not result.success:
                raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}: {result.exception}")
            # The manifest last: its time is what says the parse is current.
            for name in (state.name, DBT_MANIFEST.name):
                if (staging / name).exists():
                    os.replace(staging / name, TARGET_DIR / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return DBT_MANIFEST


class PodDbtTranslator(DagsterDbtTranslator):
    """Asset keys [schema, name] (sources keep the keys of the ingestion assets); groups by layer."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "dbt_seeds"
        fqn = dbt_resource_props.get("fqn", [])
        layer = fqn[1] if len(fqn) > 2 else "marts"
        return f"dbt_{layer}"


translator = PodDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=ensure_dbt_manifest(), dagster_dbt_translator=translator, pool="duckdb_writer")
def pod_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                   warehouse: Warehouse) -> Iterator[Any]:
    """Seeds, staging, intermediate and marts built and tested by `dbt build` (grains in the dbt docs)."""
    settings = warehouse.settings
    os.environ.update(settings.dbt_env())
    # Unit tests check the SQL's logic, not the data: the test suite runs them (tests/test_dbt_build.py).
    # dbt's target folder lives in the warehouse, one per warehouse rather than one per run: its
    # partial_parse.msgpack then matches the next run's profile (the working database's path is
    # part of it), so a run whose settings are unchanged skips dbt's full parse.
    invocation = dbt.cli(["build", "--vars", json.dumps(settings.dbt_vars()),
                          "--exclude-resource-type", "unit_test"], context=context,
                         target_path=settings.dbt_target_dir)
    # dbt holds the database until it exits: gather its events, then count rows with our own
    # connection (dagster-dbt's row counts leave an adapter connection open in this process).
    events, failure = [], None
    try:
        events.extend(invocation.stream())
    except DagsterDbtCliRuntimeError as exc:
        failure = exc
    with warehouse.connect() as con:
        yield from (_with_row_count(con, invocation.manifest, event) for event in events)
    if failure is not None:
        raise failure


def _with_row_count(con: duckdb.DuckDBPyConnection, manifest: Mapping[str, Any], event: Any) -> Any:
    if not isinstance(event, dg.Output | dg.AssetMaterialization) or "unique_id" not in event.metadata:
        return event
    node = manifest["nodes"].get(event.metadata["unique_id"].value)
    if node is None or node["config"].get("materialized") == "view":
        return event
    # The manifest's relation names carry the catalog of the database dbt parsed against; the
    # schema and alias are what identify the table in ours.
    count = con.execute(f'select count(*) from "{node["schema"]}"."{node["alias"]}"').fetchall()[0][0]
    return event.with_metadata({**event.metadata, "dagster/row_count": count})


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
    # The venv's dbt, found without the venv on PATH (`.venv/bin/pod run` does not activate it).
    return PodDbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                             dbt_executable=str(Path(sys.executable).with_name("dbt")))
