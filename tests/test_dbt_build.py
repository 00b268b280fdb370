"""dbt builds every mart from a hand-made raw layer, and the marts hold the hand-checked values.

The raw layer (tests/fixtures/raw_layer/, its README tells each participant's story) is loaded the
way ingestion leaves the raw schema; `dbt build` then runs seeds, models, data tests and unit
tests in-process with a fixed reference date.
"""

import csv
import datetime as dt
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from pod_pipeline.transform.assets import dbt_failure

ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIR = ROOT / "dbt_project"
RAW_LAYER = Path(__file__).parent / "fixtures" / "raw_layer"
REFERENCE_DATE = "2026-11-20"

# Columns ingestion gives a type in the raw layer; every other column is delivered text.
TYPED_COLUMNS = {
    "age_at_consent": "integer",
    "has_nhs_number": "boolean",
    "line_number": "bigint",
    "loaded_at": "timestamp",
    "line": "bigint",
    "is_current_export": "boolean",
    "quarantined_at": "timestamp",
    "entry_id": "bigint",
    "rows_read": "bigint",
    "rows_loaded": "bigint",
    "rows_quarantined": "bigint",
}
MARTS_WITH_PARTICIPANTS = (
    "participants",
    "participant_timepoints",
    "outcome_scores",
    "carer_timepoints",
    "network_meetings",
    "service_use_costs",
    "cost_effectiveness",
    "missing_assessments",
    "time_to_relapse",
)


def load_raw_layer(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema raw")
    for path in sorted(RAW_LAYER.glob("*.csv")):
        read = f"read_csv('{path}', all_varchar = true, header = true)"
        columns = [c[0] for c in con.execute(f"select * from {read} limit 0").description]
        select = [
            f'cast("{c}" as {TYPED_COLUMNS[c]}) as "{c}"' if c in TYPED_COLUMNS else f'"{c}"'
            for c in columns
        ]
        if path.stem == "redcap_records":
            # As ingestion does: every field of the seed, NULL where the export lacks it.
            missing = [f for f in redcap_fields() if f not in columns]
            select += [f'cast(null as varchar) as "{f}"' for f in missing]
        con.execute(f"create table raw.{path.stem} as select {', '.join(select)} from {read}")


def redcap_fields() -> list[str]:
    with (PROJECT_DIR / "seeds" / "instrument_items.csv").open(newline="") as seed:
        return [row["field_name"] for row in csv.DictReader(seed)]


def dbt(tmp: Path, *args: str, project_dir: Path = PROJECT_DIR, reference_date: str | None = None,
        pipeline_build: bool = False, **variables: str) -> dbtRunnerResult:
    """dbt in this process, as the pipeline runs it: settings as --vars, the reference date (when
    given) in the environment (Settings.dbt_env); as run by hand unless `pipeline_build`."""
    vars_yaml = "{" + ", ".join(f"{k}: '{v}'" for k, v in variables.items()) + "}"
    with pytest.MonkeyPatch.context() as mp:
        if reference_date is None:
            mp.delenv("POD_DBT_REFERENCE_DATE", raising=False)
        else:
            mp.setenv("POD_DBT_REFERENCE_DATE", reference_date)
        if pipeline_build:
            mp.setenv("POD_DBT_PIPELINE_BUILD", "1")
        else:  # a pipeline run in this process leaves it set
            mp.delenv("POD_DBT_PIPELINE_BUILD", raising=False)
        return dbtRunner().invoke([*args, "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
                                   "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs"),
                                   "--vars", vars_yaml])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dbtRunnerResult]:
    tmp = tmp_path_factory.mktemp("dbt")
    database = tmp / "pod_work.duckdb"
    with duckdb.connect(str(database)) as con:
        load_raw_layer(con)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(database))
        result = dbt(tmp, "build", reference_date=REFERENCE_DATE)
    return database, result


