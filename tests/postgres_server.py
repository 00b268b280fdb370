"""A throwaway PostgreSQL server for the tests, from the machine's own PostgreSQL binaries, and
the comparison of a served table with its DuckDB original.

`initdb` into a fresh folder, `pg_ctl start` on a free local port (TCP on 127.0.0.1 only, its
socket in that folder, trust authentication), and `pg_ctl stop -m fast` at the end. PostgreSQL
refuses to run as root, so under root (as in CI) the server runs as the `postgres` system user
and its folder belongs to that user; otherwise it runs as whoever runs the tests.
"""

import contextlib
import datetime as dt
import decimal
import math
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg2
import pytest

SUPERUSER = "postgres"
BINARIES = ("initdb", "pg_ctl", "postgres")


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/<n>/bin."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name))
    for folder in [*candidates, *reversed(versions)]:
        if all((folder / name).exists() for name in BINARIES):
            return folder
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    _user: pwd.struct_passwd | None  # whom the server runs as, when not the current user

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def url(self, user: str = SUPERUSER, database: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def connect(self, user: str = SUPERUSER, database: str = "postgres") -> "psycopg2.extensions.connection":
        return psycopg2.connect(self.url(user, database))

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements as the superuser, each in its own transaction (CREATE DATABASE needs that)."""
        con = self.connect(database=database)
        con.autocommit = True
        try:
            with con.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            con.close()

    def _run(self, *args: str, timeout: float = 120) -> None:
        preexec = None
        if self._user is not None:
            uid, gid = self._user.pw_uid, self._user.pw_gid

            def preexec() -> None:
                os.setgid(gid)
                os.setuid(uid)

        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        if self._user is not None:
            env["HOME"] = self._user.pw_dir
        result = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], preexec_fn=preexec, env=env,
                                cwd=self.folder, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
                   "-c shared_buffers=32MB -c deadlock_timeout=200ms")
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "60",
                  "-l", str(self.folder / "server.log"), "-o", options)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")


@contextlib.contextmanager
def server_for_tests() -> Iterator[PostgresServer]:
    """A running server, or a failed test saying what is missing (CI has the binaries)."""
    bin_dir = find_binaries()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not on PATH nor in "
                    "/usr/lib/postgresql/<version>/bin: install the postgresql package")
    with running_server(bin_dir) as server:
        yield server


@contextlib.contextmanager
def running_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """A started server in a folder of its own, stopped and removed afterwards, however the tests end."""
    user = pwd.getpwnam(SUPERUSER) if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: its folders are private to root and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="pod-postgres-"))
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = PostgresServer(bin_dir, folder, free_port(), user)
    try:
        server.start()
        _wait_until_ready(server)
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _wait_until_ready(server: PostgresServer, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            server.connect().close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def comparable(value: object) -> object:
    """A value as either database's Python client returns it, made comparable (NaN equals NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return decimal.Decimal(value)  # PostgreSQL's numeric for DuckDB's wider integers
    if isinstance(value, list):
        return tuple(comparable(v) for v in value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, uuid.UUID):
        return str(value)  # psycopg2 returns uuid as text unless told otherwise
    return value


def _sorted(rows: list[tuple]) -> list[tuple]:
    comparable_rows = [tuple(comparable(v) for v in row) for row in rows]
    return sorted(comparable_rows, key=lambda row: tuple((v is None, repr(v)) for v in row))


def duckdb_rows(path: Path, table: str, where: str = "") -> list[tuple]:
    """Every row of marts.<table> in a DuckDB file, comparable and sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        return _sorted(con.execute(f'select * from marts."{table}" {where}').fetchall())


def postgres_rows(pg: "psycopg2.extensions.connection", table: str) -> list[tuple]:
    """Every row of marts.<table> that the connection's role may see, comparable and sorted."""
    with pg.cursor() as cur:
        cur.execute(f'select * from marts."{table}"')
        return _sorted(cur.fetchall())
