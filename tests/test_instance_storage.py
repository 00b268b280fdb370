"""The instance's event log storage (app/instance_storage.py) asks SQLite whether a table exists
once, not before every asset check's event, stores a batch of events in one transaction per file,
and still answers and stores as Dagster's own storage does."""

import logging
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from pod_pipeline.app.instance_storage import WAL_AUTOCHECKPOINT_PAGES, PooledSqliteEventLogStorage


def test_a_table_present_is_asked_of_sqlite_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    dagsters = SqliteEventLogStorage(str(tmp_path))
    asked: list[str] = []
    original = SqliteEventLogStorage.has_table

    def counting(self: SqliteEventLogStorage, table_name: str) -> bool:
        asked.append(table_name)
        return original(self, table_name)

    monkeypatch.setattr(SqliteEventLogStorage, "has_table", counting)
    for _ in range(3):
        assert storage.has_table("asset_check_executions") is True
        assert storage.has_table("no_such_table") is False
    assert asked == ["asset_check_executions", *["no_such_table"] * 3]
    # The same answers as Dagster's storage gives for the same files.
    assert dagsters.has_table("asset_check_executions") is True
    assert dagsters.has_table("no_such_table") is False
    storage.dispose()
    dagsters.dispose()


def test_event_log_connections_sync_at_checkpoints_not_at_each_commit(tmp_path: Path) -> None:
    # synchronous=NORMAL is safe from corruption in WAL mode only: both must hold, on every shard.
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    for shard in ("index", "a-run-id"):
        with storage._connect(shard) as conn:
            settings = [conn.exec_driver_sql(f"pragma {name}").scalar()
                        for name in ("journal_mode", "synchronous", "wal_autocheckpoint")]
        assert settings == ["wal", 1, WAL_AUTOCHECKPOINT_PAGES], shard
    storage.dispose()


RUN_ID = "0b5a1f2e-run"


def _planned(asset: str, check: str | None, at: float) -> EventLogEntry:
    """An event a run stores before it starts: an asset's materialization or a check's evaluation, planned."""
    key = dg.AssetKey(["marts", asset])
    if check is None:
        event = DagsterEvent.build_asset_materialization_planned_event(
            "refresh", "pod_dbt_models", AssetMaterializationPlannedData(key, partition=None, partitions_subset=None))
    else:
        event = DagsterEvent(event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
                             job_name="refresh", message=f"refresh intends to execute asset check {check}",
                             event_specific_data=AssetCheckEvaluationPlanned(asset_key=key, check_name=check,
                                                                             partitions_subset=None),
                             step_key="pod_dbt_models")
    return EventLogEntry(user_message="", level=logging.DEBUG, job_name="refresh", run_id=RUN_ID, error_info=None,
                         timestamp=at, step_key="pod_dbt_models", dagster_event=event)


PLANNED = [_planned(asset, check, 1_800_000_000.0 + i) for i, (asset, check) in enumerate(
    [("participants", None), ("participants", "unique_participants_participant_id"),
     ("outcome_scores", None), ("outcome_scores", "not_null_outcome_scores"),
     ("outcome_scores", "accepted_codes_outcome_scores")])]

# The rows the events leave behind, in each file, by table (ids included: the same order).
STORED = {RUN_ID: ["select id, run_id, event, dagster_event_type, timestamp, step_key, asset_key from event_logs"],
          "index": ["select id, run_id, event, dagster_event_type, timestamp, step_key, asset_key from event_logs",
                    "select asset_key, last_materialization, last_run_id, asset_details, wipe_timestamp, "
                    "cached_status_data from asset_keys order by asset_key",
                    "select asset_key, check_name, partition, run_id, execution_status, evaluation_event, "
                    "evaluation_event_timestamp, evaluation_event_storage_id from asset_check_executions"]}


def _stored(folder: Path) -> dict[str, list[list[tuple]]]:
    found = {}
    for shard, queries in STORED.items():
        with sqlite3.connect(folder / f"{shard}.db") as con:
            found[shard] = [con.execute(query).fetchall() for query in queries]
    return found


def test_a_batch_is_stored_as_dagster_stores_each_event(tmp_path: Path) -> None:
    ours, dagsters = tmp_path / "ours", tmp_path / "dagsters"
    storage = PooledSqliteEventLogStorage(str(ours))
    storage.store_event_batch(PLANNED)
    storage.dispose()
    theirs = SqliteEventLogStorage(str(dagsters))
    for event in PLANNED:
        theirs.store_event(event)
    theirs.dispose()
    assert _stored(ours) == _stored(dagsters)
    assert [len(rows) for rows in _stored(ours)["index"]] == [5, 2, 3]


def test_a_batch_is_kept_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One transaction per file: an event that cannot be stored leaves nothing of its batch behind
    # (Dagster then stores the events one by one), and the storage goes on working.
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    original = SqliteEventLogStorage.store_event
    stored: list[EventLogEntry] = []

    def failing_at_the_fourth(self: SqliteEventLogStorage, event: EventLogEntry) -> None:
        if len(stored) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        original(self, event)
        stored.append(event)

    monkeypatch.setattr(SqliteEventLogStorage, "store_event", failing_at_the_fourth)
    with pytest.raises(sqlite3.OperationalError):
        storage.store_event_batch(PLANNED)
    assert len(stored) == 3
    assert [len(rows) for shard in _stored(tmp_path).values() for rows in shard] == [0, 0, 0, 0]
    monkeypatch.setattr(SqliteEventLogStorage, "store_event", original)
    for event in PLANNED:
        storage.store_event(event)
    assert [len(rows) for rows in _stored(tmp_path)["index"]] == [5, 2, 3]
    storage.dispose()


def test_the_instance_pod_prepares_stores_a_runs_planned_events_in_one_batch(
        pod_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pod_pipeline.app.runner import prepare_instance
    from pod_pipeline.settings import Settings

    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    instance = prepare_instance(Settings.from_env())
    batches: list[list[str]] = []
    original = PooledSqliteEventLogStorage.store_event_batch

    def recording(self: PooledSqliteEventLogStorage, events: list[EventLogEntry]) -> None:
        batches.append([event.get_dagster_event().event_type_value for event in events])
        original(self, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", recording)

    @dg.asset(check_specs=[dg.AssetCheckSpec("has_rows", asset="participants")])
    def participants() -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])

    @dg.asset(deps=[participants])
    def outcome_scores() -> None:
        return None

    assert dg.materialize([participants, outcome_scores], instance=instance).success
    assert batches == [["ASSET_MATERIALIZATION_PLANNED"] * 2 + ["ASSET_CHECK_EVALUATION_PLANNED"]]
