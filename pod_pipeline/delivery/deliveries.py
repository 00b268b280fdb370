"""Trial deliveries: a dated folder of marts, their dictionary and a verifiable manifest.

A delivery is assembled in a hidden folder and renamed into place complete, with its files made
read-only; an existing delivery folder is never written again. The manifest lists every file with
its SHA-256, so the receiving statisticians (or `verify_delivery`) can prove the files are the ones
the pipeline wrote, and records what the data was built from: the landing batches with their
manifest checksums from the load ledger, the pipeline version, value set and price year.
"""

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow.parquet as pq

from pod_pipeline import __version__, csvsafe
from pod_pipeline.delivery.dictionary import HEADER, ColumnDoc, dictionary_rows
from pod_pipeline.delivery.publication import mart_tables
from pod_pipeline.ingest.batch_manifest import MANIFEST as BATCH_MANIFEST
from pod_pipeline.ingest.batch_manifest import sha256_file
from pod_pipeline.ingest.fingerprint import code_version
from pod_pipeline.ingest.ledger import GENESIS
from pod_pipeline.settings import Settings
from pod_pipeline.sql import lit

# What the national trial receives: the participant-level marts (time to relapse among them) and the
# two CONSORT/completeness tables. Site-facing operational marts (quarantine, missing_assessments) stay with the team.
DELIVERABLE = (
    "participants",
    "participant_timepoints",
    "outcome_scores",
    "carer_timepoints",
    "network_meetings",
    "service_use_costs",
    "cost_effectiveness",
    "completeness",
    "participant_flow",
    "time_to_relapse",
)
DICTIONARY = "data_dictionary.csv"
TRIAL_TIMEZONE = ZoneInfo("Europe/London")

# The delivery's own manifest (not a landing batch's manifest.json, nor dbt's manifest).
DELIVERY_MANIFEST = "manifest.json"


class DeliveryRefused(RuntimeError):
    """A delivery the pipeline will not write; the message says why and what to do."""


@dataclass(frozen=True)
class Provenance:
    """What a delivery was built from, as recorded in the working database."""

    run_id: str
    reference_date: str
    value_set: str
    price_year: str
    publication: dict[str, Any]
    landing_batches: list[dict[str, Any]]
    erased_all_data: int


def delivery_day() -> dt.date:
    """Deliveries are named by the trial's (UK) calendar day."""
    return dt.datetime.now(TRIAL_TIMEZONE).date()


def delivery_folder(root: Path, day: dt.date, new_folder: bool) -> Path:
    """deliveries/<day>, or the next free <day>_<n> when asked; never an existing folder."""
    folder = root / day.isoformat()
    if not folder.exists():
        return folder
    number = 2
    while (root / f"{folder.name}_{number}").exists():
        number += 1
    if not new_folder:
        raise DeliveryRefused(
            f"{folder} already exists and a delivery folder is never rewritten. To deliver again "
            f"on {folder.name}, launch the delivery with config new_folder: true (it will write "
            f"{folder.name}_{number})."
        )
    return root / f"{folder.name}_{number}"


