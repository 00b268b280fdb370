"""Publishing the marts: a fresh pod_marts.duckdb and a Parquet release, each swapped in whole.

The database is staged as a file next to the published one and moved over it with os.replace,
an atomic rename: a reader that already has pod_marts.duckdb open keeps reading the old file (its
inode lives on until the reader closes it), a reader that opens it afterwards gets the new one, and
nobody ever sees a half-written file or waits on a lock, because the pipeline never opens the
published file for writing.

The staged file starts as a copy of the published one when there is one (and no participant has
withdrawn or left since it: `_withdrawn_since`), and each mart is brought
to the working database's rows site by site (`_update_by_site`): the rows of each site (by the
mart's site column, or, for a mart of participants without one, by the participant's site in
raw.register) are compared by count and an order-free digest of every
column, and only the sites that differ are replaced, so a new batch at one site rewrites that
site's rows instead of every mart. A mart without participants, one whose columns changed, one
where more than half the sites differ, and every mart of a first publication are written whole.
Every mart is then compared with the working database's whole, and the publication refused if one
differs.

Parquet files are written to a new release folder, `marts_releases/<release>/` (on a thread and a
cursor of their own, each as soon as its mart's working rows are digested, while the staged
database is brought up to date), and `marts` is a symbolic link to the current release, replaced
by another link with os.replace. A directory cannot be swapped atomically in place, but a link
can; a reader that resolves the link once (`os.path.realpath`) reads one consistent release even
while the next is being published. The newest KEEP_RELEASES releases are kept, so a slow reader's
release is not deleted under it.

Each release records in a hidden `.digests.json` the columns, count and digest of the rows each
file was written from, and the file's size and modification time. A mart whose columns, count and
digest equal the current release's, and whose file there is as recorded, is not written again:
the new release takes a hard link to the same file (release files are never changed in place,
only deleted with their release). So a routine re-export that changes few marts rewrites only
those.

The same file records each site's count and digest of every mart published site by site, and the
published database's size and modification time. When pod_marts.duckdb is still as recorded, the
next publication compares the working rows with those recorded digests instead of digesting the
published copy again; when it is not (changed by hand, or a publication killed between the two
renames), the copy is digested as before. Either way, a mart whose sites were replaced is checked
against the working rows as a whole before anything is published; one that fails that check after
trusting a record is written whole instead.

With POD_PUBLISH_POSTGRES_URL the same release is also served from PostgreSQL (serving.py), swapped
in after both files are written and before either is moved into place: a failure there leaves all
three publications as they were.
"""

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pod_pipeline.delivery import serving
from pod_pipeline.sql import columns as columns_of
from pod_pipeline.sql import in_any_order, lit, rows_digest, table_exists

SCHEMA = "marts"
RELEASES = "marts_releases"
PARQUET_LINK = "marts"
KEEP_RELEASES = 3
# In each release folder: what each Parquet file was written from (see the module's docstring).
RELEASE_DIGESTS = ".digests.json"
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
    # Marts updated site by site: table -> the sites whose rows were replaced ("" for rows of
    # participants in no register); the other marts were written whole.
    by_site: dict[str, list[str]] = field(default_factory=dict)
    # Parquet files taken unchanged from the previous release (hard links), by table.
    parquet_kept: list[str] = field(default_factory=list)


