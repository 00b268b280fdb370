"""Runs of the project's instance that were killed part-way: found, marked failed, slots freed.

Called before every `pod run` and `pod ui`, every minute while `pod ui` runs, and by `pod instance`
(which the shared deployment's timer runs every minute).
"""

import os
from pathlib import Path

import dagster as dg


def recover_interrupted_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail every STARTED run whose process is gone, and free the pool slots runs left behind.

    A run killed outright (SIGKILL, out of memory, a closed laptop) cannot report its own end: it
    stays STARTED, holds its `duckdb_writer` slot and, with one run at a time, blocks every later
    run. Each run event records the process id that wrote it, so a STARTED run whose process no
    longer exists, or is a newer process reusing the id, was interrupted. Runs execute where the
    warehouse is (its DuckDB file and lock are local), so their processes are this machine's even
    when the instance is a shared PostgreSQL database (POD_DAGSTER_POSTGRES_URL).
    """
    recovered = []
    for record in instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    ):
        run = record.dagster_run
        starts = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
        )
        if not starts.records:
            continue
        entry = starts.records[0].event_log_entry
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid is None or _process_alive(pid, since=entry.timestamp):
            continue
        instance.report_run_failed(
            run,
            message=f"Marked failed by pod: the run's process "
            f"(pid {pid}) ended without reporting (killed or crashed).",
        )
        recovered.append(run.run_id)
    storage = instance.event_log_storage
    holders = (
        storage.get_concurrency_run_ids() if storage.supports_global_concurrency_limits else set()
    )
    if holders:
        finished = [
            dg.DagsterRunStatus.SUCCESS,
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
        ]
        for record in instance.get_run_records(
            filters=dg.RunsFilter(run_ids=list(holders), statuses=finished)
        ):
            storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return recovered


def _process_alive(pid: int, since: float) -> bool:
    """Whether `pid` is a live process that was already running at `since` (a Unix time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except OSError:
        return True  # no /proc: trust os.kill
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # killed, waiting for its parent to reap it
        return False
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    # Generous margin: wrongly failing a live run is worse than waiting for a reused pid to end.
    return started <= since + 10
