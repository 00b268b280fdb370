"""Faults and the audit trail: a killed run, a failed blocking check, a repeated trigger, a broken
warehouse folder, an edited ledger.

What other tests already prove is not repeated here: a reader holding the published file while a
publication swaps it, and a failed blocking check on a stand-in asset leaving the publication
byte-identical (test_publication.py); a killed run's pool slot being freed (test_automation.py);
a delivery folder never rewritten and its manifest verifying against its files (test_delivery.py);
a re-sealed changed batch refused and a ledger update detected (test_ingest.py).
"""

import json
import logging
import os
import re
import resource
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import scenario
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import SensorInstigatorData
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration
from landing_builder import batch, ingest, participant, redcap

from pod_devtools.synth import generate
from pod_pipeline.app.runner import prepare_instance
from pod_pipeline.delivery import deliveries
from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.batch_manifest import MANIFEST, seal_batch, sha256_file
from pod_pipeline.ingest.checks import conservation_failures
from pod_pipeline.settings import Settings

E1, E2 = "20250101T060000Z", "20250301T060000Z"
# Run timestamps and ids differ between two runs of the same data; everything else must not.
RUN_COLUMNS = {"loaded_at", "quarantined_at", "published_at", "run_id", "dagster_run_id"}


def mart_contents(database: Path) -> dict[str, list[tuple]]:
    """Every table of schema marts as a sorted list of rows, run timestamps and ids left out.

    Floating-point values are compared to 12 significant digits: the outcome summary's means and
    SDs come from DuckDB's parallel float aggregation, whose last bits depend on row order (see
    docs/data-protection.md).
    """
    def cell(value: object) -> object:
        return float(f"{value:.12g}") if isinstance(value, float) else value

    with duckdb.connect(str(database), read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "order by 1").fetchall()]
        found = {}
        for table in tables:
            columns = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'marts' "
                "and table_name = $t order by ordinal_position", {"t": table}).fetchall()
                if c not in RUN_COLUMNS]
            listed = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'select {listed} from marts."{table}"').fetchall()
            found[table] = sorted((tuple(cell(v) for v in row) for row in rows), key=repr)
    return found


# 1. Faults -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_killed_during_dbt_leaves_publication_and_deliveries_byte_identical(story) -> None:
    killed = story.killed
    assert killed["returncode"] == -9
    assert killed["tables_built_before_kill"] >= 3, "dbt had written to the working database"
    assert killed["status"] == dg.DagsterRunStatus.STARTED, "nothing could report the kill"
    events = killed["events"]
    assert ("STEP_START", scenario.DBT_STEP) in events, "the kill must land inside the dbt step"
    ended = {("STEP_SUCCESS", scenario.DBT_STEP), ("STEP_FAILURE", scenario.DBT_STEP)}
    assert not ended & set(events)
    assert ("STEP_START", "delivery__published_marts") not in events
    assert story.after_kill == story.before_kill
    assert not list(story.warehouse.glob(".pod_marts.staged-*"))
    assert deliveries.verify_delivery(story.deliveries[0]) == []


@pytest.mark.slow
def test_the_killed_run_leaves_a_recoverable_warehouse_and_is_marked_failed(story) -> None:
    assert story.recovered["ledger_problems"] == []
    assert story.recovered["conservation"] == {file: [] for file in story.recovered["conservation"]}
    assert story.recovered["batches_loaded"] == 4, "the killed run had loaded batch 2"
    assert story.second.returncode == 0, story.second.stdout + story.second.stderr
    assert (f"run {story.killed['run_id']} was interrupted (its process is gone): marked failed"
            in story.second.stderr)
    assert story.killed["status_after_next_run"] == dg.DagsterRunStatus.FAILURE
    assert "SUCCESS" in story.second.stdout.splitlines()[0]
    # The killed build left the partitioned models part-built: the next one rebuilt every site.
    plans = [line.split(" - pod_dbt_models - ", 1)[1]
             for log in sorted((story.warehouse / "logs").glob("run-*.log"))
             for line in log.read_text(encoding="utf-8").splitlines() if " - pod_dbt_models - dbt rebuilds" in line]
    assert plans[0] == "dbt rebuilds every site (the warehouse's first build)"
    assert plans[-1] == "dbt rebuilds every site (the last build did not finish, or built a selection of models)"