def mart_tables(con: duckdb.DuckDBPyConnection, schema: str = SCHEMA, database: str | None = None) -> list[str]:
    """Every table and view in a schema of a database (the connection's own by default), by name."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = $s "
        "and table_catalog = coalesce($d, current_database()) order by table_name",
        {"s": schema, "d": database},
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
    before = _release_digests_file(warehouse / PARQUET_LINK)
    # A mart's rows have no order to keep, and DuckDB writes a table or a Parquet file faster when
    # free to reorder its row groups (outcome_scores at 1,000,000 participants: 15.3 -> 13.3 s
    # into the published file, 8.1 -> 6.5 s into Parquet).
    try:
        with in_any_order(con), _ParquetRelease(con, staged_release, previous=warehouse / PARQUET_LINK,
                                                before=before.get("tables", {})) as parquet:
            rows, by_site, digests = _write_database(con, tables, staged_db, previous=target,
                                                     recorded=_recorded_sites(before, target),
                                                     digested=parquet.write)
            kept = parquet.finish(tables, database=staged_db)
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
    return Publication(target, warehouse / PARQUET_LINK, release, rows, published_at, served, by_site, kept)


STORAGE_VERSION = "v1.0.0"


Digests = dict[str, dict[str, object]]
# Per mart, per site ('' for participants in no register): the rows' count and digest.
SiteDigests = dict[str, tuple[int, int]]


def _write_database(
    con: duckdb.DuckDBPyConnection, tables: list[str], path: Path, previous: Path | None = None,
    recorded: dict[str, SiteDigests] | None = None,
    digested: Callable[[str, dict[str, object]], None] | None = None,
) -> tuple[dict[str, int], dict[str, list[str]], Digests]:
    """A DuckDB file holding a copy of each table (views are materialised), durably on disk: the
    rows per table, the tables updated site by site (see the module's docstring), and each working
    table's columns, count and digest (and, for a mart of participants, each site's). `recorded`:
    the published copy's digests by site, as the last publication recorded them, when the
    published file is still the one it wrote. `digested` is told each table's digests as soon as
    they are known: for a mart updated site by site, before its copy is."""
    # A site for each participant's rows: the raw layer's register (study_id, site).
    registered = table_exists(con, "raw", "register") and {"study_id", "site"} <= {
        name for name, _ in columns_of(con, "raw", "register")}
    copied = previous is not None and previous.exists() and registered
    if copied:
        shutil.copyfile(previous, path)
        con.execute(f"attach {lit(str(path))} as pod_publish")
        if _withdrawn_since(con):
            con.execute("detach pod_publish")
            path.unlink()
            copied = False
    if not copied:
        # Written in the v1.0 storage format, so analysts' DuckDB 1.x clients (the CLI, R's
        # duckdb) open it as well as DuckDB 2 (a copy keeps the format of the file it copies).
        con.execute(f"attach {lit(str(path))} as pod_publish (storage_version '{STORAGE_VERSION}')")
    try:
        con.execute(f"create schema if not exists pod_publish.{SCHEMA}")
        published = set(mart_tables(con, database="pod_publish"))  # empty unless copied
        sites = con.execute("select count(distinct site) from raw.register").fetchall()[0][0] if copied else 0
        rows, by_site, digests = {}, {}, {}

        def record(table: str, columns: list[tuple[str, str]], of_sites: bool, here: SiteDigests) -> None:
            working = _totals(here) if of_sites else here[""]
            rows[table] = working[0]
            digests[table] = {"columns": [list(c) for c in columns], "rows": working[0], "digest": str(working[1])}
            if of_sites:
                digests[table]["sites"] = {site: [n, str(digest)] for site, (n, digest) in here.items()}
            if digested is not None:
                digested(table, digests[table])

        for table in tables:
            columns = _columns(con, table)
            of_sites = registered and ("participant_id", "VARCHAR") in columns
            if not (of_sites and table in published and columns == _columns(con, table, "pod_publish")):
                record(table, columns, of_sites, _write_whole(con, table, columns, of_sites))
                continue
            # The working rows' digests first: the mart's Parquet file is written from them while
            # its staged copy is brought up to date.
            here = _by_site(con, f'{SCHEMA}."{table}"', columns)
            record(table, columns, True, here)
            replaced = _update_by_site(con, table, columns, here, sites, (recorded or {}).get(table))
            if replaced is not None:
                by_site[table] = replaced
            elif _write_whole(con, table, columns, True) != here:
                raise PublicationError(f"the published copy of marts.{table} does not hold the working "
                                       "database's rows after it was written whole: refusing to publish")
        for gone in published - set(tables):
            con.execute(f'drop table pod_publish.{SCHEMA}."{gone}"')
        con.execute("checkpoint pod_publish")
    finally:
        con.execute("detach pod_publish")
    # A write-ahead log would not follow the file through the rename; checkpoint must leave none.
    if Path(f"{path}.wal").exists():
        raise PublicationError(f"{path}.wal was left after checkpoint: refusing to publish")
    _fsync(path)
    return rows, by_site, digests


def _withdrawn_since(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the published copy holds a participant the working marts no longer hold, or one
    whose withdrawal changed since. Then the database is written afresh: a deleted row's bytes can
    outlive it in a copied file's free blocks, and no trace of data a participant withdrew may
    reach a publication. True, too, when the participants mart cannot tell."""
    needed = {"participant_id", "withdrawal_type", "withdrawal_date"}
    for database in (None, "pod_publish"):
        if not needed <= {name for name, _ in _columns(con, "participants", database)}:
            return True
    return bool(con.execute(f"""
        select count(*) from pod_publish.{SCHEMA}.participants as published
        left join {SCHEMA}.participants as working on working.participant_id = published.participant_id
        where working.participant_id is null
            or working.withdrawal_type is distinct from published.withdrawal_type
            or working.withdrawal_date is distinct from published.withdrawal_date
    """).fetchall()[0][0])


