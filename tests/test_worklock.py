"""One run at a time on the working database: the lock every run holds, whoever started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pod_pipeline import worklock

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pod_pipeline import worklock
    with worklock.hold(Path(sys.argv[1]), job="refresh", trigger="new_batch_sensor", run_id="abcdef0123456789"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(warehouse: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_waits_naming_the_run_that_holds_the_database(tmp_path: Path) -> None:
    other = _holder(tmp_path, 2.0)
    said: list[str] = []
    started = time.monotonic()
    with worklock.hold(tmp_path, job="refresh", trigger="pod run", waiting=said.append):
        waited = time.monotonic() - started
        assert other.wait(timeout=10) == 0  # the holder had let go before this block began
        assert worklock.holder(tmp_path)["trigger"] == "pod run"
    assert waited > 0.5
    assert said[0].startswith("waiting for the working database")
    assert "run abcdef01 (refresh, started by new_batch_sensor" in said[0] and f"pid {other.pid}" in said[0]
    assert said[-1] == "the working database is free: starting"
    assert worklock.holder(tmp_path) is None  # released, and the holder note with it


def test_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    other = _holder(tmp_path, 600)
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    said: list[str] = []
    with worklock.hold(tmp_path, job="refresh", waiting=said.append):
        pass
    assert said == []


def test_the_holding_process_may_take_the_lock_again(tmp_path: Path) -> None:
    with worklock.hold(tmp_path, job="refresh", trigger="pod run"):
        with worklock.hold(tmp_path, job="refresh", run_id="run-1", waiting=pytest.fail):
            assert worklock.holder(tmp_path)["run_id"] == "run-1"
        # Still held by this process: another process cannot take it.
        probe = subprocess.run([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); "
                                "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(worklock.lock_path(tmp_path))],
                               capture_output=True, text=True)
        assert "BlockingIOError" in probe.stderr
