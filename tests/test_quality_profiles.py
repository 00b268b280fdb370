"""The DuckDB profiles behind the quality checks, and the synthetic warehouse they are tested on."""

import csv
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_quality_warehouse import EXPORTS, write_quality_warehouse

from pod_pipeline import seeds as pod_seeds
from pod_pipeline.identifiers import find_nhs_numbers
from pod_pipeline.ingest import drift
from pod_pipeline.quality import identifier_scan, profiles
from pod_pipeline.settings import SEEDS_DIR
from pod_pipeline.transform.assets import ensure_dbt_manifest

VALID = "9434765919"  # passes the modulus-11 check
BUILT_MARTS = ("participants", "participant_timepoints", "outcome_scores", "carer_timepoints",
               "completeness", "missing_assessments", "network_meetings", "service_use_costs",
               "quarantine")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quality") / "work.duckdb"
    with duckdb.connect(str(path)) as con:
        write_quality_warehouse(con, participants=60)
    return path


@pytest.fixture
def con(warehouse: Path, tmp_path: Path):
    """A private copy of the module's warehouse, to break as a test likes."""
    copy = tmp_path / "work.duckdb"
    shutil.copyfile(warehouse, copy)
    with duckdb.connect(str(copy)) as connection:
        yield connection


def test_synthetic_marts_have_the_dbt_models_columns(con: duckdb.DuckDBPyConnection) -> None:
    nodes = json.loads(ensure_dbt_manifest().read_text())["nodes"]
    for table in BUILT_MARTS:
        documented = set(nodes[f"model.pod.{table}"]["columns"])
        built = {c for (c,) in con.execute("select column_name from information_schema.columns "
                                           "where table_schema = 'marts' and table_name = $t",
                                           {"t": table}).fetchall()}
        assert built == documented, table


# NHS numbers: the scan finds what identifiers.find_nhs_numbers finds ---------------------------

_pieces = st.sampled_from([VALID, "943 476 5919", "9434765918", "94347659190", "1234567890",
                           "0", "7", " ", "-", "/", "x", "A", ".", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=6).map("".join))
def test_the_sql_prefilter_keeps_every_text_holding_an_nhs_number(text: str) -> None:
    kept = duckdb.execute(f"select regexp_matches($t, '{identifier_scan.TEN_DIGITS}')",
                          {"t": text}).fetchone()[0]
    assert kept or not find_nhs_numbers(text)


@pytest.mark.parametrize(("text", "expected"), [
    (f"referred by {VALID[:3]} {VALID[3:6]} {VALID[6:]}.", 1),
    (f"1234567890 {VALID}", 1),           # a valid number right after an invalid one
    ("943 476 5919943 476 5919", 1),      # overlapping candidates: 476 5919943 is valid
    (f"id {VALID}0", 0),                  # eleven digits
    (f"sha {VALID}ab", 0),                # part of a longer word
    ("9434765918", 0),                    # fails the check digit
])
def test_the_scan_counts_text_holding_an_nhs_number(con: duckdb.DuckDBPyConnection, text: str,
                                                    expected: int) -> None:
    con.execute("update marts.quarantine set detail = $t", {"t": text})
    scan = identifier_scan.identifiers(con, "quarantine").set_index("column_name")
    assert scan.loc["detail", "nhs_numbers"] == expected
    assert scan["nhs_numbers"].sum() == expected


def test_identifier_scan_counts_rows_per_column_and_dates_of_birth_in_any_form(
        con: duckdb.DuckDBPyConnection) -> None:
    birth = con.execute("select min(date_of_birth) from restricted.register_history").fetchone()[0]
    uk = f"{birth[8:10]}/{birth[5:7]}/{birth[:4]}"
    con.execute(f"update marts.missing_assessments set reason = 'born {uk}' "
                "where participant_id in (select participant_id from marts.missing_assessments "
                "order by all limit 2)")
    con.execute(f"update marts.missing_assessments set status = '{VALID}' where participant_id "
                "= (select min(participant_id) from marts.missing_assessments)")
    scan = identifier_scan.identifiers(con, "missing_assessments").set_index("column_name")
    reasons = con.execute(f"select count(*) from marts.missing_assessments "
                          f"where reason = 'born {uk}'").fetchone()[0]
    assert scan.loc["reason", "dates_of_birth"] == reasons > 0
    statuses = con.execute(f"select count(*) from marts.missing_assessments "
                           f"where status = '{VALID}'").fetchone()[0]
    assert scan.loc["status", "nhs_numbers"] == statuses > 0
    assert scan.drop(index=["reason", "status"])[["nhs_numbers", "dates_of_birth"]].sum().sum() == 0
    assert "window_closed_date" in scan.index and "is_quarantined" not in scan.index


# Scores: bounds from the seeds ---------------------------------------------------------------

