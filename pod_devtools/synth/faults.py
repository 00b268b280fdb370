"""Whole-batch and whole-file faults, each in an export of its own after the regular ones.

A rejected batch or file leaves the previous accepted version standing, so none of these causes
a quarantine anywhere else.
"""

import datetime as dt
import json
import shutil
from pathlib import Path

from pod_devtools.synth.config import SiteSpec
from pod_devtools.synth.plant import Plant
from pod_devtools.synth.writer import CsvFile, Written, row_values, write_csv
from pod_pipeline.ingest.batch_manifest import MANIFEST, seal_batch

FaultBatch = tuple[str, list[Plant], dict[str, Written]]


def _export_id(spec: SiteSpec, days_after: int) -> str:
    """An export id some days after the last regular export."""
    return (spec.exports[-1] + dt.timedelta(days=days_after)).strftime("%Y%m%dT%H%M%SZ")


def file_faults(site_dir: Path, spec: SiteSpec, last: dict[str, CsvFile], eol: str) -> FaultBatch:
    """One sealed export whose every file is rejected whole: four file-level faults."""
    export_id = _export_id(spec, 1)
    batch = site_dir / export_id
    batch.mkdir()
    honos = last["honos.csv"].table
    # An export saved as Windows-1252: the é of a rater's role is not UTF-8.
    latin = [*row_values(honos, 0)[:3], "Infirmière (agency)", *row_values(honos, 0)[4:]]
    register = last["register.csv"].table
    meetings = last["network_meetings.csv"].table
    files = {
        "honos.csv": CsvFile(honos, [latin], quote_all=True, extra_encoding="cp1252"),
        "register.csv": CsvFile(
            register.drop_columns(["consent_date"]), bom=last["register.csv"].bom
        ),
        "network_meetings.csv": CsvFile(
            meetings.append_column("duration_minutes", meetings["duration_minutes"])
        ),
        "redcap_dictionary.csv": CsvFile(None),
    }
    written = {name: write_csv(batch / name, f, eol) for name, f in files.items()}
    seal_batch(batch)
    plants = [
        Plant("honos.csv", ("extra", 0), None, "not_utf8", "file"),
        Plant("register.csv", None, "consent_date", "missing_column", "file"),
        Plant("network_meetings.csv", None, "duration_minutes", "duplicate_column", "file"),
        Plant("redcap_dictionary.csv", None, None, "empty_file", "file"),
    ]
    return export_id, plants, written


def batch_faults(site_dir: Path, spec: SiteSpec, last_batch: Path) -> list[FaultBatch]:
    """Four sealed exports rejected whole, each for one manifest fault."""
    faults = []
    for days_after, (reason, file) in enumerate(
        [
            ("manifest_invalid", MANIFEST),
            ("manifest_mismatch", MANIFEST),
            ("file_missing", "network_meetings.csv"),
            ("checksum_mismatch", "register.csv"),
        ],
        start=2,
    ):
        export_id = _export_id(spec, days_after)
        batch = _copy_batch(last_batch, site_dir / export_id)
        manifest_path = seal_batch(batch)
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if reason == "manifest_invalid":
            manifest_path.write_text(
                manifest_path.read_text(encoding="utf-8")[:60], encoding="utf-8"
            )
        elif reason == "manifest_mismatch":
            manifest["export_id"] = spec.export_ids[-1]
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        elif reason == "file_missing":
            (batch / file).unlink()
        else:
            with (batch / file).open("ab") as handle:
                handle.write(b"edited after sealing\n")
        faults.append((export_id, [Plant(file, None, None, reason, "batch")], {}))
    return faults


def unsealed(site_dir: Path, spec: SiteSpec, last_batch: Path) -> str:
    """An export still being delivered: files, no manifest yet."""
    export_id = _export_id(spec, 6)
    _copy_batch(last_batch, site_dir / export_id)
    return export_id


def _copy_batch(source: Path, target: Path) -> Path:
    """A new batch folder holding copies of two files of the source batch."""
    target.mkdir()
    for name in ("register.csv", "network_meetings.csv"):
        shutil.copyfile(source / name, target / name)
    return target