@pytest.fixture()
def con(built: tuple[Path, dbtRunnerResult]):
    with duckdb.connect(str(built[0])) as connection:
        yield connection


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def one(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    found = rows(con, sql)
    assert len(found) == 1, f"{len(found)} rows for {sql}"
    return found[0]


def timepoint(con: duckdb.DuckDBPyConnection, participant: str, tp: str) -> dict:
    return one(
        con,
        f"select * from marts.participant_timepoints "
        f"where participant_id = '{participant}' and timepoint = '{tp}'",
    )


def test_build_passes_with_only_the_nhscii_gap_warning(built):
    _, result = built
    assert result.success, result.exception
    statuses = {r.node.name: str(r.status) for r in result.result}
    assert not [name for name, status in statuses.items() if status in ("error", "fail")]
    warned = sorted(name for name, status in statuses.items() if status == "warn")
    assert warned == ["assert_unit_costs_reach_price_year"]
    unit_tests = [r for r in result.result if r.node.resource_type == "unit_test"]
    assert len(unit_tests) >= 14 and all(str(r.status) == "pass" for r in unit_tests)


def test_a_models_not_null_and_accepted_codes_tests_name_each_failing_column(built, tmp_path):
    # One test reads every not-null column of a model in one scan (tests/generic/not_null_columns.sql),
    # one every coded column, against its meta.codes (tests/generic/accepted_codes.sql).
    database = tmp_path / "pod_work.duckdb"
    with duckdb.connect(str(built[0])) as con:
        con.execute("checkpoint")  # the copy holds everything dbt wrote
    shutil.copy(built[0], database)
    with duckdb.connect(str(database)) as con:
        con.execute("update marts.participants set arm = null where participant_id in "
                    "(select participant_id from marts.participants order by 1 limit 2)")
        con.execute("update marts.participants set consent_date = null where participant_id = "
                    "(select max(participant_id) from marts.participants)")
        con.execute("update marts.participants set gender = '7' where participant_id in "
                    "(select participant_id from marts.participants order by 1 desc limit 2)")
        con.execute("update marts.participants set ethnic_category = 'Q' where participant_id = "
                    "(select min(participant_id) from marts.participants)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(database))
        result = dbt(tmp_path, "test", "--select", "not_null_participants accepted_values_participants",
                     reference_date=REFERENCE_DATE)
    codes, nulls = sorted(result.result, key=lambda test: test.node.name)
    # A failure per column holding nulls, each with its count of null rows; one per column and
    # value outside the column's codes (the nulls in arm are not a code's failure).
    assert (str(nulls.status), nulls.failures) == ("fail", 2)
    assert (str(codes.status), codes.failures) == ("fail", 2)
    # (dbt, in this process, keeps its connection to the database open: read a copy.)
    shutil.copy(database, tmp_path / "read.duckdb")
    with duckdb.connect() as con:
        con.execute(f"attach '{tmp_path / 'read.duckdb'}' as pod_work (read_only)")
        found = con.execute(f"select * from ({nulls.node.compiled_code}) order by 1").fetchall()
        assert found == [("arm", 2), ("consent_date", 1)]
        found = con.execute(f"select * from ({codes.node.compiled_code}) order by 1").fetchall()
        assert found == [("ethnic_category", "Q", 1), ("gender", "7", 2)]
        # The run's summary line names them too (transform/assets.py, dbt_failure), values aside.
        results = tmp_path / "target" / "run_results.json"
        told = dbt_failure(results, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), con=con)
    head, _, parts = told.partition(": ")
    assert head == "dbt build failed at 2 nodes"  # in the order dbt finished them
    assert sorted(parts.split("; ")) == [
        "test accepted_values_participants: Got 2 results, configured to fail if != 0 "
        "(codes not accepted in ethnic_category: 1 row, gender: 2 rows)",
        "test not_null_participants: Got 2 results, configured to fail if != 0 "
        "(nulls in arm: 2 rows, consent_date: 1 row)",
    ]


def test_spine_has_every_participant_at_every_timepoint(con):
    assert con.execute("select count(*) from marts.participants").fetchone()[0] == 5
    counts = rows(
        con,
        "select participant_id, count(*) as n from marts.participant_timepoints "
        "group by participant_id order by participant_id",
    )
    assert [(r["participant_id"], r["n"]) for r in counts] == [
        ("KMPT-0001", 3),
        ("KMPT-0002", 3),
        ("KMPT-0003", 3),
        ("SABP-0002", 3),
        ("SABP-0003", 3),
    ]


def test_all_data_withdrawal_is_in_no_mart(con):
    for mart in MARTS_WITH_PARTICIPANTS:
        n = con.execute(f"select count(*) from marts.{mart} where participant_id = 'SABP-0001'")
        assert n.fetchone()[0] == 0, mart
    assert (
        con.execute("select count(*) from marts.carer_timepoints where carer_id = 'C9'").fetchone()[
            0
        ]
        == 0
    )
    assert (
        con.execute(
            "select count(*) from marts.network_meetings where meeting_id = 'M004'"
        ).fetchone()[0]
        == 0
    )
    # Nor in the counts: POD consented = KMPT-0001, KMPT-0003, SABP-0003.
    flow = one(
        con, "select n from marts.participant_flow where arm = 'POD' and stage = 'consented'"
    )
    assert flow["n"] == 3
    summary = one(
        con,
        "select meetings from marts.network_meeting_summary where site = 'sabp' and arm = 'POD'",
    )
    assert summary["meetings"] == 1


def test_no_direct_identifier_in_any_mart(con):
    columns = {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_schema = 'marts'"
        ).fetchall()
    }
    assert not {"nhs_number", "date_of_birth", "name", "postcode", "study_id_hash"} & columns
    assert "has_nhs_number" in columns


