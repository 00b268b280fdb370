"""Automation: one run per new sealed batch, schedules, freshness, recovery from killed runs."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pod_pipeline import automation
from pod_pipeline.analysis import analysis_assets
from pod_pipeline.app.recovery import _process_alive, recover_interrupted_runs
from pod_pipeline.app.runner import prepare_instance
from pod_pipeline.app.ui import supervise
from pod_pipeline.delivery import definitions as delivery_definitions
from pod_pipeline.delivery.assets import DELIVERY_KEY, PUBLISHED_KEY, delivery_assets
from pod_pipeline.delivery.jobs import weekly_delivery_job
from pod_pipeline.ingest import definitions as ingest_definitions
from pod_pipeline.ingest.assets import LANDING_KEY, landing_batches
from pod_pipeline.ingest.batch_manifest import seal_batch
from pod_pipeline.resources import Warehouse
from pod_pipeline.settings import Settings
from pod_pipeline.transform.assets import dbt_resource, pod_dbt_models

LONDON = ZoneInfo("Europe/London")


def code_location() -> dg.Definitions:
    """Ingestion, delivery and automation as definitions.py gathers them (without dbt, analysis)."""
    return dg.Definitions.merge(ingest_definitions.defs, delivery_definitions.defs, automation.defs,
                                dg.Definitions(resources={"warehouse": Warehouse()}))


def make_batch(landing: Path, site: str, export_id: str, sealed: bool) -> Path:
    batch = landing / site / export_id
    batch.mkdir(parents=True)
    (batch / "register.csv").write_text(f"study_id\n{site.upper()}-001\n")
    if sealed:
        seal_batch(batch)
    return batch


def test_sensor_requests_exactly_one_run_per_new_sealed_batch(
    pod_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    monkeypatch.setenv("POD_LANDING_DIR", str(landing))
    make_batch(landing, "kmpt", "20260101T060000Z", sealed=True)
    make_batch(landing, "slam", "20260102T060000Z", sealed=True)
    unsealed = make_batch(landing, "kmpt", "20260201T060000Z", sealed=False)
    defs = code_location()
    sensor = defs.resolve_sensor_def("new_batch_sensor")
    cursor: str | None = None
    requested: list[str] = []

    def tick() -> list[str]:
        nonlocal cursor
        # The warehouse resource holds a run's lock from setup to teardown, so Dagster opens it as
        # a context manager (for a sensor it takes no lock: there is no run).
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                     resources={"warehouse": Warehouse()}) as context:
            result = sensor.evaluate_tick(context)
        assert all(r.run_key and r.job_name in (None, "refresh") for r in result.run_requests or [])
        cursor = result.cursor or cursor
        batches = [r.tags["pod/batch"] for r in result.run_requests or []]
        requested.extend(batches)
        return batches

    with dg.instance_for_test() as instance:
        assert sorted(tick()) == ["kmpt/20260101T060000Z", "slam/20260102T060000Z"]
        assert [tick(), tick(), tick()] == [[], [], []]  # nothing new, however often it ticks
        seal_batch(unsealed)
        assert tick() == ["kmpt/20260201T060000Z"]
        assert tick() == []
        make_batch(
            landing, "kmpt", "20251201T060000Z", sealed=True
        )  # late: sorts before loaded ones
        make_batch(landing, "slam", "20260301T060000Z", sealed=False)
        assert tick() == ["kmpt/20251201T060000Z"]
        assert tick() == []
    assert len(requested) == len(set(requested)) == 4


def test_refresh_does_not_deliver_and_weekly_delivery_does() -> None:
    graph = code_location().resolve_asset_graph()
    refresh = automation.refresh_job.selection.resolve(graph)
    weekly = weekly_delivery_job.selection.resolve(graph)
    assert PUBLISHED_KEY in refresh and LANDING_KEY in refresh and DELIVERY_KEY not in refresh
    assert weekly == refresh | {DELIVERY_KEY}


@pytest.mark.parametrize(
    ("name", "cron", "when"),
    [
        ("weekly_delivery", "0 6 * * 1", dt.datetime(2026, 6, 1, 6, 0, tzinfo=LONDON)),  # Monday, summer time
        ("daily_refresh", "0 5 * * *", dt.datetime(2026, 12, 3, 5, 0, tzinfo=LONDON)),
    ],
)
def test_the_weekly_delivery_forces_a_full_rebuild_and_the_daily_refresh_does_not(
        name: str, cron: str, when: dt.datetime) -> None:
    schedule = code_location().resolve_schedule_def(name)
    assert (schedule.cron_schedule, schedule.execution_timezone) == (cron, "Europe/London")
    assert schedule.job_name == ("weekly_delivery" if name == "weekly_delivery" else "refresh")
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
    (request,) = result.run_requests
    if name == "daily_refresh":
        # What changed, and the models that depend on the new reference date (transform/partitions.py).
        assert request.run_config == {} and request.tags["pod/trigger"] == "daily_refresh"
        return
    assert request.run_config == {"ops": {"ingest__landing_batches": {"config": {"force": True}},
                                          "pod_dbt_models": {"config": {"full_refresh": True}},
                                          # and the cohort-level analyses (analysis/memo.py)
                                          "marts__outcome_summary": {"config": {"recompute": True}},
                                          "cost_effectiveness": {"config": {"recompute": True}},
                                          "relapse_summary": {"config": {"recompute": True}}}}


def test_freshness_policies_cover_marts_publication_and_delivery() -> None:
    defs = automation.apply_freshness(
        dg.Definitions(
            assets=[pod_dbt_models, *analysis_assets, landing_batches, *delivery_assets],
            resources={"warehouse": Warehouse(), "dbt": dbt_resource()},
        )
    )
    policies = {spec.key: spec.freshness_policy for spec in defs.resolve_all_asset_specs()}
    marts = [key for key in policies if key.path[0] == "marts"]
    assert (
        dg.AssetKey(["marts", "participants"]) in marts
        and dg.AssetKey(["marts", "outcome_summary"]) in marts
    )
    assert all(policies[key] == automation.MARTS_FRESHNESS for key in [*marts, PUBLISHED_KEY])
    assert policies[DELIVERY_KEY] == automation.DELIVERY_FRESHNESS
    assert (
        policies[LANDING_KEY] is None
        and policies[dg.AssetKey(["staging", "stg_register__participants"])] is None
    )


# A run in the duckdb_writer pool that announces itself and then waits to be killed.
KILLED_RUN = """
import sys, time, dagster as dg
@dg.asset(pool="duckdb_writer")
def slow_writer():
    open(sys.argv[1], "w").close()
    time.sleep(120)
