"""Finding sealed batches in the landing zone and recording each one once in the ledger."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.batch_manifest import (
    EXPORT_ID_PATTERN,
    MANIFEST,
    SITE_PATTERN,
    check_batch,
    manifest_sha256,
)
from pod_pipeline.ingest.load import BatchFile, quarantine_file


@dataclass
class Discovery:
    sealed: list[Path] = field(default_factory=list)
    unsealed: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # folders that are not <site>/<export_id>


@dataclass
class BatchReport:
    new_accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (batch, error)
    already_seen: int = 0
    warnings: list[str] = field(default_factory=list)


def discover(landing_root: Path) -> Discovery:
    """Sealed and unsealed batches, in (site, export_id) order."""
    found = Discovery()
    if not landing_root.is_dir():
        raise FileNotFoundError(f"landing zone {landing_root} does not exist (set POD_LANDING_DIR)")
    for site_dir in sorted(p for p in landing_root.iterdir() if p.is_dir()):
        if not SITE_PATTERN.match(site_dir.name):
            found.ignored.append(f"{site_dir.name}/: not a site code (lower-case letters and digits)")
            continue
        for batch_dir in sorted(p for p in site_dir.iterdir() if p.is_dir()):
            if not EXPORT_ID_PATTERN.match(batch_dir.name):
                found.ignored.append(f"{site_dir.name}/{batch_dir.name}/: not an export id like 20261120T060000Z")
            elif (batch_dir / MANIFEST).is_file():
                found.sealed.append(batch_dir)
            else:
                found.unsealed.append(batch_dir)
    return found


def record_batches(con: duckdb.DuckDBPyConnection, sealed: list[Path], run_id: str | None = None) -> BatchReport:
    """Check every sealed batch not yet in the ledger; accept it or reject it whole."""
    report = BatchReport()
    seen = {
        (site, export_id, digest): status
        for site, export_id, digest, status in con.execute(
            "select site, export_id, sha256, status from audit.load_ledger where file = $f", {"f": MANIFEST}
        ).fetchall()
    }
    accepted_before = {(s, e): d for (s, e, d), status in seen.items() if status == "accepted"}
    for batch_dir in sealed:
        # A batch the ledger knows by this manifest was verified when it arrived: its files are not
        # read again (a cumulative zone would otherwise be hashed in full on every run).
        if (batch_dir.parent.name, batch_dir.name, manifest_sha256(batch_dir)) in seen:
            report.already_seen += 1
            continue
        check = check_batch(batch_dir)
        name = f"{check.site}/{check.export_id}"
        con.execute("begin transaction")
        if (check.site, check.export_id) in accepted_before and check.accepted:
            check.error_reason, check.error_file = "manifest_mismatch", MANIFEST
            check.error = (f"{batch_dir / MANIFEST}: this batch was loaded before with another manifest; "
                           "a loaded batch never changes — deliver the new data as a new export_id")
        if check.accepted:
            ledger.append(con, ledger.Entry(check.site, check.export_id, MANIFEST, check.manifest_sha256,
                                            "accepted"), run_id)
            report.new_accepted.append(name)
        else:
            detail = check.error.replace(f"{batch_dir}/", "")
            ledger.append(con, ledger.Entry(check.site, check.export_id, MANIFEST, check.manifest_sha256,
                                            "rejected", error=f"{check.error_reason}: {detail}"), run_id)
            quarantine_file(con, check.site, check.export_id, check.error_file or MANIFEST,
                            check.error_reason, detail, "batch", run_id=run_id)
            report.rejected.append((name, f"{check.error_reason}: {detail}"))
        for unlisted in check.unlisted:
            ledger.append(con, ledger.Entry(check.site, check.export_id, unlisted, None, "ignored",
                                            error="present in the folder but not listed in the manifest"), run_id)
            report.warnings.append(f"{name}/{unlisted}: not listed in the manifest, ignored")
        for unknown in check.unknown if check.accepted else []:
            ledger.append(con, ledger.Entry(check.site, check.export_id, unknown, None, "ignored",
                                            error="not a file the landing-zone contract knows"), run_id)
            report.warnings.append(f"{name}/{unknown}: not a contract file, ignored")
        con.execute("commit")
    return report


def unrecorded_batches(con: duckdb.DuckDBPyConnection, sealed: list[Path]) -> list[Path]:
    """Sealed batches the ledger does not know by their current manifest (read-only)."""
    seen = set(con.execute("select site, export_id, sha256 from audit.load_ledger where file = $f",
                           {"f": MANIFEST}).fetchall())
    return [batch for batch in sealed
            if (batch.parent.name, batch.name, manifest_sha256(batch)) not in seen]


def gone_batches(con: duckdb.DuckDBPyConnection, landing_root: Path) -> list[str]:
    """Accepted batches (site/export_id) whose folder or manifest is no longer in the landing zone.
    What was loaded from them stays in history; a file of theirs not loaded yet cannot be."""
    rows = con.execute("select distinct site, export_id from audit.load_ledger "
                       "where file = $manifest and status = 'accepted' order by site, export_id",
                       {"manifest": MANIFEST}).fetchall()
    return [f"{site}/{export_id}" for site, export_id in rows
            if not (landing_root / site / export_id / MANIFEST).is_file()]


def pending_files(con: duckdb.DuckDBPyConnection, landing_root: Path, file: str) -> list[BatchFile]:
    """Accepted batches that list `file` and have not loaded or rejected it yet, oldest first."""
    rows = con.execute(
        "select site, export_id from audit.load_ledger b where file = $manifest and status = 'accepted' "
        "and not exists (select 1 from audit.load_ledger f where f.site = b.site "
        "and f.export_id = b.export_id and f.file = $file and f.status in ('loaded', 'rejected')) "
        "order by export_id, site",
        {"manifest": MANIFEST, "file": file},
    ).fetchall()
    pending = []
    for site, export_id in rows:
        batch_dir = landing_root / site / export_id
        if not (batch_dir / MANIFEST).is_file():
            continue  # no longer in the landing zone: `gone_batches` names it
        listed = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8-sig"))["files"]
        if file in listed:
            pending.append(BatchFile(site, export_id, batch_dir / file, listed[file], landing_root))
    return pending