def test_withdrawals_follow_up_and_died(con):
    assert timepoint(con, "KMPT-0003", "month_3")["timepoint_status"] == "due"
    assert timepoint(con, "KMPT-0003", "month_3")["wemwbs_status"] == "missing"
    for participant in ("KMPT-0003", "SABP-0003"):
        later = timepoint(con, participant, "month_6")
        assert later["timepoint_status"] == "not_expected"
        assert {
            later[f"{i}_status"]
            for i in ("wemwbs", "wsas", "csq8", "eq5d5l", "service_use", "honos")
        } == {"not_expected"}
    assert timepoint(con, "SABP-0002", "month_3")["timepoint_status"] == "not_yet_due"


def test_pod_evaluation_sites_report_nothing_of_the_national_trial(con):
    """kmpt and sabp follow pod_evaluation: no month_12 / month_24, no new instrument missing."""
    timepoints = {r["timepoint"] for r in rows(con, "select timepoint from marts.participant_timepoints")}
    assert timepoints == {"baseline", "month_3", "month_6"}
    assert {r["protocol"] for r in rows(con, "select protocol from marts.participant_timepoints")} == {
        "pod_evaluation"
    }
    statuses = rows(
        con,
        "select distinct qpr_status, sdmq9_status, sps_status, lsns6_status "
        "from marts.participant_timepoints",
    )
    assert statuses == [
        {"qpr_status": "not_expected", "sdmq9_status": "not_expected",
         "sps_status": "not_expected", "lsns6_status": "not_expected"}
    ]
    new = "('qpr', 'sdmq9', 'sps', 'lsns6')"
    for mart in ("missing_assessments", "completeness"):
        n = con.execute(f"select count(*) from marts.{mart} where instrument in {new}").fetchone()[0]
        assert n == 0, mart