@pytest.mark.slow
def test_the_next_run_gives_what_an_uninterrupted_run_gives(story) -> None:
    assert story.clean_run.success, story.clean_run.errors
    resumed = mart_contents(story.warehouse / "pod_marts.duckdb")
    clean = mart_contents(story.clean / "warehouse" / "pod_marts.duckdb")
    assert all(resumed[t] for t in ("participants", "outcome_scores", "carer_timepoints",
                                    "outcome_summary", "cost_effectiveness_summary"))
    assert {t: len(r) for t, r in resumed.items()} == {t: len(r) for t, r in clean.items()}
    for table in clean:
        assert resumed[table] == clean[table], table
    assert story.after_kill != scenario.digests(story.warehouse), "the next run published anew"


@pytest.mark.slow
def test_a_run_failing_a_blocking_check_publishes_nothing(story) -> None:
    summary = story.tampered["summary"]
    assert not summary.success
    assert ("raw/load_ledger", "ledger_hash_chain_intact", False, "ERROR") in summary.checks
    assert "delivery__published_marts" in summary.skipped_steps
    assert story.tampered["after"] == story.tampered["before"]
    before, after = story.tampered["publications"]
    assert after == before


def test_two_triggers_for_the_same_batch_start_one_run(
    pod_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor's run key holds even when its cursor is lost: the daemon submits no second run.

    Dagster's own sensor daemon code evaluates the real code location's sensor (private APIs: the
    daemon has no public entry point for one iteration).
    """
    landing = tmp_path / "landing"
    monkeypatch.setenv("POD_LANDING_DIR", str(landing))
    batch(landing, "kmpt", E1, register=[participant("KMPT-0001")])
    batch(landing, "slam", E2, register=[participant("SLAM-0001")])
    instance = prepare_instance(Settings.from_env())  # the project's dagster.yaml: runs queue
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="pod_pipeline.definitions", attribute="defs"),
        location_name="pod_pipeline")
    ticks = []
    now = time.time()
    target = InProcessWorkspaceLoadTarget(origin)
    with create_test_daemon_workspace_context(target, instance) as ctx:
        for tick in range(2):
            with freeze_time(now + 120 * tick):  # past the sensor's minimum interval
                list(execute_sensor_iteration(ctx, logging.getLogger("sensor"), None, None) or [])
            (state,) = [s for s in instance.all_instigator_state() if s.name == "new_batch_sensor"]
            ticks.append(instance.get_ticks(state.instigator_origin_id, state.selector_id)[0])
            # The cursor is lost (a reset sensor, a restored instance): both batches look new again.
            data = state.instigator_data
            instance.update_instigator_state(state.with_data(SensorInstigatorData(
                last_tick_timestamp=data.last_tick_timestamp, last_run_key=None,
                min_interval=data.min_interval, cursor=None,
                last_sensor_start_timestamp=data.last_sensor_start_timestamp,
                sensor_type=data.sensor_type)))
    first, second = ticks
    assert sorted(first.run_keys) == sorted(second.run_keys) and len(first.run_keys) == 2
    assert len(first.run_ids) == 2 and second.run_ids == []
    runs = instance.get_runs()
    assert sorted(r.tags["pod/batch"] for r in runs) == [f"kmpt/{E1}", f"slam/{E2}"]
    assert {r.job_name for r in runs} == {"refresh"}


def run_pod(env: dict[str, str], limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([str(scenario.POD), "run"], env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit if limit_bytes else None)


def storage_env(tmp_path: Path, **paths: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POD_")}
    env |= {"POD_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "POD_REFERENCE_DATE": scenario.REFERENCE_DATE}
    return env | {name: str(path) for name, path in paths.items()}


@pytest.mark.parametrize("case", ["warehouse_under_a_file", "dagster_home_under_a_file",
                                  "logs_is_a_file"])
def test_an_unwritable_warehouse_is_named_without_a_traceback(tmp_path: Path, case: str) -> None:
    """As root, chmod blocks nothing; a path under a regular file cannot be created by anyone."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    warehouse = tmp_path / "warehouse"
    if case == "logs_is_a_file":
        warehouse.mkdir()
        blocker = blocker.rename(warehouse / "logs")
    variable, path, named, reason = {
        "warehouse_under_a_file": ("POD_WAREHOUSE_DIR", blocker / "w", blocker / "w",
                                   "Not a directory"),
        "dagster_home_under_a_file": ("DAGSTER_HOME", blocker / "d", blocker / "d",
                                      "Not a directory"),
        "logs_is_a_file": ("POD_WAREHOUSE_DIR", warehouse, blocker / "run-", "File exists"),
    }[case]
    result = run_pod(storage_env(tmp_path, **{variable: path}))
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr.startswith("pod run: ")
    assert str(named) in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["database_is_a_folder", "disk_full", "disk_full_during_dbt"])
