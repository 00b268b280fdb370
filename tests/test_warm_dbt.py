"""`pod-dbt` (transform/warm_dbt.py): a dbt command handed to the run's warm dbt process gives what
`dbt` itself gives (output, errors, exit code), the warm process has ended when `pod-dbt` returns,
and without a warm process `pod-dbt` is `dbt`."""

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pod_pipeline.settings import DBT_PROJECT_DIR
from pod_pipeline.transform import warm_dbt

POD_DBT = str(Path(sys.executable).with_name("pod-dbt"))
DBT = str(Path(sys.executable).with_name("dbt"))
# One command that succeeds and one that dbt refuses (exit code 2, its usage on stderr).
COMMANDS = (["--version"], ["ls", "--no-such-option"])


def _run(executable: str, args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run([executable, *args], capture_output=True, text=True, cwd=DBT_PROJECT_DIR, timeout=120)
    return done.returncode, done.stdout, done.stderr


@functools.cache
def _cold(*args: str) -> tuple[int, str, str]:
    """What dbt itself gives (each command run once)."""
    return _run(DBT, list(args))


def _ready(process: subprocess.Popen) -> Path:
    """The warm process's socket, once it listens."""
    socket_path = Path(os.environ[warm_dbt.SOCKET_ENV])
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        assert process.poll() is None, "the warm dbt process ended before it listened"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return socket_path


@contextlib.contextmanager
def _sigint_as_at_a_terminal() -> Iterator[None]:
    """pytest-xdist's workers ignore SIGINT, and a child inherits that (as a cold dbt would):
    processes started inside get SIGINT as `pod run` started from a terminal passes it on."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("args", COMMANDS, ids=["version", "refused"])
def test_a_command_run_warm_gives_what_dbt_gives(args: list[str]) -> None:
    cold = _cold(*args)
    with warm_dbt.started() as process:
        socket_path = _ready(process)
        warm = _run(POD_DBT, args)
        # The warm process took the command (it stops listening) and had ended by the time
        # pod-dbt returned: the working database is free, as after a cold dbt.
        assert not socket_path.exists()
        assert process.poll() == warm[0]
    assert warm == cold
    assert cold[0] == (0 if args == ["--version"] else 2)


def test_without_a_warm_process_pod_dbt_is_dbt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(warm_dbt.SOCKET_ENV, raising=False)
    assert _run(POD_DBT, ["--version"]) == _cold("--version")
    # A socket named but gone (the warm process failed, or served another command): dbt runs cold.
    monkeypatch.setenv(warm_dbt.SOCKET_ENV, str(tmp_path / "socket"))
    assert _run(POD_DBT, ["ls", "--no-such-option"]) == _cold("ls", "--no-such-option")


@contextlib.contextmanager
def _sigterm(disposition: str) -> Iterator[None]:
    """SIGTERM in this process as `disposition` says ('default', 'ignored', 'blocked'), as a
    process that starts the run may have it; its children inherit both others."""
    previous = signal.getsignal(signal.SIGTERM)
    if disposition == "ignored":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if disposition == "blocked":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("disposition", ["default", "ignored", "blocked"])
def test_a_warm_process_not_used_ends_with_the_run(disposition: str) -> None:
    with _sigterm(disposition), warm_dbt.started() as process:
        socket_path = _ready(process)
    # Ended by the run's SIGTERM, not killed after the run had waited for it in vain.
    assert process.returncode == -signal.SIGTERM
    assert not socket_path.parent.exists()
    assert warm_dbt.SOCKET_ENV not in os.environ


def test_a_run_starts_a_warm_process_only_when_it_builds_dbts_models() -> None:
    import dagster as dg

    from pod_pipeline.app.runner import _runs_dbt
    from pod_pipeline.definitions import defs
    from pod_pipeline.delivery.assets import DELIVERY_KEY

    refresh, weekly = defs.resolve_job_def("refresh"), defs.resolve_job_def("weekly_delivery")
    assert _runs_dbt(refresh, None) and _runs_dbt(weekly, None)
    assert _runs_dbt(weekly, [dg.AssetKey(["marts", "participants"]), DELIVERY_KEY])
    assert not _runs_dbt(weekly, [DELIVERY_KEY])
    assert not _runs_dbt(defs.resolve_job_def("weekly_delivery"), [dg.AssetKey(["raw", "register"])])


def test_a_signal_to_pod_dbt_interrupts_the_warm_dbt(tmp_path: Path) -> None:
    # dagster-dbt cancels a build by sending SIGINT to the process it started: pod-dbt passes it
    # on. A full parse of the project takes seconds; this one is stopped after its first line.
    with contextlib.ExitStack() as stack:
        with _sigint_as_at_a_terminal():
            process = stack.enter_context(warm_dbt.started())
        _ready(process)
        client = subprocess.Popen([POD_DBT, "parse", "--no-partial-parse", "--target-path", str(tmp_path)],
                                  cwd=DBT_PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "POD_WORK_DB": "unused.duckdb"})
        assert client.stdout is not None
        first = client.stdout.readline()  # dbt has started: pod-dbt handed the command over
        client.send_signal(signal.SIGINT)
        rest = client.stdout.read()
        code = client.wait(timeout=60)
        assert process.poll() == code != 0, first + rest
        assert "KeyboardInterrupt" in rest and "Performance info" not in rest, rest  # stopped, not finished