def test_questionnaire_scores(con):
    baseline = timepoint(con, "KMPT-0001", "baseline")
    assert baseline["wemwbs_total"] == Decimal("42.0")
    assert baseline["swemwbs_raw"] == 21 and baseline["swemwbs_metric"] == Decimal("19.25")
    assert baseline["wsas_total"] == Decimal("10.0")
    assert baseline["service_use_cost"] == Decimal("110.25")
    month_3 = timepoint(con, "KMPT-0001", "month_3")
    assert (month_3["wemwbs_total"], month_3["wemwbs_status"]) == (Decimal("56.0"), "partial")
    assert (month_3["wsas_total"], month_3["wsas_status"]) == (Decimal("15.0"), "partial")
    assert (month_3["csq8_total"], month_3["csq8_status"]) == (Decimal("24.0"), "complete")
    assert month_3["eq5d_index_uk_2026"] == Decimal("-0.567")
    assert month_3["eq5d_index_england_2018"] == Decimal("-0.285")
    month_6 = timepoint(con, "KMPT-0001", "month_6")
    assert month_6["wemwbs_total"] == Decimal("70.0") and month_6["swemwbs_metric"] == Decimal(
        "35.00"
    )
    assert (month_6["csq8_total"], month_6["csq8_status"]) == (Decimal("32.0"), "partial")
    assert (month_6["eq5d_index_uk_2026"], month_6["eq5d_index_england_2018"]) == (
        Decimal("0.114"),
        Decimal("0.322"),
    )
    assert month_6["service_use_cost"] == Decimal("1105.00")
    assert timepoint(con, "KMPT-0001", "baseline")["csq8_status"] == "not_expected"


def test_statuses_of_unscorable_and_quarantined_instruments(con):
    baseline = timepoint(con, "KMPT-0002", "baseline")
    assert (baseline["wemwbs_status"], baseline["wemwbs_total"]) == ("not_scored", None)
    assert baseline["wsas_status"] == "missing" and baseline["honos_status"] == "missing"
    month_6 = timepoint(con, "KMPT-0002", "month_6")
    assert month_6["wsas_status"] == "not_scored"
    assert month_6["service_use_status"] == "missing"
    quarantined = one(
        con,
        "select * from marts.missing_assessments where participant_id = 'KMPT-0002' "
        "and timepoint = 'month_6' and instrument = 'wsas'",
    )
    assert (quarantined["status"], quarantined["reason"]) == (
        "not_scored",
        "quarantined_at_ingestion",
    )
    assert str(quarantined["window_closed_date"]) == "2026-11-01"


def test_honos_placed_by_date_nearest_and_later_on_ties(con):
    baseline = timepoint(con, "KMPT-0001", "baseline")
    assert (baseline["honos_total"], baseline["honos_study_day"]) == (12, 3)
    assert (
        baseline["honos_behaviour"],
        baseline["honos_impairment"],
        baseline["honos_symptoms"],
        baseline["honos_social"],
    ) == (3, 2, 3, 4)
    month_6 = timepoint(con, "KMPT-0001", "month_6")
    assert (month_6["honos_total"], month_6["honos_items_valid"], month_6["honos_social"]) == (
        10,
        10,
        None,
    )
    assert month_6["honos_status"] == "partial"
    few_valid = timepoint(con, "KMPT-0003", "baseline")
    assert (
        few_valid["honos_status"],
        few_valid["honos_total"],
        few_valid["honos_items_valid"],
    ) == ("not_scored", None, 8)
    # The only KMPT-0002 rating is at day 274, outside every window.
    assert timepoint(con, "KMPT-0002", "month_6")["honos_status"] == "missing"
    # Received where HoNOS is not scheduled: shown with its status.
    assert timepoint(con, "SABP-0003", "month_3")["honos_status"] == "complete"


def test_windows_flag_but_never_move_questionnaires(con):
    late = timepoint(con, "KMPT-0002", "month_3")
    assert (late["study_day"], late["is_in_window"]) == (140, False)
    assert late["eq5d_index_uk_2026"] == Decimal("0.959")
    record = one(
        con,
        "select * from marts.outcome_scores where participant_id = 'KMPT-0002' "
        "and parameter = 'eq5d_index' and timepoint = 'month_3'",
    )
    assert (record["is_in_window"], record["is_analysis_record"]) == (False, False)
    edge = timepoint(con, "SABP-0002", "baseline")
    assert (edge["study_day"], edge["is_in_window"]) == (14, True)
    early = timepoint(con, "SABP-0003", "baseline")
    assert (early["study_day"], early["is_in_window"]) == (-31, False)


