"""Writing one site's exports: cut, plant, write, seal; then the site's fault batches."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pod_devtools.synth.defects import plant
from pod_devtools.synth.faults import batch_faults, file_faults, unsealed
from pod_devtools.synth.notes import batch_notes, fault_notes, site_notes
from pod_devtools.synth.people import day
from pod_devtools.synth.plant import Batch, Plant
from pod_devtools.synth.site import Site, cut, first_dictionary
from pod_devtools.synth.writer import CsvFile, Written, write_csv
from pod_pipeline.ingest.batch_manifest import seal_batch

Plan = dict[int, dict[str, list[str]]]  # export index (-1 = last) -> file -> defect kinds
FIRST_NAMES = np.array(["Alex", "Sam", "Priya", "Tom", "Aisha", "Chloe", "Grace", "Kwame"])
LAST_NAMES = np.array(["Smith", "Jones", "Patel", "Brown", "Khan", "Evans", "Walker", "Okafor"])


@dataclass
class SiteOutcome:
    """What writing a site produced: planted quarantine rows, notes and counts."""

    planted: list[dict[str, object]] = field(default_factory=list)
    notes: list[dict[str, object]] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)
    files: int = 0
    batches: int = 0


def write_site(
    site: Site,
    site_dir: Path,
    plan: Plan,
    streams: tuple[np.random.Generator, np.random.Generator],
    spare_nhs: np.ndarray,
    drift: bool,
    faults: bool,
) -> SiteOutcome:
    """All of a site's exports; `drift` adds drift columns, `faults` the fault batches."""
    # Corrections and defects draw from separate streams: planting leaves the clean content alone.
    correcting, planting = streams
    spec, outcome = site.spec, SiteOutcome()
    eol = "\r\n" if spec.crlf else "\n"
    last = len(spec.exports) - 1
    for k, export_id in enumerate(spec.export_ids):
        piece = cut(site, k, correcting, first_dictionary(drift) if k == 0 else None)
        if drift:
            _drift_columns(piece.files, piece.persons, planting)
        batch = Batch(
            spec,
            export_id,
            day(spec.exports[k]),
            site.people,
            piece.files,
            piece.persons,
            site.redcap.event[piece.redcap_rows],
            site.redcap.instance[piece.redcap_rows],
            planting,
            spare_nhs,
        )
        for index, at in ((0, _early_export(site)), (-1, last)):
            if at == k:
                plant(batch, plan.get(index, {}))
        batch_dir = site_dir / export_id
        batch_dir.mkdir(parents=True)
        written = {name: write_csv(batch_dir / name, f, eol) for name, f in piece.files.items()}
        seal_batch(batch_dir)
        outcome.notes += batch_notes(site, k, piece)
        _record(outcome, spec.code, export_id, batch.plants, written)
    if faults:
        last_dir = site_dir / spec.export_ids[-1]
        (last_dir / "register_draft.csv").write_bytes((last_dir / "register.csv").read_bytes())
        export_id, plants, written = file_faults(site_dir, spec, piece.files, eol)
        _record(outcome, spec.code, export_id, plants, written)
        for export_id, plants, written in batch_faults(site_dir, spec, last_dir):
            _record(outcome, spec.code, export_id, plants, written)
        outcome.notes += fault_notes(
            spec.code, spec.export_ids[-1], unsealed(site_dir, spec, last_dir)
        )
    outcome.notes += site_notes(site, drift)
    outcome.batches = sum(1 for p in site_dir.iterdir() if p.is_dir())
    return outcome


def _early_export(site: Site) -> int:
    """Where a plan's first-export defects go: the first export with a few meetings in it."""
    for k, moment in enumerate(site.spec.exports):
        shown = (site.meetings.date < day(moment)) & (
            site.people.consent[site.meetings.person] < day(moment)
        )
        if shown.sum() >= 3:
            return k
    return len(site.spec.exports) - 1


def _record(
    outcome: SiteOutcome,
    site: str,
    export_id: str,
    plants: list[Plant],
    written: dict[str, Written],
) -> None:
    """Count what was written and resolve each plant's anchor to the line it was written on."""
    for name, w in written.items():
        outcome.rows[name] += w.rows
    outcome.files += len(written)
    outcome.planted += [
        {
            "site": site,
            "export_id": export_id,
            "file": p.file,
            "line": None if p.anchor is None else written[p.file].line(p.anchor),
            "column": p.column,
            "reason": p.reason,
            "scope": p.scope,
        }
        for p in plants
    ]


def _drift_columns(
    files: dict[str, CsvFile], persons: dict[str, np.ndarray], rng: np.random.Generator
) -> None:
    """Columns the contract lacks: a name flagged as identifier, a field not in the dictionary
    (REDCap), and a meeting venue."""
    records = files["redcap_records.csv"].table
    person = persons["redcap_records.csv"]
    main = np.asarray(records["redcap_repeat_instance"].is_null())
    names = np.char.add(FIRST_NAMES[person % 8], np.char.add(" ", LAST_NAMES[person // 8 % 8]))
    place = np.array(["Home", "Clinic", "Telephone"])[rng.integers(0, 3, len(person))]
    records = records.add_column(5, "participant_name", pa.array(names.astype(str), mask=~main))
    at = records.schema.get_field_index("visit_date") + 1
    files["redcap_records.csv"].table = records.add_column(
        at, "visit_location", pa.array(place.astype(str), mask=~main)
    )
    meetings = files["network_meetings.csv"].table
    venue = np.array(["Home", "Team base", "Video call"])[rng.integers(0, 3, meetings.num_rows)]
    files["network_meetings.csv"].table = meetings.append_column(
        "venue", pa.array(venue.astype(str))
    )
