"""Withdrawal of consent to all data (`all_data`) arriving in a later export.

The shared story (tests/scenario.py) delivers batch 1, then lands batch 2 in which a participant
with carers withdraws with all_data, runs again (after a killed run) and delivers to a new folder.
test_delivery.py already proves, on stand-in marts, that a delivery refuses a mart still holding
an erased participant and never names them; this module proves the whole pipeline erases them.
"""

import json
from pathlib import Path

import duckdb
import pytest
import scenario

pytestmark = pytest.mark.slow


def rows_naming(con: duckdb.DuckDBPyConnection, relations: list[str], ids: set[str]) -> dict:
    """Rows of each relation with a text value equal to one of the ids (any column)."""
    found = {}
    for relation in relations:
        columns = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
        condition = " or ".join(f'cast("{c}" as varchar) in (select unnest($ids))' for c in columns)
        count = con.execute(f"select count(*) from {relation} where {condition}",
                            {"ids": sorted(ids)}).fetchall()[0][0]
        if count:
            found[relation] = count
    return found


def database_naming(path: Path, ids: set[str]) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        marts = [f'marts."{t}"' for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()]
        assert len(marts) >= 10
        return rows_naming(con, marts, ids)


def folder_naming(folder: Path, ids: set[str]) -> dict:
    """Files of a delivery or Parquet release that name one of the ids."""
    found = {}
    con = duckdb.connect()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix == ".parquet":
            hits = sum(rows_naming(con, [f"read_parquet('{path}')"], ids).values())
        else:
            hits = sum(path.read_text(encoding="utf-8").count(i) for i in ids)
        if hits:
            found[path.name] = hits
    return found


def carer_rows(folder: Path, participant: str) -> int:
    return duckdb.connect().execute(
        f"select count(*) from read_parquet('{folder / 'carer_timepoints.parquet'}') "
        "where participant_id = $p", {"p": participant}).fetchall()[0][0]


def test_before_the_withdrawal_the_participant_and_their_carers_were_delivered(story) -> None:
    first = story.deliveries[0]
    assert story.erased in (first / "participants.csv").read_text()
    assert carer_rows(first, story.erased) > 0 and story.erased_carers


def test_the_next_run_erases_them_from_every_mart(story) -> None:
    assert database_naming(story.warehouse / "pod_work.duckdb", story.all_data) == {}
    assert story.erased in story.all_data


def test_and_from_the_published_file_and_its_parquet_copy(story) -> None:
    assert database_naming(story.warehouse / "pod_marts.duckdb", story.all_data) == {}
    assert folder_naming((story.warehouse / "marts").resolve(), story.all_data) == {}


def test_and_from_the_reports_the_next_run_wrote(story) -> None:
    run_id = story.second.stdout.split()[3]
    reports = list((story.warehouse / "reports").glob(f"*_{run_id[:8]}.html"))
    assert len(reports) == 2
    for report in reports:
        assert not any(i in report.read_text(encoding="utf-8") for i in story.all_data)


def test_and_from_every_later_delivery_whose_manifest_counts_them(story) -> None:
    later = story.deliveries[1]
    assert folder_naming(later, story.all_data) == {}
    assert carer_rows(later, story.erased) == 0
    manifest = json.loads((later / "manifest.json").read_text())
    assert manifest["participants_erased_all_data"] == len(story.all_data) >= 1


def test_earlier_deliveries_are_left_as_they_were(story) -> None:
    first = story.deliveries[0]
    before = {k: v for k, v in story.before_kill.items() if k.startswith("deliveries/")}
    now = {f"deliveries/{first.name}/{p.name}": scenario.sha256(p) for p in first.iterdir()}
    assert now == before
    erased_then = len(scenario.all_data_withdrawals(story.batches[1]))
    assert json.loads((first / "manifest.json").read_text())["participants_erased_all_data"] == (
        erased_then) < len(story.all_data)


def test_the_run_output_counts_the_erased_without_naming_them(story) -> None:
    output = story.second.stdout + story.second.stderr
    assert (f"Erased: {len(story.all_data)} participant(s) withdrew consent to the use of all "
            "their data") in output
    assert not any(i in output for i in story.all_data)