def test_outcome_scores_change_from_baseline(con):
    wemwbs = one(
        con,
        "select * from marts.outcome_scores where participant_id = 'KMPT-0001' "
        "and parameter = 'wemwbs_total' and timepoint = 'month_3'",
    )
    assert (wemwbs["value"], wemwbs["baseline_value"], wemwbs["change_from_baseline"]) == (
        Decimal("56"),
        Decimal("42"),
        Decimal("14"),
    )
    assert wemwbs["percent_change_from_baseline"] == pytest.approx(100 * 14 / 42)
    assert wemwbs["is_meaningful_improvement"] is True
    zero_baseline = one(
        con,
        "select * from marts.outcome_scores where participant_id = 'SABP-0003' "
        "and parameter = 'honos_total' and timepoint = 'month_3'",
    )
    assert zero_baseline["change_from_baseline"] == Decimal("12")
    assert zero_baseline["percent_change_from_baseline"] is None
    assert zero_baseline["is_meaningful_improvement"] is None
    eq5d = rows(
        con, "select distinct value_set from marts.outcome_scores where parameter = 'eq5d_index'"
    )
    assert eq5d == [{"value_set": "uk_2026"}]
    no_baseline = rows(
        con,
        "select * from marts.outcome_scores where participant_id = 'SABP-0003' "
        "and parameter = 'wemwbs_total' order by timepoint_order",
    )
    assert [(r["is_baseline"], r["baseline_value"]) for r in no_baseline] == [
        (False, None),
        (False, None),
    ]


def test_carer_wellbeing_and_support(con):
    carers = rows(
        con,
        "select * from marts.carer_timepoints order by participant_id, carer_id, timepoint_order",
    )
    assert [
        (
            r["participant_id"],
            r["carer_id"],
            r["carer_relationship"],
            r["timepoint"],
            r["cws_wellbeing_score"],
            r["cws_support_score"],
        )
        for r in carers
    ] == [
        ("KMPT-0001", "C1", 2, "baseline", Decimal("50.0"), Decimal("100.0")),
        ("KMPT-0001", "C1", 2, "month_6", None, Decimal("25.0")),
    ]


def test_service_use_costs_keep_unlike_pounds_apart(con):
    nights = one(
        con,
        "select * from marts.service_use_costs where participant_id = 'KMPT-0001' "
        "and timepoint = 'month_3' and service_item = 'su_general_inpatient_nights'",
    )
    assert (
        nights["quantity"],
        nights["unit_cost"],
        nights["cost"],
        nights["has_price_year_gap"],
    ) == (2, None, None, True)
    assert (nights["source_price_year"], nights["price_year"]) == ("2012/13", "2024/25")
    gp = one(
        con,
        "select * from marts.service_use_costs where participant_id = 'KMPT-0001' "
        "and timepoint = 'baseline' and service_item = 'su_gp_visits'",
    )
    assert (gp["quantity"], gp["unit_cost"], gp["cost"], gp["unit"]) == (
        2,
        Decimal("48.00"),
        Decimal("96.00"),
        "10-minute surgery consultation",
    )
    # Nine service-use forms were received, seven items each.
    assert con.execute("select count(*) from marts.service_use_costs").fetchone()[0] == 7 * 9
    assert timepoint(con, "KMPT-0001", "month_3")["service_use_cost"] is None
    assert timepoint(con, "KMPT-0002", "month_3")["service_use_cost"] == Decimal("0.00")


