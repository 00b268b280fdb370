"""One run at a time on the working database, however the run was started.

DuckDB allows one read-write process on a file (or many readers, never both). Every run of the
pipeline — `pod run`, `pod deliver`, the new-batch sensor, the schedules, a materialisation started
in the UI — holds this lock for its whole life, so a second run waits for the first to finish
(and then usually finds nothing new to do) instead of interleaving its steps and failing on
DuckDB's file lock.

The lock is an exclusive `flock` on `<warehouse>/pod_work.lock`, held by the run's process: the
kernel releases it when that process ends, however it ends (a SIGKILLed run leaves no stale lock).
Beside it, `pod_work.lock.json` names the holder so a waiting run can say whom it waits for.
A process that holds the lock may take it again (re-entrant): `pod run` takes it before starting
its in-process run, whose resources then take it without waiting.
"""

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_NAME = "pod_work.lock"
# How often a waiting run tries again, and repeats that it is waiting.
POLL_SECONDS = 0.5
REMIND_SECONDS = 60.0

_held: dict[Path, list] = {}  # lock path -> [open file, depth], for this process


def lock_path(warehouse_dir: Path) -> Path:
    return warehouse_dir / LOCK_NAME


def holder(warehouse_dir: Path) -> dict | None:
    """Who holds (or last held) the lock, as its holder wrote it; None when unknown."""
    try:
        return json.loads(lock_path(warehouse_dir).with_suffix(".lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def describe(info: dict | None) -> str:
    if not info:
        return "another run"
    run = f"run {info['run_id'][:8]}" if info.get("run_id") else "a run"
    parts = [info.get("job"), f"started by {info['trigger']}" if info.get("trigger") else None,
             f"at {info['since']}" if info.get("since") else None, f"pid {info.get('pid')}"]
    return f"{run} ({', '.join(p for p in parts if p)})"


@contextlib.contextmanager
def hold(warehouse_dir: Path, *, job: str, trigger: str | None = None, run_id: str | None = None,
         waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the working database's lock for the block, waiting (and saying so) while another run has it."""
    path = lock_path(warehouse_dir)
    if path in _held:
        _held[path][1] += 1
        if run_id:
            _write_holder(path, job, trigger, run_id)
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        _acquire(handle, warehouse_dir, waiting)
        _held[path] = [handle, 1]
        _write_holder(path, job, trigger, run_id)
        try:
            yield
        finally:
            del _held[path]
            with contextlib.suppress(OSError):
                path.with_suffix(".lock.json").unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def _acquire(handle, warehouse_dir: Path, waiting: Callable[[str], None] | None) -> None:
    said_at = None
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if said_at is not None and waiting:
                waiting("the working database is free: starting")
            return
        except BlockingIOError:
            now = time.monotonic()
            if waiting and (said_at is None or now - said_at >= REMIND_SECONDS):
                waiting(f"waiting for the working database ({lock_path(warehouse_dir)}): "
                        f"{describe(holder(warehouse_dir))} is using it")
                said_at = now
            time.sleep(POLL_SECONDS)


def _write_holder(path: Path, job: str, trigger: str | None, run_id: str | None) -> None:
    info = {"pid": os.getpid(), "job": job, "trigger": trigger, "run_id": run_id,
            "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    target = path.with_suffix(".lock.json")
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(info), encoding="utf-8")
    temporary.replace(target)
