"""Build small landing zones in tests: rows as dicts, written as the contract's CSV files."""

import csv
import io
from pathlib import Path

import duckdb

from pod_pipeline.ingest import pipeline
from pod_pipeline.ingest.batch_manifest import seal_batch
from pod_pipeline.ingest.rules import instrument_items
from pod_pipeline.ingest.specs import DICTIONARY_COLUMNS, REDCAP_PLUMBING, SPECS

KEY = "test-key-0123456789-0123456789-0123456789"
REDCAP_COLUMNS = [*REDCAP_PLUMBING, *(i.field_name for i in instrument_items())]


def participant(study_id: str, **overrides: str) -> dict[str, str]:
    row = {"study_id": study_id, "nhs_number": "", "date_of_birth": "1980-05-01", "gender": "1",
           "ethnic_category": "A", "arm": "POD", "cluster_id": "", "consent_date": "2024-03-01",
           "withdrawal_date": "", "withdrawal_type": ""}
    return row | overrides


def redcap(record_id: str, event: str = "baseline_arm_1", **fields: str) -> dict[str, str]:
    return {"record_id": record_id, "redcap_event_name": event} | fields


def honos(assessment_id: str, nhs_number: str, date: str = "2024-03-05", **items: str) -> dict[str, str]:
    row = {"assessment_id": assessment_id, "nhs_number": nhs_number, "assessment_date": date,
           "rater_role": "Nurse", **{f"honos_{i:02d}": "1" for i in range(1, 13)},
           "honos_08_problem_type": "B"}
    return row | items


def meeting(meeting_id: str, study_id: str, date: str = "2024-03-10", **fields: str) -> dict[str, str]:
    row = {"meeting_id": meeting_id, "study_id": study_id, "meeting_date": date, "duration_minutes": "60",
           "service_user_present": "1", "family_members_present": "2", "other_network_members_present": "0",
           "clinicians_present": "2", "peer_support_worker_present": "1",
           **{f"key_element_{i:02d}": "2" for i in range(1, 13)}}
    return row | fields


def episode(episode_id: str, nhs_number: str, start: str = "2024-03-10", end: str = "2024-03-20",
            episode_type: str = "inpatient", **fields: str) -> dict[str, str]:
    row = {"episode_id": episode_id, "nhs_number": nhs_number, "episode_type": episode_type,
           "start_date": start, "end_date": end, "detained": "0"}
    return row | fields


def dictionary_rows(identifier_fields: tuple[str, ...] = ()) -> list[dict[str, str]]:
    rows = [{"Variable / Field Name": "record_id", "Form Name": "visit", "Field Type": "text"}]
    for item in instrument_items():
        if item.role == "completion":
            continue
        row = {"Variable / Field Name": item.field_name, "Form Name": item.instrument, "Field Type": "text",
               "Text Validation Type OR Show Slider Number": "integer" if item.value_type == "integer" else "",
               "Text Validation Min": "" if item.min_value is None else str(item.min_value),
               "Text Validation Max": "" if item.max_value is None else str(item.max_value),
               "Identifier?": "y" if item.field_name in identifier_fields else ""}
        rows.append(row)
    return rows


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]], newline: str = "\n") -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator=newline, extrasaction="raise")
    writer.writeheader()
    writer.writerows([{c: r.get(c, "") for c in columns} for r in rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def batch(root: Path, site: str, export_id: str, *, register=None, redcap_rows=None, honos_rows=None,
          meetings=None, dictionary=None, acute_care=None, seal: bool = True) -> Path:
    """Write one batch with the given files (None = file left out) and seal it."""
    folder = root / site / export_id
    folder.mkdir(parents=True)
    files = {"register.csv": register, "redcap_records.csv": redcap_rows, "honos.csv": honos_rows,
             "network_meetings.csv": meetings, "redcap_dictionary.csv": dictionary, "acute_care.csv": acute_care}
    for name, rows in files.items():
        if rows is None:
            continue
        columns = {"redcap_records.csv": REDCAP_COLUMNS,
                   "redcap_dictionary.csv": list(DICTIONARY_COLUMNS)}.get(name, list(SPECS[name].required))
        write_csv(folder / name, columns, rows)
    if seal:
        seal_batch(folder)
    return folder


def ingest(root: Path, db: Path) -> duckdb.DuckDBPyConnection:
    """Run ingestion as a run of the ingestion assets does, without Dagster."""
    con = duckdb.connect(str(db))
    pipeline.ingest_zone(con, root, KEY)
    return con


def quarantine(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(file, line, column, reason, scope, instrument), sorted: every quarantine entry of every batch,
    with the cross-file verdicts on the current files."""
    return con.execute('select file, line, "column", reason, scope, instrument from raw.quarantine '
                       'order by file, line nulls first, "column", reason').fetchall()
