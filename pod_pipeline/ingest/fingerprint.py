"""The publication fingerprint: what a run's outputs depend on (loaded data, settings, code), so a
run with nothing new can skip all its work."""

import hashlib
from pathlib import Path

import duckdb

from pod_pipeline import __version__
from pod_pipeline.ingest import landing, ledger
from pod_pipeline.ingest.specs import SPECS
from pod_pipeline.settings import DBT_PROJECT_DIR, EXPECTATIONS_DIR, PROJECT_ROOT, Settings, masked_url
from pod_pipeline.sql import table_exists

STATE_DDL = """
create schema if not exists audit;
create table if not exists audit.publications (
    published_at timestamp not null, run_id varchar, fingerprint varchar not null,
    ledger_head varchar not null, reference_date date not null
);
"""
# Everything whose change changes the marts: the transformations, the rules and the code location.
# Not the application on top (the `pod` command, the runner, the UI process), nor the tooling beside
# the product (pod_devtools) or the tests: changing those rebuilds nothing.
CODE_DIRS = (DBT_PROJECT_DIR / "models", DBT_PROJECT_DIR / "seeds", DBT_PROJECT_DIR / "macros",
             DBT_PROJECT_DIR / "tests", EXPECTATIONS_DIR, PROJECT_ROOT / "pod_pipeline")
NOT_CODE = (PROJECT_ROOT / "pod_pipeline" / "app",)


def code_files() -> list[Path]:
    """The files whose content is the code version, in a stable order."""
    return [path for directory in CODE_DIRS for path in sorted(Path(directory).rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
            and not any(path.is_relative_to(excluded) for excluded in NOT_CODE)]


def code_version() -> str:
    digest = hashlib.sha256(__version__.encode())
    for path in code_files():
        digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
    """Hash of the loaded data (the ledger's head), the settings a publication depends on and the code."""
    parts = [ledger.head(con), *(f"{k}={v}" for k, v in sorted(settings.publication_settings().items())),
             code_version()]
    if settings.publish_postgres_url:  # a server to serve from is an output: a new one is filled at once
        parts.append(f"publish_postgres={masked_url(settings.publish_postgres_url)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def last_published_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    con.execute(STATE_DDL)
    rows = con.execute("select fingerprint from audit.publications order by published_at desc limit 1").fetchall()
    return rows[0][0] if rows else None


def record_publication(con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str) -> str:
    con.execute(STATE_DDL)
    state = fingerprint(con, settings)
    con.execute("insert into audit.publications values (current_timestamp, ?, ?, ?, ?)",
                [run_id, state, ledger.head(con), settings.reference_date])
    return state


def current_publication(con: duckdb.DuckDBPyConnection, settings: Settings) -> tuple[str, object] | None:
    """(run id, time) of the last publication when nothing has changed since it, else None.

    Nothing changed means: the published file is there, no sealed batch the ledger does not know,
    no file of a known batch left to load, and the same fingerprint (loaded data, settings, code).
    Read-only, so `pod run` and `pod deliver` can answer a no-op without starting a run: the answer
    the landing asset would reach after every step of a run had been planned and started.
    """
    if not (table_exists(con, "audit", "publications") and table_exists(con, "audit", "load_ledger")):
        return None
    if not settings.published_db.exists():
        return None
    if landing.unrecorded_batches(con, landing.discover(settings.landing_dir).sealed):
        return None
    if any(landing.pending_files(con, settings.landing_dir, file) for file in SPECS):
        return None
    rows = con.execute("select run_id, published_at, fingerprint from audit.publications "
                       "order by published_at desc limit 1").fetchall()
    if not rows or rows[0][2] != fingerprint(con, settings):
        return None
    return rows[0][0], rows[0][1]
