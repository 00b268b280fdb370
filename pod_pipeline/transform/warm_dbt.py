"""dbt started before its step: its interpreter and imports ready while the run loads the exports.

A `dbt build` spends about 2 s starting Python and importing dbt before it reads a file, time in
which the run has nothing else to do. `pod run` therefore starts one warm dbt process as the run
starts (`started`), beside the loads: it imports dbt and waits on a Unix socket in a private
folder. The dbt resource's executable is `pod-dbt` (`client`), which hands that process its
arguments, environment, working folder and standard output and error, and exits with dbt's exit
code once the process has ended, so the working database is free as after a cold dbt. The warm
process runs what the `dbt` script runs (`dbt.cli.main.cli`), in a process that has done nothing
but import: the same command, the same output, in the same pipe.

Without a warm process to hand over to (a run launched from the UI, a second dbt command in one
run, a warm process that failed to start), `pod-dbt` replaces itself with the venv's `dbt`.

Only the standard library (and `pod_pipeline.collector`, which imports only `gc`) is imported at
module level: `pod-dbt` starts in tens of milliseconds.
"""

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pod_pipeline import collector

# The socket of this run's warm dbt process, in the environment dagster-dbt gives `pod-dbt`.
SOCKET_ENV = "POD_WARM_DBT_SOCKET"
# What the warm process imports before it waits (dbt's command line, tasks and the DuckDB adapter).
IMPORTED_AHEAD = ("dbt.cli.main", "dbt.adapters.duckdb", "dbt.adapters.duckdb.impl")
# How often a waiting warm process checks that the run that started it is still there.
PARENT_CHECK_SECONDS = 1.0

_INT = struct.Struct("!i")
_LENGTH = struct.Struct("!Q")


def client() -> None:
    """`pod-dbt ARGS`: `dbt ARGS`, run by this run's warm dbt process when there is one."""
    args = sys.argv[1:]
    path = os.environ.get(SOCKET_ENV)
    conn = _connected(path) if path else None
    if conn is None:
        dbt = str(Path(sys.executable).with_name("dbt"))
        os.execv(dbt, [dbt, *args])
    with conn:
        pid = _INT.unpack(_received(conn, _INT.size))[0]
        ended = _watch(pid)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: _forward(pid, number))
        env = {name: value for name, value in os.environ.items() if name != SOCKET_ENV}
        request = json.dumps({"args": args, "env": env, "cwd": os.getcwd()}).encode()
        socket.send_fds(conn, [_LENGTH.pack(len(request))], [sys.stdout.fileno(), sys.stderr.fileno()])
        conn.sendall(request)
        try:
            code = _INT.unpack(_received(conn, _INT.size))[0]
        except ConnectionError:
            print(f"pod-dbt: the warm dbt process (pid {pid}) ended without an exit code", file=sys.stderr)
            code = 2
    ended()
    sys.exit(code)


def _forward(pid: int, signum: int) -> None:
    """A signal to `pod-dbt` (dagster-dbt's SIGINT when a run is cancelled) goes to dbt."""
    with contextlib.suppress(ProcessLookupError):  # dbt has ended already
        os.kill(pid, signum)


def _connected(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:  # no warm process (any more): dbt runs cold
        conn.close()
        return None
    return conn


def _received(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the warm dbt process closed the connection")
        data += chunk
    return data


def _watch(pid: int):
    """A function that returns once process `pid` has ended (its files closed, its locks released)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already gone
        return lambda: None

    def ended() -> None:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)

    return ended


def serve(path: str, parent: int) -> int:
    """The warm process: listen, import dbt, run the one command handed over, return its exit code."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    for name in IMPORTED_AHEAD:
        __import__(name)
    collector.own_process()
    collector.settle()
    listener.settimeout(PARENT_CHECK_SECONDS)
    while True:
        try:
            conn, _ = listener.accept()
            break
        except TimeoutError:
            if os.getppid() != parent:  # the run ended without using dbt
                return 0
    listener.close()
    os.unlink(path)  # one command per process: a second `pod-dbt` runs dbt cold
    conn.settimeout(None)
    conn.sendall(_INT.pack(os.getpid()))
    header, fds, _, _ = socket.recv_fds(conn, _LENGTH.size, 2)
    request = json.loads(_received(conn, _LENGTH.unpack(header)[0]))
    for fd, target in zip(fds, (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["dbt", *request["args"]]
    code = _run_dbt()
    sys.stdout.flush()
    sys.stderr.flush()
    # `pod-dbt` waits for this process to end. dbt has closed the working database at the end of
    # its command (dbt-duckdb's atexit handler, which still runs, closes it otherwise); the
    # teardown's collections have nothing to walk (pod_pipeline/collector.py).
    collector.without_final_collection()
    conn.sendall(_INT.pack(code))
    return code  # and the process ends as dbt's would, closing the working database


def _run_dbt() -> int:
    """What the `dbt` script does, `sys.exit(cli())`, as an exit code. Click would name the program
    after this module (run with -m): it is told the script's name."""
    from dbt.cli.main import cli

    try:
        result = cli(prog_name="dbt")
    except SystemExit as exc:
        result = exc.code
    if result is None:
        return 0
    if isinstance(result, int):
        return result
    print(result, file=sys.stderr)
    return 1


@contextlib.contextmanager
def started() -> Iterator[subprocess.Popen]:
    """A warm dbt process for the commands inside, ended (if still waiting) and cleaned up after."""
    folder = Path(tempfile.mkdtemp(prefix="pod-dbt-"))
    path = folder / "socket"
    process = subprocess.Popen([sys.executable, "-m", __name__, str(path), str(os.getpid())],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ[SOCKET_ENV] = str(path)
    try:
        yield process
    finally:
        os.environ.pop(SOCKET_ENV, None)
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    # `started` ends an unused warm process with SIGTERM. A process inherits an ignored or blocked
    # signal from the one that started it (a test runner's worker, a supervisor), and would then
    # be killed only after `started` has waited 30 s: this one ends on SIGTERM whatever the run's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    sys.exit(serve(sys.argv[1], int(sys.argv[2])))
