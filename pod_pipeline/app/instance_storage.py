"""The Dagster instance's SQLite storage, with the event log's database connections kept open.

Dagster's own `SqliteEventLogStorage` creates a new SQLAlchemy engine and SQLite connection for
every event it stores, and closing the last connection to a WAL database checkpoints it. A run of
the bundled sample stores about 1,500 events (each dbt test is an asset check, planned and then
evaluated), and storing them that way took 23 s of a 100 s run on the build machine; with one
engine per database file, whose pool keeps a connection open, the same events take 3.7 s. What is
stored, and where, is unchanged: the same files under `$DAGSTER_HOME/history` (the default layout),
so an instance written by either storage is read by the other.

Used by `pod_pipeline/app/dagster.yaml` (`storage: custom:`), so `pod run`, `pod ui` (webserver and
daemon) and the run workers all store events this way. The webserver and daemon live for weeks and
each run has a database of its own, so engines are kept for the few newest runs only.
"""

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as db
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy.engine import Connection, Engine

# Engines (each holding one open connection) kept per process: the cross-run index and the newest runs.
KEEP_ENGINES = 8


# A connection that stays open no longer checkpoints the write-ahead log on close: checkpoint it
# every 100 pages (400 KB) instead of SQLite's 1,000, so the log stays as small as it was (on a
# nearly full disk the instance must not be what fails first).
WAL_AUTOCHECKPOINT_PAGES = 100


def _tuned(dbapi_connection: Any, _record: Any) -> None:
    """Each event-log connection: write-ahead logging, a small log, and no fsync at each commit.

    Dagster means every event-log file to be in WAL mode, but sets it inside a transaction when
    it creates a run's file, where SQLite ignores it: run files kept the rollback journal, with
    three fsyncs a commit. Set here, before any transaction, it holds. With synchronous=NORMAL in
    WAL mode SQLite syncs the log at checkpoints rather than at each commit: a power cut or OS
    crash can lose the last events stored, never corrupt the database, and a crash of the
    process loses nothing. A run stores about 1,000 events in 3 or more commits each, and while
    dbt writes the warehouse each fsync waits on the disk: commits took 2.2 s of a study-scale
    run, and 0.6 s with this.
    """
    dbapi_connection.execute("pragma journal_mode=wal")
    dbapi_connection.execute(f"pragma wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    dbapi_connection.execute("pragma synchronous=normal")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage reusing one engine, and its open connection, per database file."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_present: set[str] = set()
        # The connections of a batch being stored, by shard: open, each in one transaction.
        self._held: dict[str, Connection] = {}
        self._asset_key_index_cols = False
        super().__init__(base_dir, inst_data)
        # Re-entrant: a batch holds the lock while each event's storing takes it again.
        self._db_lock = threading.RLock()

    def has_table(self, table_name: str) -> bool:
        """Whether the cross-run index has the table, remembered once it has. Dagster asks before
        storing every asset check's event (728 a run of the sample), each time through an
        engine and connection of its own (1 ms each, 0.7 s a run); tables are only ever added (migrations).
        Asked without the lock: Dagster asks while it holds a connection."""
        if table_name not in self._tables_present and super().has_table(table_name):
            self._tables_present.add(table_name)
        return table_name in self._tables_present

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        """Whether the asset index has its newer columns, remembered once it has. Dagster asks
        SQLite for the table's columns before storing every asset event (planned, materialized,
        observed: about 170 a run of the sample); columns are only ever added (migrations)."""
        if not self._asset_key_index_cols:
            self._asset_key_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_key_index_cols

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            held = self._held.get(shard)
            if held is not None:
                yield held
                return
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """The events stored as `store_event` stores each, the same rows in the same order, in one
        transaction per database file instead of one to three per event.

        Dagster hands a batch over only when DAGSTER_EVENT_BATCH_SIZE is set (app/runner.py sets
        it): the events a run plans before it starts, one per asset and one per asset check (308
        for the bundled sample). Stored one by one they took 3.6 s of a 32 s run of the sample.
        If any event fails, nothing of the batch is kept, and Dagster stores them one by one. The
        files commit one after the other: a commit that fails after another succeeded (a full
        disk) would leave that file's rows of the batch stored twice once Dagster stores them again.
        """
        shards = sorted({event.run_id for event in events} | {INDEX_SHARD_NAME})
        with self._db_lock, contextlib.ExitStack() as stack:
            try:
                for shard in shards:
                    conn = stack.enter_context(self._engine(shard).connect())
                    stack.enter_context(conn.begin())
                    self._held[shard] = conn
                for event in events:
                    self.store_event(event)
            finally:
                self._held.clear()

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            # The pool's one connection stays open between events; a second is allowed for the
            # rare nested use, as NullPool allowed any number.
            engine = db.create_engine(self.conn_string_for_shard(shard), pool_size=1, max_overflow=2,
                                      connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            db.event.listen(engine, "connect", _tuned)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > KEEP_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def _dispose_engines(self) -> None:
        while self._engines:
            _, engine = self._engines.popitem()
            engine.dispose()

    def wipe(self) -> None:
        with self._db_lock:
            self._dispose_engines()  # the run databases are deleted: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().dispose()


class PodSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (same folders), with the pooled event log."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> "PodSqliteStorage":
        # The parent builds its own class here, whatever class it is called on.
        return cls.from_local(inst_data=inst_data, **config_value)