def test_cost_effectiveness(con):
    by_id = {r["participant_id"]: r for r in rows(con, "select * from marts.cost_effectiveness")}
    assert set(by_id) == {"KMPT-0001", "KMPT-0002", "KMPT-0003", "SABP-0002", "SABP-0003"}
    late = by_id["KMPT-0002"]
    assert late["qaly"] == Decimal("0.563162")
    assert (late["utility_baseline"], late["utility_month_3"], late["utility_month_6"]) == (
        Decimal("1.000"),
        Decimal("0.959"),
        Decimal("1.000"),
    )
    assert (late["cost_baseline_period"], late["cost_month_3_period"], late["total_cost"]) == (
        Decimal("0.00"),
        Decimal("0.00"),
        None,
    )
    assert (late["has_complete_qaly"], late["has_complete_cost"]) == (True, False)
    assert late["missing_pattern"] == "cost_month_6_period"
    full = by_id["KMPT-0001"]
    assert full["qaly"] == Decimal("-0.002491")
    assert (full["cost_month_6_period"], full["has_price_year_gap"]) == (Decimal("1105.00"), True)
    assert full["missing_pattern"] == "cost_month_3_period"
    withdrawn = by_id["KMPT-0003"]
    assert withdrawn["qaly"] is None and withdrawn["utility_baseline"] == Decimal("0.968")
    assert withdrawn["missing_pattern"] == (
        "utility_month_3,utility_month_6,cost_month_3_period,cost_month_6_period"
    )
    assert {(r["value_set"], r["price_year"]) for r in by_id.values()} == {("uk_2026", "2024/25")}


def test_completeness(con):
    def cell(site: str, arm: str, tp: str, instrument: str) -> tuple:
        r = one(
            con,
            f"select * from marts.completeness where site = '{site}' and arm = '{arm}' "
            f"and timepoint = '{tp}' and instrument = '{instrument}'",
        )
        return r["expected"], r["received"], r["complete"], r["scored"], r["pct_scored"]

    assert cell("kmpt", "POD", "baseline", "honos") == (2, 2, 1, 1, Decimal("50.0"))
    assert cell("kmpt", "POD", "month_3", "wemwbs") == (2, 1, 0, 1, Decimal("50.0"))
    assert cell("kmpt", "TAU", "month_6", "wsas") == (1, 1, 0, 0, Decimal("0.0"))
    assert cell("sabp", "TAU", "month_3", "eq5d5l") == (0, 0, 0, 0, None)
    assert (
        con.execute(
            "select count(*) from marts.completeness where instrument = 'csq8' "
            "and timepoint = 'baseline'"
        ).fetchone()[0]
        == 0
    )
    assert con.execute("select count(*) from marts.completeness").fetchone()[0] == 4 * 16


def test_missing_assessments(con):
    found = rows(
        con,
        "select participant_id, timepoint, instrument, status from marts.missing_assessments "
        "order by participant_id, timepoint, instrument",
    )
    assert len(found) == 17
    assert {r["participant_id"] for r in found} == {"KMPT-0002", "KMPT-0003", "SABP-0002"}
    assert {
        "participant_id": "KMPT-0003",
        "timepoint": "baseline",
        "instrument": "honos",
        "status": "not_scored",
    } in found
    assert not [
        r for r in found if r["participant_id"] == "KMPT-0003" and r["timepoint"] == "month_6"
    ]


def test_participant_flow(con):
    flow = {
        (r["arm"], r["stage"]): r["n"] for r in rows(con, "select * from marts.participant_flow")
    }
    stages = (
        "consented",
        "baseline_assessed",
        "month_3_assessed",
        "month_6_assessed",
        "withdrawn",
        "died",
    )
    assert [flow["POD", s] for s in stages] == [3, 3, 2, 1, 1, 1]
    assert [flow["TAU", s] for s in stages] == [2, 2, 1, 1, 0, 0]


