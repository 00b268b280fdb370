"""`pod ui`: the Dagster UI on the project's own instance, showing the runs `pod run` made too."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import dagster as dg

from pod_pipeline.app.recovery import recover_interrupted_runs
from pod_pipeline.app.runner import check_writable, prepare_instance
from pod_pipeline.settings import PROJECT_ROOT, Settings, SettingsError


def start_ui(
    settings: Settings, host: str = "127.0.0.1", port: int = 3000, output: IO | None = None
) -> subprocess.Popen:
    """Start `dagster dev` on the project's DAGSTER_HOME, in a process group of its own."""
    check_writable(settings.warehouse_dir)
    recover_interrupted_runs(prepare_instance(settings))
    env = dict(os.environ, DAGSTER_HOME=str(settings.dagster_home))
    # The venv's bin first: the code server and dagster-dbt look for `dbt` on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # No -m: from the project root, dagster dev reads [tool.dagster] in pyproject.toml, so the code
    # location is named `pod_pipeline` as everywhere else.
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-h", host, "-p", str(port)]
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=_default_interrupt,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )


def _default_interrupt() -> None:
    # A background job of a non-interactive shell inherits SIGINT ignored, and dagster dev gives
    # SIGTERM whatever SIGINT does: left so, both would be ignored and only SIGKILL would work.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_ui(process: subprocess.Popen, timeout: float = 20) -> int:
    """Stop dagster dev, its webserver, daemon, code server and run workers; wait till all are gone.

    SIGTERM goes to the whole process group (dagster dev's children included), then SIGKILL to
    whatever is left after `timeout` seconds.
    """
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        if _group_gone(process, grace):
            break
    return process.wait()


def _group_gone(process: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or its zombie keeps the group alive
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def run_ui(host: str = "127.0.0.1", port: int = 3000) -> int:
    """Serve the UI until Ctrl-C or SIGTERM, then stop everything it started."""
    try:
        settings = Settings.from_env()
        process = start_ui(settings, host, port)
    except SettingsError as exc:
        print(f"pod ui: {exc}", file=sys.stderr)
        return 2
    print(
        f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={settings.dagster_home}); "
        "Ctrl-C stops it",
        flush=True,
    )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        return supervise(process, prepare_instance(settings))
    except KeyboardInterrupt:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup
            signal.signal(signum, signal.SIG_IGN)
        stop_ui(process)
        return 0


def supervise(process: subprocess.Popen, instance: dg.DagsterInstance, every: float = 60.0,
              report: Callable[[str], None] = print) -> int:
    """Wait for dagster dev to end; meanwhile, every `every` seconds, fail the runs whose process
    was killed (a SIGKILLed `pod run`, a run worker that ran out of memory), so that they stop
    blocking the queue."""
    while True:
        try:
            return process.wait(timeout=every)
        except subprocess.TimeoutExpired:
            for run_id in recover_interrupted_runs(instance):
                report(f"pod ui: run {run_id} was interrupted (its process is gone): marked failed")