def test_score_bounds_are_read_from_the_seed(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert profiles.scores(con, "participant_timepoints")["n_out_of_range"].sum() == 0
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS_DIR, seeds)
    with (SEEDS_DIR / "instrument_scales.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["scale"] == "wemwbs_total":
            row["max_score"] = "60"
    with (seeds / "instrument_scales.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.setattr(pod_seeds, "SEEDS_DIR", seeds)  # where every seed is read from
    above = con.execute("select count(*) from marts.participant_timepoints "
                        "where wemwbs_total > 60").fetchone()[0]
    profile = profiles.scores(con, "participant_timepoints").set_index("scale")
    assert above > 0
    assert profile.loc["wemwbs_total", "n_out_of_range"] == above
    assert profile.loc["wemwbs_total", "max_score"] == 60
    # Each distinct value is judged once, and counted once per row that holds it.
    rows, distinct, above_distinct = con.execute(
        "select count(wemwbs_total), count(distinct wemwbs_total), "
        "count(distinct wemwbs_total) filter (where wemwbs_total > 60) "
        "from marts.participant_timepoints").fetchone()
    assert profile.loc["wemwbs_total", "n"] == rows > distinct
    assert above > above_distinct
    assert profile.drop(index="wemwbs_total")["n_out_of_range"].sum() == 0


def test_outcome_scores_are_checked_on_the_scale_of_their_value_set(
        con: duckdb.DuckDBPyConnection) -> None:
    # -0.4 is a valid UK 2026 utility but below England 2018's floor of -0.285.
    con.execute("update marts.outcome_scores set value = -0.4 where parameter = 'eq5d_index' "
                "and participant_id = (select min(participant_id) from marts.outcome_scores)")
    assert profiles.scores(con, "outcome_scores")["n_out_of_range"].sum() == 0
    con.execute("update marts.outcome_scores set value_set = 'england_2018' "
                "where parameter = 'eq5d_index'")
    profile = profiles.scores(con, "outcome_scores").set_index("scale")
    assert profile.loc["eq5d_index_england_2018", "n_out_of_range"] >= 1


# Export drift --------------------------------------------------------------------------------

def test_drift_counts_dropped_and_changed_records_per_site(
        con: duckdb.DuckDBPyConnection) -> None:
    clean = drift.drift(con, "register.csv").set_index("site")
    assert list(clean["current_export"]) == [EXPORTS[1]] * 2
    assert clean["records_dropped"].sum() == 0
    con.execute(f"delete from restricted.register_history where _export_id = '{EXPORTS[1]}' "
                "and study_id in ('S01-000000', 'S01-000001', 'S01-000002')")
    con.execute(f"update restricted.register_history set _row_hash = 'changed' "
                f"where _export_id = '{EXPORTS[1]}' and study_id = 'S02-000000'")
    profile = drift.drift(con, "register.csv").set_index("site")
    assert profile.loc["s01", "participants_dropped"] == 3
    assert profile.loc["s01", "share_participants_dropped"] == pytest.approx(
        3 / clean.loc["s01", "participants_previous"])
    assert profile.loc["s02", "records_changed"] == clean.loc["s02", "records_changed"] + 1
    assert profile.loc["s02", "participants_dropped"] == 0


def test_drift_is_profiled_once_per_pair_of_exports(con: duckdb.DuckDBPyConnection) -> None:
    """Ingestion records each site's pair once; the check reads the current pairs' profiles, and
    computes any pair not recorded (a new export, or a warehouse from before the store)."""
    whole = drift.drift(con, "register.csv")
    assert drift.record(con, "register.csv") == ["s01", "s02"]
    assert drift.record(con, "register.csv") == []
    pd.testing.assert_frame_equal(drift.current(con, "register.csv"), whole)
    # s01's third export drops three participants: s01 alone is profiled, and the check sees it.
    third = "20261120T070000Z"
    con.execute(f"insert into restricted.register_history by name select * replace ('{third}' as _export_id) "
                f"from restricted.register_history where _site = 's01' and _export_id = '{EXPORTS[1]}' "
                f"and study_id not in ('S01-000000', 'S01-000001', 'S01-000002')")
    con.execute(f"insert into audit.load_ledger select * replace ('{third}' as export_id) from audit.load_ledger "
                f"where site = 's01' and export_id = '{EXPORTS[1]}' and file = 'register.csv'")
    computed = drift.current(con, "register.csv")  # not recorded yet: computed
    assert computed.set_index("site").loc["s01", "participants_dropped"] == 3
    assert drift.record(con, "register.csv") == ["s01"]
    pd.testing.assert_frame_equal(drift.current(con, "register.csv"), computed)
    pd.testing.assert_frame_equal(computed, drift.drift(con, "register.csv"))


def test_drift_compares_only_the_two_newest_loaded_exports(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("update audit.load_ledger set status = 'rejected' "
                f"where site = 's01' and export_id = '{EXPORTS[0]}'")
    assert list(drift.drift(con, "honos.csv")["site"]) == ["s02"]
    assert drift.single_export_sites(con, "honos.csv") == 1
    con.execute("drop table restricted.honos_history")
    assert drift.drift(con, "honos.csv").empty
