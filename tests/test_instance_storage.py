"""The instance's event log storage (app/instance_storage.py) asks SQLite whether a table exists
once, not before every asset check's event, and still answers as Dagster's own storage does."""

from pathlib import Path

import pytest
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