def test_network_meetings(con):
    meetings = {r["meeting_id"]: r for r in rows(con, "select * from marts.network_meetings")}
    assert set(meetings) == {"M001", "M002", "M003", "M005"}
    assert (
        meetings["M001"]["key_elements_score"],
        meetings["M001"]["has_carer_present"],
        meetings["M001"]["has_peer_support_worker"],
        meetings["M001"]["study_day"],
    ) == (24, True, True, 5)
    assert (meetings["M002"]["key_elements_score"], meetings["M002"]["key_elements_recorded"]) == (
        None,
        11,
    )
    assert meetings["M003"]["has_carer_present"] is True
    summary = one(
        con, "select * from marts.network_meeting_summary where site = 'kmpt' and arm = 'POD'"
    )
    assert (
        summary["meetings"],
        summary["participants"],
        summary["pct_with_carer"],
        summary["mean_key_elements_score"],
    ) == (3, 2, Decimal("66.7"), Decimal("15.00"))
    tau = one(
        con, "select * from marts.network_meeting_summary where site = 'kmpt' and arm = 'TAU'"
    )
    assert (tau["meetings"], tau["pct_with_carer"]) == (0, None)


def test_time_to_relapse(con):
    found = {r["participant_id"]: r for r in rows(con, "select * from marts.time_to_relapse")}
    assert sorted(found) == ["KMPT-0001", "KMPT-0002", "KMPT-0003", "SABP-0002", "SABP-0003"]
    first = found["KMPT-0001"]
    # E1 contains consent and E2 starts 3 days after it ends: one index spell, 2 to 25 January.
    assert (first["index_spell_start"].isoformat(), first["index_spell_end"].isoformat()) == (
        "2026-01-02",
        "2026-01-25",
    )
    # E3 (01/03/2026) is the relapse, 50 days after consent; the open crisis episode E4 (April) a
    # re-referral. Follow-up ends at the data cut, the same day as the reference date (data_cut wins).
    assert (first["relapse_date"].isoformat(), first["relapse_type"], first["time_days"]) == (
        "2026-03-01",
        "inpatient",
        50,
    )
    assert (first["is_relapse"], first["censor_reason"], first["has_crisis_rereferral"]) == (1, "relapse", True)
    assert (first["followup_end_date"].isoformat(), first["exposure_days"]) == ("2026-11-20", 314)
    # Inpatient days: 10-11 January (E1 from consent, discharge day not counted) + 1-10 March.
    assert (first["psychiatric_inpatient_days"], first["epr_inpatient_cost"]) == (12, Decimal("6768.00"))
    third = found["KMPT-0003"]
    # A crisis episode after the follow_up withdrawal: kept as the relapse date, not an event.
    assert (third["relapse_date"].isoformat(), third["is_relapse"], third["censor_reason"], third["time_days"]) == (
        "2026-06-01",
        0,
        "withdrawal",
        75,
    )
    assert third["has_crisis_rereferral"] is False
    # No NHS number (KMPT-0002), or a site that never delivered acute_care.csv (sabp): not followed.
    for participant in ("KMPT-0002", "SABP-0002", "SABP-0003"):
        row = found[participant]
        assert row["is_followed_in_epr"] is False
        assert {row[c] for c in ("time_days", "is_relapse", "censor_reason", "exposure_days")} == {None}
    columns = {c for (c,) in con.execute("select column_name from information_schema.columns "
                                         "where table_schema = 'marts'").fetchall()}
    assert "episode_id" not in columns


def test_quarantine_mart(con):
    found = rows(
        con,
        'select file, line, "column", reason, scope from marts.quarantine order by site, file',
    )
    assert [(r["file"], r["line"], r["column"], r["reason"], r["scope"]) for r in found] == [
        ("redcap_records.csv", 7, "wsas_2", "out_of_range", "instrument"),
        ("register.csv", 5, "nhs_number", "invalid_nhs_number", "row"),
        ("honos.csv", None, None, "not_utf8", "file"),
    ]


def test_value_set_setting_switches_utilities_and_qaly(built, tmp_path):
    """Runs last: rebuilds the value-set dependent models under england_2018."""
    database, _ = built
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(database))
        result = dbt(
            tmp_path,
            "run",
            "--full-refresh",  # as the pipeline builds after a change of settings
            "--select",
            "int_qalys_calculated+ outcome_scores",
            reference_date=REFERENCE_DATE,
            value_set="england_2018",
        )
    assert result.success, result.exception
    with duckdb.connect(str(database)) as con:
        late = one(con, "select * from marts.cost_effectiveness where participant_id = 'KMPT-0002'")
        # (150 x (1 + 0.922) / 2 + 60 x (0.922 + 1) / 2) / 365.25
        assert late["utility_month_3"] == Decimal("0.922")
        assert late["qaly"] == Decimal("0.552526")
        assert late["value_set"] == "england_2018"
        eq5d = rows(
            con,
            "select distinct value_set from marts.outcome_scores where parameter = 'eq5d_index'",
        )
        assert eq5d == [{"value_set": "england_2018"}]


