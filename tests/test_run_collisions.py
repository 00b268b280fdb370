"""Runs never collide on the working database: the UI's daemon and `pod run`, started together.

Tried as a new user would: `pod ui` is running (so the new-batch sensor is live), batches land,
the sensor's run starts, and at that moment `pod run` is started by hand. Both must end without a
lock error, the batches must be loaded once, and the marts must equal those of a single run.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from test_reliability import mart_contents
from test_ui_browser import free_port, wait_for_server

from pod_pipeline.app.runner import prepare_instance
from pod_pipeline.app.ui import start_ui, stop_ui
from pod_pipeline.settings import PROJECT_ROOT, SAMPLE_LANDING_DIR, Settings

pytestmark = pytest.mark.slow

POD = Path(sys.executable).with_name("pod")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _wait(condition, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.5)


def test_the_sensors_run_and_a_hand_started_run_take_turns(pod_env: Path, tmp_path: Path, sample_work_db: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    monkeypatch.setenv("POD_LANDING_DIR", str(landing))
    settings = Settings.from_env()
    instance = prepare_instance(settings)
    log_path = tmp_path / "dagster-dev.log"
    # The batches have landed as the daemon starts: the sensor's first tick asks for a run per batch
    # (landing them a moment later would only wait for its next tick, a minute on).
    for site in SAMPLE_LANDING_DIR.iterdir():
        if site.is_dir():
            shutil.copytree(site, landing / site.name)
    with log_path.open("w") as log:
        ui = start_ui(settings, port=(port := free_port()), output=log)
        try:
            wait_for_server(f"http://127.0.0.1:{port}", ui)

            def sensor_runs() -> list[dg.DagsterRun]:
                return instance.get_runs(filters=dg.RunsFilter(tags={"pod/trigger": "new_batch"}))

            _wait(lambda: any(r.status == dg.DagsterRunStatus.STARTED for r in sensor_runs()),
                  "the sensor's first run to start", 240)
            hand = subprocess.run([str(POD), "run"], cwd=PROJECT_ROOT, env=dict(os.environ),
                                  capture_output=True, text=True, timeout=900)
            _wait(lambda: sensor_runs() and all(r.status in FINISHED for r in sensor_runs())
                  and not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])),
                  "the sensor's runs to finish", 900)
        finally:
            stop_ui(ui)
    runs = instance.get_runs()
    events = "\n".join(str(record.event_log_entry.message or "") + str(record.event_log_entry.dagster_event)
                       for run in runs for record in instance.get_records_for_run(run.run_id, limit=100_000).records)
    assert "Conflicting lock" not in events + hand.stdout + hand.stderr + log_path.read_text()
    assert hand.returncode == 0, hand.stdout + hand.stderr
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
    sensor = sensor_runs()
    assert len(sensor) == 4  # one per batch: two sites, two batches each
    # `pod run` started while the sensor's first run held the database: it waited, naming that run.
    first = min(sensor, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
    assert f"waiting for the working database ({settings.warehouse_dir / 'pod_work.lock'}): run {first.run_id[:8]}" \
        in hand.stderr
    # Every batch and file was loaded exactly once, by the run that held the database first.
    with duckdb.connect(str(settings.work_db), read_only=True) as con:
        loads = con.execute("select site, export_id, file, count(*), count(distinct run_id) from audit.load_ledger "
                            "group by all having count(*) > 1 or count(distinct run_id) > 1").fetchall()
        loaders = con.execute("select distinct run_id from audit.load_ledger").fetchall()
    assert loads == [] and loaders == [(first.run_id,)]
    # The same zone, one plain run, in a data folder of its own.
    assert mart_contents(settings.work_db) == mart_contents(sample_work_db)
