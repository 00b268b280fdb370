"""Publishing the marts: a fresh pod_marts.duckdb and a Parquet release, each swapped in whole.

The database is built as a new file next to the published one and moved over it with os.replace,
an atomic rename: a reader that already has pod_marts.duckdb open keeps reading the old file (its
inode lives on until the reader closes it), a reader that opens it afterwards gets the new one, and
nobody ever sees a half-written file or waits on a lock, because the pipeline never opens the
published file for writing.

Parquet files are written to a new release folder, `marts_releases/<release>/`, and `marts` is a
symbolic link to the current release, replaced by another link with os.replace. A directory cannot
be swapped atomically in place, but a link can; a reader that resolves the link once
(`os.path.realpath`) reads one consistent release even while the next is being published. The
newest KEEP_RELEASES releases are kept, so a slow reader's release is not deleted under it.

With POD_PUBLISH_POSTGRES_URL the same release is also served from PostgreSQL (serving.py), swapped
in after both files are written and before either is moved into place: a failure there leaves all
three publications as they were.
"""

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pod_pipeline.delivery import serving
from pod_pipeline.sql import lit

SCHEMA = "marts"
RELEASES = "marts_releases"
PARQUET_LINK = "marts"
KEEP_RELEASES = 3
_STAGED_PREFIX = ".pod_marts.staged-"


class PublicationError(RuntimeError):
    """The marts cannot be published; the last good publication is left as it was."""


@dataclass(frozen=True)
class Publication:
    database: Path
    parquet_dir: Path
    release: Path
    rows: dict[str, int]
    published_at: dt.datetime
    served: serving.Served | None = None


def mart_tables(con: duckdb.DuckDBPyConnection, schema: str = SCHEMA) -> list[str]:
    """Every table and view in a schema, by name."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = $s "
        "order by table_name",
        {"s": schema},
    ).fetchall()
    return [name for (name,) in rows]


def release_id(published_at: dt.datetime, run_id: str) -> str:
    """Release folder name: UTC time first, so names sort in publication order."""
    return f"{published_at:%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def publish(con: duckdb.DuckDBPyConnection, target: Path, run_id: str,
            postgres: serving.Target | None = None) -> Publication:
    """Copy every table of the working database's marts schema to `target` and a Parquet release
    (and to PostgreSQL, when `postgres` says where)."""
    tables = mart_tables(con)
    if not tables:
        raise PublicationError(
            "the working database has no tables in schema marts: nothing to publish"
        )
    warehouse = target.parent
    published_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    release = warehouse / RELEASES / release_id(published_at, run_id)
    staged_db = warehouse / f"{_STAGED_PREFIX}{release.name}.duckdb"
    staged_release = release.with_name(f".{release.name}.partial")
    _remove_leftovers(warehouse)
    served = None
    try:
        rows = _write_database(con, tables, staged_db)
        _write_parquet(con, tables, staged_release)
        if postgres is not None:
            served = serving.serve(con, tables, postgres, release.name, scratch=warehouse)
        staged_release.rename(release)
        os.replace(staged_db, target)
        _point_link(warehouse / PARQUET_LINK, release)
    finally:
        staged_db.unlink(missing_ok=True)
        Path(f"{staged_db}.wal").unlink(missing_ok=True)
        shutil.rmtree(staged_release, ignore_errors=True)
    _fsync(warehouse)  # the renames themselves survive a power cut
    _prune_releases(warehouse / RELEASES, keep=release)
    return Publication(target, warehouse / PARQUET_LINK, release, rows, published_at, served)


STORAGE_VERSION = "v1.0.0"


def _write_database(
    con: duckdb.DuckDBPyConnection, tables: list[str], path: Path
) -> dict[str, int]:
    """A new DuckDB file holding a copy of each table (views are materialised), durably on disk."""
    # Written in the v1.0 storage format, so analysts' DuckDB 1.x clients (the CLI, R's duckdb)
    # open it as well as DuckDB 2.
    con.execute(f"attach {lit(str(path))} as pod_publish (storage_version '{STORAGE_VERSION}')")
    try:
        con.execute(f"create schema pod_publish.{SCHEMA}")
        rows = {}
        for table in tables:
            con.execute(
                f'create table pod_publish.{SCHEMA}."{table}" as select * from {SCHEMA}."{table}"'
            )
            rows[table] = con.execute(
                f'select count(*) from pod_publish.{SCHEMA}."{table}"'
            ).fetchall()[0][0]
        con.execute("checkpoint pod_publish")
    finally:
        con.execute("detach pod_publish")
    # A write-ahead log would not follow the file through the rename; checkpoint must leave none.
    if Path(f"{path}.wal").exists():
        raise PublicationError(f"{path}.wal was left after checkpoint: refusing to publish")
    _fsync(path)
    return rows


def _write_parquet(con: duckdb.DuckDBPyConnection, tables: list[str], folder: Path) -> None:
    folder.mkdir(parents=True)
    for table in tables:
        con.execute(
            f"copy {SCHEMA}.\"{table}\" to {lit(str(folder / f'{table}.parquet'))} "
            "(format parquet, compression zstd)"
        )
    for path in folder.iterdir():
        _fsync(path)


def _point_link(link: Path, release: Path) -> None:
    """Make `link` point at `release` in one rename (relative, so the warehouse can move)."""
    if link.exists() and not link.is_symlink():
        # A plain folder from before releases existed: keep it as the oldest release.
        link.rename(link.parent / RELEASES / f"00000000T000000Z-{PARQUET_LINK}-before-releases")
    staged = link.with_name(f".{link.name}.link-{release.name}")
    staged.unlink(missing_ok=True)
    staged.symlink_to(Path(RELEASES) / release.name, target_is_directory=True)
    os.replace(staged, link)


def _prune_releases(folder: Path, keep: Path) -> None:
    releases = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in releases[:-KEEP_RELEASES]:
        if old != keep:
            shutil.rmtree(old)


def _remove_leftovers(warehouse: Path) -> None:
    """Staged files of a publication that was killed part-way (only one publishes at a time)."""
    for path in warehouse.glob(f"{_STAGED_PREFIX}*"):
        path.unlink()
    for path in (warehouse / RELEASES).glob(".*.partial"):
        shutil.rmtree(path)
    for path in warehouse.glob(f".{PARQUET_LINK}.link-*"):
        path.unlink()
    for path in warehouse.glob(f"{serving.SCRATCH_PREFIX}*"):
        shutil.rmtree(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

