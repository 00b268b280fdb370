"""The load ledger: an append-only, hash-chained record of every batch and file the pipeline saw.

Each entry's hash covers its content and the previous entry's hash, so an entry changed or removed
after the fact breaks the chain, and `verify` names the first entry that no longer fits. The module
offers no way to update or delete an entry: re-delivering a batch appends new entries.
"""

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

import duckdb

GENESIS = "0" * 64

DDL = """
create schema if not exists audit;
create table if not exists audit.load_ledger (
    entry_id bigint primary key,
    site varchar not null,
    export_id varchar not null,
    file varchar not null,
    sha256 varchar,
    status varchar not null,
    rows_read bigint,
    rows_loaded bigint,
    rows_quarantined bigint,
    error varchar,
    loaded_at timestamp not null,
    run_id varchar,
    prev_hash varchar not null,
    entry_hash varchar not null
);
"""


@dataclass(frozen=True)
class Entry:
    site: str
    export_id: str
    file: str
    sha256: str | None
    status: str  # accepted | rejected (batches); loaded | rejected | ignored (files)
    rows_read: int | None = None
    rows_loaded: int | None = None
    rows_quarantined: int | None = None
    error: str | None = None


FIELDS = tuple(Entry.__dataclass_fields__)


def entry_hash(prev_hash: str, entry: Entry, loaded_at: dt.datetime) -> str:
    parts = [prev_hash, *("" if v is None else str(v) for v in asdict(entry).values()),
             loaded_at.isoformat()]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def append(con: duckdb.DuckDBPyConnection, entry: Entry, run_id: str | None = None) -> str:
    """Append one entry at the end of the chain and return its hash."""
    last = con.execute(
        "select entry_id, entry_hash from audit.load_ledger order by entry_id desc limit 1"
    ).fetchall()
    entry_id, prev_hash = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
    loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    digest = entry_hash(prev_hash, entry, loaded_at)
    values = asdict(entry)
    con.execute(
        f"insert into audit.load_ledger (entry_id, {', '.join(FIELDS)}, loaded_at, run_id, prev_hash, "
        f"entry_hash) values (?, {', '.join('?' for _ in FIELDS)}, ?, ?, ?, ?)",
        [entry_id, *values.values(), loaded_at, run_id, prev_hash, digest],
    )
    return digest


def verify(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every break in the chain, as sentences naming the entry; empty when the ledger is intact."""
    rows = con.execute(
        f"select entry_id, {', '.join(FIELDS)}, loaded_at, prev_hash, entry_hash "
        "from audit.load_ledger order by entry_id"
    ).fetchall()
    problems = []
    prev = GENESIS
    expected_id = 1
    for row in rows:
        entry_id, *values, loaded_at, prev_hash, digest = row
        if entry_id != expected_id:
            problems.append(f"entry {expected_id} is missing (next entry is {entry_id})")
        if prev_hash != prev:
            problems.append(f"entry {entry_id} does not follow entry {entry_id - 1} (prev_hash differs)")
        if entry_hash(prev_hash, Entry(*values), loaded_at) != digest:
            problems.append(f"entry {entry_id} ({values[0]}/{values[1]}/{values[2]}) was altered after it was written")
        prev, expected_id = digest, entry_id + 1
    return problems


def head(con: duckdb.DuckDBPyConnection) -> str:
    """The newest entry's hash: it changes whenever anything is loaded."""
    last = con.execute("select entry_hash from audit.load_ledger order by entry_id desc limit 1").fetchall()
    return last[0][0] if last else GENESIS