def _columns(con: duckdb.DuckDBPyConnection, table: str, database: str | None = None) -> list[tuple[str, str]]:
    """A mart's columns and types, in order, in a database (the connection's own by default)."""
    return columns_of(con, SCHEMA, table, database)


def _digest(columns: list[tuple[str, str]], alias: str = "") -> str:
    """SQL: count and order-free digest of the rows (every column) of a relation."""
    return rows_digest([name for name, _ in columns], alias)


# A participant's site, for the rows of a mart of participants without a site column: their
# register's.
_SITE_OF = "(select study_id as participant_id, site from raw.register where study_id is not null)"


def _has_site(columns: list[tuple[str, str]]) -> bool:
    """Whether a mart's rows name their site: every mart of participants the dbt project builds
    does (the register's site, carried through). Its rows are then grouped by that column, with
    no join to the register (at 1,000,000 participants the nine such marts' digests took 1.2 s,
    and 3.0 s with the join, giving the same digests)."""
    return ("site", "VARCHAR") in columns


def _by_site(con: duckdb.DuckDBPyConnection, relation: str, columns: list[tuple[str, str]]) -> SiteDigests:
    """Each site's count and digest of a relation's rows: by its site column when it has one
    ('' where that is null), else by the participant's site in the register ('' for participants
    in no register)."""
    if _has_site(columns):
        query = f"select coalesce(t.site, '') as site, {_digest(columns, 't.')} from {relation} as t group by all"
    else:
        query = (f"select coalesce(s.site, '') as site, {_digest(columns, 't.')} from {relation} as t "
                 f"left join {_SITE_OF} as s on s.participant_id = t.participant_id group by all")
    return {site: (n, digest) for site, n, digest in con.execute(query).fetchall()}


def _totals(by_site: SiteDigests) -> tuple[int, int]:
    """The whole relation's count and digest from its sites' (the digest is a sum over rows)."""
    return sum(n for n, _ in by_site.values()), sum(d for _, d in by_site.values())


def _write_whole(con: duckdb.DuckDBPyConnection, table: str, columns: list[tuple[str, str]],
                 of_sites: bool) -> SiteDigests:
    """Write a mart whole into the staged copy; its rows' count and digest, read back from the copy,
    by site when `of_sites` (else under '')."""
    con.execute(f'create or replace table pod_publish.{SCHEMA}."{table}" as select * from {SCHEMA}."{table}"')
    staged = f'pod_publish.{SCHEMA}."{table}"'
    if of_sites:
        return _by_site(con, staged, columns)
    return {"": tuple(con.execute(f"select {_digest(columns)} from {staged}").fetchall()[0])}


def _update_by_site(con: duckdb.DuckDBPyConnection, table: str, columns: list[tuple[str, str]],
                    here: SiteDigests, sites: int, recorded: SiteDigests | None) -> list[str] | None:
    """Bring the staged copy of a mart of participants (whose working and staged columns are
    `columns`, and whose working rows' digests by site are `here`) to the working database's rows
    by replacing the rows of the sites that differ: those sites ('' for participants in no
    register); None when the mart is to be written whole instead. `recorded`: the copy's digests
    by site as the last publication recorded them (None: digest the copy).

    When no site differs, the copy holds the working rows: their digests are those just compared.
    When some do, the copy is checked against the working rows as a whole after the replacement."""
    there = recorded if recorded is not None else _by_site(con, f'pod_publish.{SCHEMA}."{table}"', columns)
    differ = sorted(site for site in here.keys() | there.keys() if here.get(site) != there.get(site))
    if len(differ) * 2 > max(sites, 1):
        return None
    if differ:
        # The rows of those sites, as _by_site grouped them.
        rows_of = "list_contains($sites, coalesce(site, ''))" if _has_site(columns) else (
            f"participant_id in (select participant_id from {_SITE_OF} where list_contains($sites, site))"
            f" or (list_contains($sites, '') and (participant_id is null or participant_id not in "
            f"(select participant_id from {_SITE_OF})))")
        con.execute(f'delete from pod_publish.{SCHEMA}."{table}" where {rows_of}', {"sites": differ})
        con.execute(f'insert into pod_publish.{SCHEMA}."{table}" select * from {SCHEMA}."{table}" '
                    f"where {rows_of}", {"sites": differ})
        if not _holds_the_working_rows(con, table, _totals(here), trusted_record=recorded is not None):
            return None  # the record did not describe the copy: write the mart whole
    return differ