def test_a_warehouse_that_fails_mid_run_is_named_without_a_traceback(tmp_path: Path,
                                                                     case: str) -> None:
    """A working database that cannot be opened; a disk that fills up while ingestion writes, or
    while dbt does.

    The full disk is a file-size limit on the run (RLIMIT_FSIZE, no root needed): past 3 MB
    every write fails as on a full disk (EFBIG instead of ENOSPC). Ingesting the sample writes
    about 2 MB, so dbt is the first to pass 3 MB (the working database's write-ahead log, then its
    own log and the run's); for ingestion to fail first the zone is a larger synthetic one (400
    participants). The step that failed is named with the cause, as dbt reported it.
    """
    warehouse = tmp_path / "warehouse"
    paths = {"POD_WAREHOUSE_DIR": warehouse}
    if case == "database_is_a_folder":
        (warehouse / "pod_work.duckdb").mkdir(parents=True)
    elif case == "disk_full":
        paths["POD_LANDING_DIR"] = tmp_path / "landing"
        generate(paths["POD_LANDING_DIR"], sites=1, participants_per_site=400, seed=14, batches=1,
                 messy=False, preset=None)
    result = run_pod(storage_env(tmp_path, **paths),
                     limit_bytes=None if case == "database_is_a_folder" else 3_000_000)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    failed = output.split("Failed steps:\n", 1)[1].splitlines()[0]
    assert str(warehouse / "pod_work.duckdb") in failed, failed
    assert ("Is a directory" if case == "database_is_a_folder" else "File too large") in failed
    if case == "disk_full_during_dbt":
        # dbt builds two models at a time: the one writing when the disk filled, and the other if
        # it was writing too, each named with its cause.
        assert re.match(r"  pod_dbt_models: dbt build failed at (1 node|2 nodes): model \w+: .*File too large",
                        failed), failed
        [log] = (warehouse / "logs").glob("run-*.log")
        if log.stat().st_size == 3_000_000:  # the run's log reached the limit too
            assert f"The log of this run stops short: writing {log} failed (File too large)" in output
        else:
            assert f"Full log of this run: {log}" in output
    assert re.search(r"^\d+ downstream steps skipped$", output, flags=re.MULTILINE), output
    assert "delivery__published_marts" not in output and "Published marts" not in output
    assert "This run published nothing, and nothing has been published yet." in output
    assert not (warehouse / "pod_marts.duckdb").exists()


# 5. Audit trail -------------------------------------------------------------------------------

