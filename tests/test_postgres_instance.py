"""The Dagster instance in PostgreSQL (POD_DAGSTER_POSTGRES_URL), against a real throwaway server.

End to end (slow): one real run of the bundled sample, as `pod run` on the command line, with the
marts served from PostgreSQL too (POD_PUBLISH_POSTGRES_URL); then `pod ui` on the same settings,
asked over its GraphQL API for that run and for the ticks its daemon's sensor made.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml
from postgres_server import PostgresServer, duckdb_rows, free_port, postgres_rows, server_for_tests

from pod_pipeline.app.runner import INSTANCE_TEMPLATE, prepare_instance
from pod_pipeline.app.ui import start_ui, stop_ui
from pod_pipeline.delivery import publication
from pod_pipeline.settings import PROJECT_ROOT, SAMPLE_LANDING_DIR, Settings, SettingsError

PASSWORD = "instance-Pw-7c1e-never-on-disk"  # trust authentication ignores it; nothing may keep it
LOCATION = "pod_pipeline"  # [tool.dagster] code_location_name
SENSOR = "new_batch_sensor"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with server_for_tests() as server:
        server.execute("create role pod_pipeline login createrole", "create database dagster",
                       "create database pod owner pod_pipeline")
        yield server


def dagster_url(postgres: PostgresServer, database: str = "dagster") -> str:
    return postgres.url(database=database, password=PASSWORD).replace("postgresql://", "postgresql+psycopg2://")


def test_without_the_setting_the_instance_is_the_embedded_sqlite_one(pod_env: Path) -> None:
    instance = prepare_instance(Settings.from_env())
    assert (pod_env / "dagster_home" / "dagster.yaml").read_bytes() == INSTANCE_TEMPLATE.read_bytes()
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"


def test_with_the_setting_the_instance_stores_everything_in_postgresql(
    pod_env: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.execute("create database dagster_settings")
    monkeypatch.setenv("POD_DAGSTER_POSTGRES_URL", dagster_url(postgres, "dagster_settings"))
    instance = prepare_instance(Settings.from_env())
    written = (pod_env / "dagster_home" / "dagster.yaml").read_text()
    # The project's settings, with the storage (and only the storage) PostgreSQL's, read from the variable.
    assert yaml.safe_load(written) == yaml.safe_load(INSTANCE_TEMPLATE.read_text()) | {
        "storage": {"postgres": {"postgres_url": {"env": "POD_DAGSTER_POSTGRES_URL"}}}}
    assert PASSWORD not in written and str(postgres.port) not in written
    assert [type(storage).__name__ for storage in (
        instance.run_storage, instance.event_log_storage, instance.schedule_storage)] == [
        "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"]
    # Unset again, the instance is the embedded one again.
    monkeypatch.delenv("POD_DAGSTER_POSTGRES_URL")
    prepare_instance(Settings.from_env())
    assert (pod_env / "dagster_home" / "dagster.yaml").read_bytes() == INSTANCE_TEMPLATE.read_bytes()


def test_an_unreachable_instance_database_is_named_with_its_setting_not_its_password(
    pod_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_DAGSTER_POSTGRES_URL",
                       f"postgresql+psycopg2://pod:{PASSWORD}@127.0.0.1:{free_port()}/dagster")
    with pytest.raises(SettingsError, match="POD_DAGSTER_POSTGRES_URL=.*pod:\\*\\*\\*@.*refused") as refused:
        prepare_instance(Settings.from_env())
    assert PASSWORD not in str(refused.value)


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def wait_for(what: str, probe, seconds: float, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"pod ui exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(2)
    pytest.fail(f"{what} within {seconds} s; pod ui's log ends:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_pod_run_and_pod_ui_share_one_instance_in_postgresql(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POD_")} | {
        "POD_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "POD_LANDING_DIR": str(SAMPLE_LANDING_DIR),
        "POD_REFERENCE_DATE": "2026-11-25",
        "POD_DAGSTER_POSTGRES_URL": dagster_url(postgres),
        "POD_PUBLISH_POSTGRES_URL": postgres.url("pod_pipeline", "pod", PASSWORD),
    }
    run = subprocess.run([sys.executable, "-m", "pod_pipeline.app.cli", "run"], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout + run.stderr
    run_id = re.search(r"POD pipeline run (\S+): SUCCESS", run.stdout).group(1)
    assert f"postgresql: postgresql://pod_pipeline:***@127.0.0.1:{postgres.port}/pod, schema marts" in run.stdout

    # The instance is PostgreSQL's: the run and its events are there, no SQLite storage was made,
    # and the password is in no file the run wrote (dagster.yaml names the variable instead).
    home = data / "dagster_home"
    assert "postgres_url:\n      env: POD_DAGSTER_POSTGRES_URL" in (home / "dagster.yaml").read_text()
    assert not [p for p in home.rglob("*.db")], "SQLite storage was created under DAGSTER_HOME"
    assert PASSWORD not in run.stdout + run.stderr
    for path in (p for p in data.rglob("*") if p.is_file()):
        assert PASSWORD.encode() not in path.read_bytes(), path
    dagster_db = postgres.connect(database="dagster")
    dagster_db.autocommit = True
    with dagster_db.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("select count(*) from event_logs where run_id = %s", (run_id,))
        assert cur.fetchall()[0][0] > 100

    # The served marts are the published DuckDB file's, row for row, all of them.
    published = data / "warehouse" / "pod_marts.duckdb"
    with duckdb.connect(str(published), read_only=True) as con:
        tables = publication.mart_tables(con)
    assert len(tables) >= 15
    served = psycopg2.connect(postgres.url("pod_pipeline", "pod"))
    served.autocommit = True
    with served.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'marts' order by 1")
        assert [name for (name,) in cur.fetchall()] == tables
    for table in tables:
        assert postgres_rows(served, table) == duckdb_rows(published, table), table
    served.close()

    # `pod ui` on the same settings sees that run, and its daemon records sensor ticks there. Its
    # landing zone is empty, so the sensor skips rather than start runs of the sample's batches.
    empty = tmp_path / "empty_landing"
    empty.mkdir()
    for name, value in (env | {"POD_LANDING_DIR": str(empty)}).items():
        if name.startswith("POD_") or name == "DAGSTER_HOME":
            monkeypatch.setenv(name, value)
    log = tmp_path / "pod-ui.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = start_ui(Settings.from_env(), port=port, output=output)
        try:
            runs = wait_for("the UI did not list the run", lambda: graphql(url, f"""{{
                runsOrError(filter: {{runIds: ["{run_id}"]}}) {{ ... on Runs {{ results {{ runId status }} }} }}
            }}""")["runsOrError"]["results"], 240, process, log)
            assert runs == [{"runId": run_id, "status": "SUCCESS"}]
            ticks = wait_for("the UI showed no sensor tick", lambda: graphql(url, f"""{{
                sensorOrError(sensorSelector: {{repositoryLocationName: "{LOCATION}",
                    repositoryName: "__repository__", sensorName: "{SENSOR}"}}) {{
                  ... on Sensor {{ sensorState {{ ticks(limit: 5) {{ status skipReason }} }} }}
                }}
            }}""")["sensorOrError"]["sensorState"]["ticks"], 240, process, log)
        finally:
            stop_ui(process)
    assert ticks[0]["status"] == "SKIPPED" and "no new sealed batch" in ticks[0]["skipReason"]
    with dagster_db.cursor() as cur:
        cur.execute("select count(*) from job_ticks where job_origin_id in (select job_origin_id from jobs "
                    "where job_body like %s)", (f'%"{SENSOR}"%',))
        assert cur.fetchall()[0][0] >= len(ticks)
    dagster_db.close()
    # And any process given the same settings opens the same instance.
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