def _holds_the_working_rows(con: duckdb.DuckDBPyConnection, table: str, working: tuple[int, int],
                            trusted_record: bool = False) -> bool:
    """Whether the staged table holds the working table's rows: its count and digest against the
    working table's (taken by `_update_by_site` before it changed the staged table). A difference
    is an error, unless the sites replaced were chosen by a recorded digest (False: the caller
    writes the mart whole)."""
    staged = con.execute(f'select {_digest(_columns(con, table, "pod_publish"))} '
                         f'from pod_publish.{SCHEMA}."{table}"').fetchall()[0]
    if tuple(staged) == working:
        return True
    if trusted_record:
        return False
    raise PublicationError(f"the published copy of marts.{table} does not hold the working "
                           f"database's rows ({staged[0]} rows against {working[0]}): refusing to publish")


def _recorded_sites(before: dict, published: Path) -> dict[str, SiteDigests] | None:
    """The published marts' digests by site as the last publication recorded them, when the
    published file is the one it wrote (same size and modification time); else None."""
    database = before.get("database") or {}
    try:
        stat = published.stat()
    except OSError:
        return None
    if (stat.st_size, stat.st_mtime_ns) != (database.get("size"), database.get("mtime_ns")):
        return None
    try:
        return {table: {site: (int(n), int(digest)) for site, (n, digest) in recorded["sites"].items()}
                for table, recorded in before.get("tables", {}).items() if "sites" in recorded}
    except (AttributeError, TypeError, ValueError):
        return None


class _ParquetRelease:
    """The Parquet release, written in `folder` on a thread and a cursor of its own: each mart's file
    as soon as its working rows' digests are known (`write`), while the staged database is brought
    up to date. Both mostly wait on DuckDB, which lets go of the GIL; at 1,000,000 participants the
    files took 8.9 s on 1.91 cores and the staged database 8.2 s on 1.65, one after the other."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path, previous: Path, before: Digests) -> None:
        self.folder, self.previous, self.before = folder, previous, before
        folder.mkdir(parents=True)
        self._cursor = con.cursor()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pod-parquet")
        self._files: dict[str, Future[tuple[bool, dict]]] = {}

    def __enter__(self) -> "_ParquetRelease":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if exc_type is not None:
            self._cursor.interrupt()  # the publication has failed: stop the file being written
        self._pool.shutdown(wait=True)
        self._cursor.close()

    def write(self, table: str, digests: dict[str, object]) -> None:
        self._files[table] = self._pool.submit(self._file, table, digests)

    def _file(self, table: str, digests: dict[str, object]) -> tuple[bool, dict]:
        """Write one mart's file, or link the previous release's when that was written from the
        rows the working table holds now (`_link_unchanged`); whether it was linked, and its record."""
        path = self.folder / f"{table}.parquet"
        kept = _link_unchanged(self.previous / path.name, path, self.before.get(table), digests)
        if not kept:
            with in_any_order(self._cursor):
                # zstd's fastest level: under 2% larger than its default, and faster to write
                # (outcome_scores at 1,000,000 participants: 6.5 -> 5.7 s).
                self._cursor.execute(f"copy {SCHEMA}.\"{table}\" to {lit(str(path))} "
                                     "(format parquet, compression zstd, compression_level 1)")
        stat = path.stat()
        return kept, {**digests, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def finish(self, tables: list[str], database: Path) -> list[str]:
        """Wait for every table's file, write the digests file (with the staged `database`'s size and
        modification time, which os.replace keeps) and sync them all; the tables whose file was
        taken from the previous release."""
        written = {table: self._files[table].result() for table in tables}
        stat = database.stat()
        (self.folder / RELEASE_DIGESTS).write_text(json.dumps({
            "tables": {table: record for table, (_, record) in written.items()},
            "database": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        }, indent=1), encoding="utf-8")
        for path in self.folder.iterdir():
            _fsync(path)
        return [table for table, (kept, _) in written.items() if kept]


def _release_digests_file(release: Path) -> dict:
    """A release's digests file: what each file was written from (`tables`) and the database
    published with it (`database`); {} for a release without one."""
    try:
        written = json.loads((release / RELEASE_DIGESTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return written if isinstance(written, dict) and isinstance(written.get("tables"), dict) else {}


def _link_unchanged(old: Path, new: Path, recorded: dict | None, working: dict) -> bool:
    """Link `new` to the previous release's file when that was written from the rows the working
    table holds now and is as it was written; False when the file must be written."""
    if recorded is None or any(recorded.get(k) != working[k] for k in ("columns", "rows", "digest")):
        return False
    try:
        stat = old.stat()
        if (stat.st_size, stat.st_mtime_ns) != (recorded.get("size"), recorded.get("mtime_ns")):
            return False
        os.link(old, new)
    except OSError:  # gone, or a file system without hard links: write it
        return False
    return True


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

