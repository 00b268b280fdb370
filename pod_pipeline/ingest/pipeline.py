"""Ingestion's one entry point: the steps the assets run, callable in the same order without Dagster.

1. `record_landing`: find sealed batches and verify each against its manifest, once;
2. `ingest_file`, for each file in `SPECS` order: load what is pending (incrementally: only batches
   not yet loaded), then rebuild the current raw rows of the sites whose inputs changed, and
   profile the export drift of each site whose newest export is new (drift.py);
3. `current.refresh_audit_views`: the quarantine and ledger as dbt sources.

`ingest_zone` runs all three, as a run of the ingestion assets does (tests and tools use it).
"""

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pod_pipeline.ingest import current, drift, landing, load
from pod_pipeline.ingest.specs import SPECS


@dataclass(frozen=True)
class FileIngestion:
    outcomes: list[load.FileOutcome]  # one per batch file loaded or rejected now
    rows: int  # rows of the raw table now


def record_landing(con: duckdb.DuckDBPyConnection, landing_dir: Path,
                   run_id: str | None = None) -> tuple[landing.Discovery, landing.BatchReport]:
    load.ensure_schema(con)
    found = landing.discover(landing_dir)
    return found, landing.record_batches(con, found.sealed, run_id)


def ingest_file(con: duckdb.DuckDBPyConnection, landing_dir: Path, file: str, pseudonym_key: str,
                run_id: str | None = None) -> FileIngestion:
    load.ensure_schema(con)
    outcomes = [load.load_file(con, SPECS[file], batch, pseudonym_key, run_id)
                for batch in landing.pending_files(con, landing_dir, file)]
    rows = current.refresh(con, file, pseudonym_key, run_id)
    if file in drift.FILES:
        drift.record(con, file)
    return FileIngestion(outcomes, rows)


def ingest_zone(con: duckdb.DuckDBPyConnection, landing_dir: Path, pseudonym_key: str,
                run_id: str | None = None) -> dict[str, FileIngestion]:
    record_landing(con, landing_dir, run_id)
    done = {file: ingest_file(con, landing_dir, file, pseudonym_key, run_id) for file in SPECS}
    current.refresh_audit_views(con)
    return done