def test_the_ledger_only_grows_whatever_the_pipeline_is_asked_to_do(tmp_path: Path) -> None:
    root, db = tmp_path / "lz", tmp_path / "w.duckdb"
    first = batch(root, "kmpt", E1, register=[participant("KMPT-0001")],
                  redcap_rows=[redcap("KMPT-0001", wemwbs_01="2")])
    history: list[list[tuple]] = []

    def step() -> None:
        con = ingest(root, db)
        assert ledger.verify(con) == []
        history.append(con.execute("select * from audit.load_ledger order by entry_id").fetchall())
        con.close()

    step()
    step()  # re-running
    assert history[1] == history[0]
    register = first / "register.csv"
    register.write_text(register.read_text().replace("1980", "1979"))
    step()  # the loaded batch re-delivered with changed content, manifest as it was
    assert history[2] == history[1]
    seal_batch(first)
    step()  # ... and re-sealed
    assert history[3][-1][1:6] == ("kmpt", E1, MANIFEST, sha256_file(first / MANIFEST), "rejected")
    batch(root, "kmpt", E2, register=[participant("KMPT-0001"), participant("KMPT-0002")])
    step()  # a new batch
    for before, after in zip(history, history[1:], strict=False):
        assert after[: len(before)] == before, "an entry was changed or removed"
    assert len(history[-1]) > len(history[0])


@pytest.mark.parametrize("tamper", [
    "update audit.load_ledger set rows_quarantined = rows_quarantined + 1 where entry_id = 3",
    "update audit.load_ledger set sha256 = repeat('0', 64) where entry_id = 2",
    "delete from audit.load_ledger where entry_id = 2",
    "update audit.load_ledger set status = 'rejected' where entry_id = (select max(entry_id) "
    "from audit.load_ledger)",
], ids=["count", "checksum", "removed", "status"])
def test_the_hash_chain_flags_an_edit_behind_the_pipelines_back(tmp_path: Path,
                                                                tamper: str) -> None:
    root = tmp_path / "lz"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001")], redcap_rows=[redcap("KMPT-0001")])
    con = ingest(root, tmp_path / "w.duckdb")
    assert ledger.verify(con) == []
    con.execute(tamper)
    assert ledger.verify(con) != []


def test_removing_the_newest_entries_is_caught_by_conservation(tmp_path: Path) -> None:
    """A chain cannot tell a truncated tail from a shorter history; the re-load it causes can."""
    root = tmp_path / "lz"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001")], redcap_rows=[redcap("KMPT-0001")])
    con = ingest(root, tmp_path / "w.duckdb")
    con.execute("delete from audit.load_ledger where entry_id = (select max(entry_id) "
                "from audit.load_ledger)")
    assert ledger.verify(con) == []
    con.close()
    con = ingest(root, tmp_path / "w.duckdb")
    assert conservation_failures(con, "redcap_records.csv") != []


@pytest.mark.slow
def test_the_full_runs_and_a_redelivery_only_append_to_the_ledger(story) -> None:
    first, second, redelivered = (story.ledger_after[k] for k in ("first", "second", "redelivery"))
    assert second[: len(first)] == first and len(second) > len(first)
    assert redelivered == second
    assert story.recovered["ledger_problems"] == []


@pytest.mark.slow
def test_every_delivery_lists_the_exact_landing_batches_and_their_checksums(story) -> None:
    expected = {1: story.batches[1], 2: story.batches[1] + story.batches[2]}
    assert story.redelivery.success
    assert len(story.deliveries) == 2
    for number, folder in enumerate(story.deliveries, start=1):
        assert deliveries.verify_delivery(folder) == []
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = {(b["site"], b["export_id"]): b for b in manifest["landing_batches"]}
        assert sorted(listed) == sorted((p.parent.name, p.name) for p in expected[number])
        for (site, export_id), entry in listed.items():
            landed = story.landing / site / export_id
            assert entry["manifest_sha256"] == sha256_file(landed / MANIFEST)
            sealed = json.loads((landed / MANIFEST).read_text())["files"]
            assert set(entry["files"]) == set(sealed)
            for name, file in entry["files"].items():
                assert file["sha256"] == sealed[name] == sha256_file(landed / name)
        if number == 1:
            continue
        # Every delivered participant traces to a register file listed with its checksum.
        with duckdb.connect(str(story.warehouse / "pod_work.duckdb"), read_only=True) as con:
            lineage = dict(con.execute(
                "select study_id, source_file from raw.register").fetchall())
        delivered = duckdb.connect().execute(
            f"select participant_id from '{folder / 'participants.parquet'}'").fetchall()
        for (participant_id,) in delivered:
            site, export_id, file = lineage[participant_id].split("/")
            assert file in listed[(site, export_id)]["files"]
