"""The Dagster resource every asset uses to reach settings and the working warehouse."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from pod_pipeline import worklock
from pod_pipeline.settings import Settings

# DuckDB's default takes 80% of RAM; the benchmark's goal is under 4 GiB for the whole process tree.
DUCKDB_MEMORY_LIMIT = "2GB"


def connect(settings: Settings, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the working database with the pipeline's limits (one writer process at a time).

    Its checkpoints do not merge row groups (`max_vacuum_tasks = 0`). A site's new export appends
    its rows to history and replaces the site's raw rows, written on both cores in partly filled
    row groups; DuckDB's vacuum then rewrote the appended row groups of those wide tables into
    fewer at the checkpoint: 4.3-6.8 s of a new REDCap export's 16-23 s at 1,000,000
    participants, for no row more or less. Row groups whose every row was deleted (a site's old
    rows) are still dropped, so a table rebuilt site by site keeps its size
    (tests/test_resources.py); what is left is more, smaller row groups (docs/architecture.md,
    "Checkpoints without merging row groups").

    Memory a query has let go of goes back to the system within about a second
    (`allocator_background_threads`): by default DuckDB's allocator kept it until the database was
    closed, so a step's Python work came on top of its query's peak (the outcome summary at
    1,000,000 participants: 2.3-2.4 GB at its peak, 1.8 GB with the setting; docs/architecture.md,
    "Memory a query lets go of")."""
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.work_db), read_only=read_only)
    con.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    con.execute("set preserve_insertion_order = true")
    con.execute("set max_vacuum_tasks = 0")
    con.execute("set allocator_background_threads = true")
    con.execute(f"set temp_directory = '{settings.warehouse_dir / 'duckdb_tmp'}'")
    return con


class Warehouse(dg.ConfigurableResource):
    """Settings and the working DuckDB, read from the environment when a run starts.

    Within a run, the resource holds the working database's lock (pod_pipeline/worklock.py) from
    the run's start to its end: every run, however it was started, takes its turn. Sensors and
    schedules that only read settings take no lock.
    """

    _settings: Settings | None = PrivateAttr(default=None)
    _lock: contextlib.ExitStack | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = Settings.from_env()
        run = context.run
        if run is None:  # a sensor or schedule evaluation, not a run
            return
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(worklock.hold(
            self._settings.warehouse_dir, job=run.job_name, run_id=run.run_id,
            trigger=run.tags.get("pod/trigger") or run.tags.get("dagster/sensor_name")
            or run.tags.get("dagster/schedule_name") or "the Dagster UI",
            waiting=context.log.info if context.log else None))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.settings, read_only=read_only)
        try:
            yield con
        finally:
            con.close()