def test_a_protocol_timepoint_or_instrument_is_a_seed_change(tmp_path):
    """A copy of the project with only seed rows added (a month_36 timepoint for national_trial,
    with QPR and WEMWBS expected there) and sabp assigned national_trial by the setting's var:
    the spine gains month_12, month_24 and month_36 for sabp's participants only."""
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    seeds = project / "seeds"
    added = {
        "visit_windows.csv": "month_36,5,1095,822,1186,test\r\n",
        "protocol_timepoints.csv": "national_trial,month_36,test\n",
        "expected_instruments.csv": "national_trial,month_36,qpr,true,test\nnational_trial,month_36,wemwbs,true,test\n",
    }
    for name, text in added.items():
        with (seeds / name).open("a", newline="") as seed:
            seed.write(text)
    database = tmp_path / "pod_work.duckdb"
    with duckdb.connect(str(database)) as con:
        load_raw_layer(con)
        # Every SPS-24 item 1 at SABP-0002's baseline: reversed items count 4, each subscale 10.
        items = ", ".join(f"sps_{i:02d} = '1'" for i in range(1, 25))
        con.execute(f"update raw.redcap_records set {items} "
                    "where record_id = 'SABP-0002' and redcap_event_name = 'baseline_arm_2'")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(database))
        for command in ("seed", "run"):
            result = dbt(tmp_path, command, project_dir=project, reference_date=REFERENCE_DATE,
                         site_protocols="sabp=national_trial")
            assert result.success, result.exception
    with duckdb.connect(str(database)) as con:
        spine = rows(con, "select participant_id, protocol, timepoint from marts.participant_timepoints "
                          "order by participant_id, timepoint_order")
        by_participant: dict[str, list[str]] = {}
        for row in spine:
            by_participant.setdefault(row["participant_id"], []).append(row["timepoint"])
        assert by_participant["KMPT-0001"] == ["baseline", "month_3", "month_6"]
        trial = ["baseline", "month_3", "month_6", "month_12", "month_24", "month_36"]
        assert by_participant["SABP-0002"] == trial and by_participant["SABP-0003"] == trial
        assert {r["protocol"] for r in spine if r["participant_id"].startswith("SABP")} == {"national_trial"}
        month_36 = one(con, "select * from marts.participant_timepoints "
                            "where participant_id = 'SABP-0002' and timepoint = 'month_36'")
        assert (month_36["qpr_status"], month_36["wemwbs_status"], month_36["csq8_status"]) == (
            "missing", "missing", "not_expected")
        baseline = one(con, "select * from marts.participant_timepoints "
                            "where participant_id = 'SABP-0002' and timepoint = 'baseline'")
        assert baseline["sps_total"] == 60 and baseline["sps_status"] == "complete"
        assert {baseline[f"sps_{s}"] for s in ("attachment", "social_integration", "reassurance_of_worth",
                                               "reliable_alliance", "guidance",
                                               "opportunity_for_nurturance")} == {10}
        assert (baseline["sdmq9_status"], baseline["qpr_status"]) == ("not_expected", "missing")
        stages = {r["stage"] for r in rows(con, "select stage from marts.participant_flow")}
        assert {"month_12_assessed", "month_24_assessed", "month_36_assessed"} <= stages
        sps = one(con, "select * from marts.outcome_scores "
                       "where participant_id = 'SABP-0002' and parameter = 'sps_total'")
        assert (sps["value"], sps["is_baseline"]) == (Decimal("60.000"), True)