dg.materialize([slow_writer], instance=dg.DagsterInstance.get())
"""


@dg.asset(pool="duckdb_writer")
def quick_writer() -> None:
    """A step that needs the duckdb_writer slot."""


def test_a_killed_run_is_recovered_and_does_not_block_the_next(
    pod_env: Path, tmp_path: Path
) -> None:
    instance = prepare_instance(Settings.from_env())  # the project's dagster.yaml: pool limit 1
    started = tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(started)], env=dict(os.environ)
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert worker.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    (killed,) = instance.get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED
    assert instance.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots

    # While `pod ui` serves, it fails such runs every minute (here every half second, while a
    # stand-in for dagster dev runs for two).
    said: list[str] = []
    assert supervise(subprocess.Popen(["sleep", "2"]), instance, every=0.5, report=said.append) == 0
    assert said == [f"pod ui: run {killed.run_id} was interrupted (its process is gone): marked failed"]
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots
    began = time.monotonic()
    assert dg.materialize([quick_writer], instance=instance).success
    assert time.monotonic() - began < 15
    assert recover_interrupted_runs(instance) == []


def test_only_gone_processes_count_as_interrupted() -> None:
    assert _process_alive(os.getpid(), since=time.time())
    assert not _process_alive(os.getpid(), since=time.time() - 10 * 365 * 86400)  # a reused pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _process_alive(child.pid, since=time.time())