def erased_participants(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Study ids withdrawn with `all_data`: to prove they are absent; never written anywhere."""
    rows = con.execute(
        "select distinct study_id from raw.register where withdrawal_type = 'all_data'"
    )
    return [study_id for (study_id,) in rows.fetchall()]


def provenance(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, erased: int
) -> Provenance:
    """The last publication and the exact landing batches (from the ledger) it was built from."""
    published = con.execute(
        "select published_at, run_id, fingerprint, ledger_head, reference_date "
        "from audit.publications order by published_at desc limit 1"
    ).fetchall()
    if not published:
        raise DeliveryRefused("nothing has been published yet: run the pipeline (`pod run`) first")
    published_at, publication_run, fingerprint, head, reference_date = published[0]
    last_entry = con.execute(
        "select coalesce(max(entry_id), 0) from audit.load_ledger where entry_hash = $h",
        {"h": head},
    ).fetchall()[0][0]
    if head != GENESIS and not last_entry:
        raise DeliveryRefused(f"the ledger has no entry {head}: the load ledger was altered")
    files: dict[tuple[str, str], dict[str, Any]] = {}
    for site, export_id, file, sha256, status, loaded, quarantined in con.execute(
        "select site, export_id, file, sha256, status, rows_loaded, rows_quarantined "
        "from audit.load_ledger where file <> $m and status in ('loaded', 'rejected') "
        "and entry_id <= $last order by site, export_id, file",
        {"m": BATCH_MANIFEST, "last": last_entry},
    ).fetchall():
        files.setdefault((site, export_id), {})[file] = {
            "sha256": sha256,
            "status": status,
            "rows_loaded": loaded,
            "rows_quarantined": quarantined,
        }
    batches = [
        {
            "site": site,
            "export_id": export_id,
            "manifest_sha256": sha256,
            "ledger_entry": entry_id,
            "accepted_at": accepted_at.isoformat(),
            "files": files.get((site, export_id), {}),
        }
        for entry_id, site, export_id, sha256, accepted_at in con.execute(
            "select entry_id, site, export_id, sha256, loaded_at from audit.load_ledger "
            "where file = $m and status = 'accepted' and entry_id <= $last "
            "order by site, export_id",
            {"m": BATCH_MANIFEST, "last": last_entry},
        ).fetchall()
    ]
    return Provenance(
        run_id=run_id,
        reference_date=reference_date.isoformat(),
        value_set=settings.value_set,
        price_year=settings.price_year,
        landing_batches=batches,
        erased_all_data=erased,
        publication={
            "published_at": published_at.isoformat(),
            "run_id": publication_run,
            "fingerprint": fingerprint,
            "ledger_head": head,
        },
    )


def write_delivery(
    published: duckdb.DuckDBPyConnection,
    folder: Path,
    source: Provenance,
    docs: dict[str, dict[str, ColumnDoc]],
    erased: list[str],
) -> dict[str, Any]:
    """Write the marts, dictionary and manifest.json into `folder`; return the manifest."""
    missing = sorted(set(DELIVERABLE) - set(mart_tables(published)))
    if missing:
        raise DeliveryRefused(
            f"the published marts lack {', '.join(missing)}: nothing was delivered"
        )
    _check_value_set(published, source)
    _check_erasure(published, erased)
    staged = folder.with_name(f".{folder.name}.partial")
    staged.mkdir(parents=True)
    tables, files = {}, {}
    for table in DELIVERABLE:
        rows = published.execute(f'select count(*) from marts."{table}"').fetchall()[0][0]
        csvsafe.copy_csv(published, f'marts."{table}"', staged / f"{table}.csv")
        published.execute(
            f"copy marts.\"{table}\" to {lit(str(staged / f'{table}.parquet'))} "
            "(format parquet, compression zstd)"
        )
        tables[table] = {"rows": rows}
        for suffix in ("csv", "parquet"):
            files[f"{table}.{suffix}"] = {"table": table, "rows": rows}
    entries = dictionary_rows(published, list(DELIVERABLE), docs)
    for table, entry in tables.items():
        columns = [row for row in entries if row[0] == table]
        entry["columns"] = len(columns)
        entry["columns_without_description"] = sum(1 for row in columns if not row[3])
    csvsafe.write_csv(staged / DICTIONARY, HEADER, entries)
    files[DICTIONARY] = {"table": None, "rows": len(entries)}
    for name, entry in files.items():
        entry["bytes"] = (staged / name).stat().st_size
        entry["sha256"] = sha256_file(staged / name)
    manifest = {
        "delivery": folder.name,
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pipeline_version": __version__,
        "code_version": code_version(),
        "dagster_run_id": source.run_id,
        "reference_date": source.reference_date,
        "value_set": source.value_set,
        "price_year": source.price_year,
        "participants_erased_all_data": source.erased_all_data,
        "publication": source.publication,
        "landing_batches": source.landing_batches,
        "tables": tables,
        "files": files,
    }
    (staged / DELIVERY_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for path in staged.iterdir():
        path.chmod(0o444)
    if folder.exists():
        raise DeliveryRefused(f"{folder} appeared while the delivery was written; left in {staged}")
    staged.rename(folder)
    return manifest


def _check_value_set(published: duckdb.DuckDBPyConnection, source: Provenance) -> None:
    """The manifest's value set and price year must be those the delivered costs and QALYs use."""
    used = published.execute(
        "select distinct value_set, price_year from marts.cost_effectiveness order by all"
    ).fetchall()
    if used and used != [(source.value_set, source.price_year)]:
        raise DeliveryRefused(
            f"marts.cost_effectiveness uses {used}, the settings say {source.value_set} / "
            f"{source.price_year}: rebuild the marts (`pod run --force`) before delivering"
        )


def _check_erasure(published: duckdb.DuckDBPyConnection, erased: list[str]) -> None:
    if not erased:
        return
    for table in DELIVERABLE:
        columns = [
            c[0] for c in published.execute(f'select * from marts."{table}" limit 0').description
        ]
        if "participant_id" not in columns:
            continue
        found = published.execute(
            f'select count(*) from marts."{table}" where participant_id in (select unnest($ids))',
            {"ids": erased},
        ).fetchall()[0][0]
        if found:
            raise DeliveryRefused(
                f"marts.{table} holds {found} row(s) of participants who withdrew "
                "all their data (all_data): nothing was delivered"
            )


def verify_delivery(folder: Path) -> list[str]:
    """Every way a delivery folder differs from its manifest; empty when it verifies."""
    manifest = json.loads((Path(folder) / DELIVERY_MANIFEST).read_text(encoding="utf-8"))
    problems = []
    listed = manifest["files"]
    for name in sorted(set(os.listdir(folder)) - set(listed) - {DELIVERY_MANIFEST}):
        problems.append(f"{name}: in the folder but not in the manifest")
    for name, entry in sorted(listed.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest")
        if path.stat().st_size != entry["bytes"]:
            problems.append(
                f"{name}: {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
            )
        rows = _count_rows(path)
        if rows != entry["rows"]:
            problems.append(f"{name}: {rows} rows, the manifest says {entry['rows']}")
    for table, entry in manifest["tables"].items():
        for suffix in ("csv", "parquet"):
            if listed.get(f"{table}.{suffix}", {}).get("rows") != entry["rows"]:
                problems.append(f"{table}.{suffix}: row count differs from tables.{table}")
    return problems


def _count_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.read_metadata(path).num_rows
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1
