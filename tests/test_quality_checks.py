"""The GX-backed asset checks, run through Dagster on small warehouses that break one rule each.

Stand-in assets take the keys of the dbt marts and the raw tables (the warehouse is built beforehand
by pod_pipeline.quality.synthetic); the checks are the real definitions. For every check: the data
that violates it, the severity it fails with, and whether a downstream asset was stopped.
"""

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from synthetic_quality_warehouse import EXPORTS, write_quality_warehouse

from pod_pipeline.ingest.assets import RAW_KEYS
from pod_pipeline.quality import quality_checks
from pod_pipeline.quality.checks import (
    DBT_MARTS,
    DRIFT_FILES,
    baseline_present,
    completeness_of_due_assessments,
    export_drift_checks,
    identifier_checks,
    mart,
    scores_checks,
    visit_window_compliance,
)
from pod_pipeline.quality.suites import load_suite_json
from pod_pipeline.resources import Warehouse, connect
from pod_pipeline.settings import EXPECTATIONS_DIR, Settings

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
VALID_NHS_NUMBER = "943 476 5919"


@dg.multi_asset(specs=[dg.AssetSpec(mart(table)) for table in DBT_MARTS], can_subset=True)
def dbt_stand_in(context: dg.AssetExecutionContext):
    """The dbt marts, already written by the fixture (one step, as dbt is)."""
    for key in context.selected_asset_keys:
        yield dg.MaterializeResult(asset_key=key)


def _raw_stand_in(file: str) -> dg.AssetsDefinition:
    @dg.asset(key=RAW_KEYS[file])
    def _raw() -> None:
        return None

    return _raw


RAW_STAND_INS = [_raw_stand_in(file) for file in DRIFT_FILES]


def _downstream(key: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(name="after_" + "_".join(key.path), deps=[key])
    def _after() -> None:
        return None

    return _after


def after(key: dg.AssetKey) -> dg.AssetKey:
    return dg.AssetKey("after_" + "_".join(key.path))


@pytest.fixture
def work_db(pod_env: Path) -> Path:
    settings = Settings.from_env()
    con = connect(settings)
    try:
        write_quality_warehouse(con, participants=120)
    finally:
        con.close()
    return settings.work_db


def sql(work_db: Path, statement: str) -> None:
    with duckdb.connect(str(work_db)) as con:
        con.execute(statement)


def materialize(checks: list, downstream_of: list[dg.AssetKey]) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [dbt_stand_in, *RAW_STAND_INS, *[_downstream(key) for key in downstream_of], *checks],
        resources={"warehouse": Warehouse()},
        raise_on_error=False,
    )


def evaluation(result: dg.ExecuteInProcessResult, key: dg.AssetKey, name: str):
    found = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == key and e.check_name == name
    ]
    assert len(found) == 1, f"{name} on {key.to_user_string()}: {len(found)} evaluations"
    return found[0]


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def metadata_text(check) -> str:
    return " ".join(str(v.value) for v in check.metadata.values())


def test_clean_warehouse_passes_every_check_and_links_its_data_docs(work_db: Path) -> None:
    targets = sorted(
        {key.asset_key for check in quality_checks for key in check.check_keys},
        key=lambda k: k.path,
    )
    result = materialize(quality_checks, downstream_of=targets)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == sum(len(check.check_keys) for check in quality_checks) == 24
    assert [e.check_name for e in evaluations if not e.passed] == []
    assert {after(key) for key in targets} <= materialized(result)
    completeness = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    page = Path(completeness.metadata["gx_data_docs"].value)
    assert page.is_file() and page.suffix == ".html"
    assert page.is_relative_to(work_db.parent / "gx_docs")
    assert completeness.metadata["gx_data_docs_url"].value == page.as_uri()
    assert completeness.metadata["completeness_error_below"].value == 0.5


def test_completeness_below_the_error_threshold_blocks_and_below_warn_only_warns(
    work_db: Path,
) -> None:
    sql(
        work_db,
        "update marts.completeness set scored = cast(expected * 0.3 as hugeint) "
        "where site = 's01' and arm = 'POD' and timepoint = 'baseline' and instrument = 'wemwbs'",
    )
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    check = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    assert (check.passed, check.severity) == (False, ERROR)
    assert check.metadata["groups_below_error"].value == 1
    assert "s01 / POD / baseline / wemwbs" in check.metadata["failed_expectations"].value
    assert after(mart("completeness")) not in materialized(result)

    sql(
        work_db,
        "update marts.completeness set scored = cast(expected * 0.7 as hugeint) "
        "where site = 's01' and arm = 'POD' and timepoint = 'baseline' and instrument = 'wemwbs'",
    )
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    check = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    assert (check.passed, check.severity) == (False, WARN)
    assert (
        check.metadata["groups_below_warn"].value,
        check.metadata["groups_below_error"].value,
    ) == (1, 0)
    assert after(mart("completeness")) in materialized(result)


def test_a_group_with_too_few_due_assessments_warns_but_does_not_block(
    work_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = "where site = 's01' and arm = 'POD' and timepoint = 'baseline' and instrument = 'wemwbs'"
    sql(work_db, f"update marts.completeness set expected = 3, scored = 0 {group}")
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    check = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    assert (check.passed, check.severity) == (False, WARN)
    assert after(mart("completeness")) in materialized(result)
    monkeypatch.setenv("POD_COMPLETENESS_MIN_DUE", "3")
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    check = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    assert (check.passed, check.severity) == (False, ERROR)
    assert after(mart("completeness")) not in materialized(result)


def test_completeness_thresholds_come_from_the_settings(
    work_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_COMPLETENESS_WARN_BELOW", "0.999")
    monkeypatch.setenv("POD_COMPLETENESS_ERROR_BELOW", "0.99")
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    check = evaluation(result, mart("completeness"), "completeness_of_due_assessments")
    assert (check.passed, check.severity) == (False, ERROR)
    assert check.metadata["completeness_error_below"].value == 0.99


def test_participants_without_a_baseline_are_listed_as_a_warning(work_db: Path) -> None:
    sql(
        work_db,
        "update marts.participants set has_baseline = false "
        "where participant_id in ('S01-000003', 'S02-000007')",
    )
    result = materialize([baseline_present], [mart("participants")])
    check = evaluation(result, mart("participants"), "baseline_present")
    assert (check.passed, check.severity) == (False, WARN)
    assert check.metadata["participants_without_baseline"].value == 2
    assert "S01-000003" in check.metadata["sample_without_baseline"].value
    assert after(mart("participants")) in materialized(result)


def test_low_visit_window_compliance_warns_without_blocking(work_db: Path) -> None:
    sql(
        work_db,
        "update marts.participant_timepoints set is_in_window = false "
        "where site = 's02' and timepoint = 'month_3' and visit_date is not null",
    )
    result = materialize([visit_window_compliance], [mart("participant_timepoints")])
    check = evaluation(result, mart("participant_timepoints"), "visit_window_compliance")
    assert (check.passed, check.severity) == (False, WARN)
    assert "s02 / month_3" in check.metadata["failed_expectations"].value
    assert after(mart("participant_timepoints")) in materialized(result)


def test_a_score_out_of_range_or_off_its_scale_blocks_only_its_mart(work_db: Path) -> None:
    sql(
        work_db,
        "update marts.participant_timepoints set wemwbs_total = 71 "
        "where participant_id = 'S01-000001' and timepoint = 'baseline'",
    )
    # 20.25 has more decimals than WSAS's 1 and is no SWEMWBS conversion value.
    sql(
        work_db,
        "update marts.outcome_scores set value = 20.25 where participant_id = 'S02-000004' "
        "and parameter in ('wsas_total', 'swemwbs_metric') and timepoint = 'baseline'",
    )
    keys = [
        mart(table) for table in ("participant_timepoints", "outcome_scores", "carer_timepoints")
    ]
    result = materialize(scores_checks, keys)
    timepoints, outcomes, carers = (
        evaluation(result, key, "scores_within_instrument_ranges") for key in keys
    )
    assert (timepoints.passed, timepoints.severity) == (False, ERROR)
    assert timepoints.metadata["scores_out_of_range"].value == 1
    assert "S01-000001" in timepoints.metadata["sample_failing"].value
    assert (outcomes.passed, outcomes.severity) == (False, ERROR)
    assert outcomes.metadata["scores_not_allowed"].value == 2
    assert carers.passed
    assert materialized(result) & {after(key) for key in keys} == {after(mart("carer_timepoints"))}


def test_marts_checked_together_share_one_validation_and_are_judged_each_on_its_own(
    work_db: Path,
) -> None:
    sql(
        work_db,
        "update marts.participant_timepoints set wemwbs_total = 71 "
        "where participant_id = 'S01-000001' and timepoint = 'baseline'",
    )
    # A mart missing when the first of its suite's checks runs is checked alone, and fails alone.
    sql(work_db, "drop table marts.carer_timepoints")
    keys = [mart(table) for table in ("participant_timepoints", "outcome_scores", "carer_timepoints")]
    result = materialize(scores_checks, keys)
    timepoints = evaluation(result, keys[0], "scores_within_instrument_ranges")
    outcomes = evaluation(result, keys[1], "scores_within_instrument_ranges")
    assert (timepoints.passed, timepoints.severity) == (False, ERROR)
    assert "wemwbs_total" in timepoints.metadata["failed_expectations"].value
    assert "participant_timepoints" not in timepoints.metadata["failed_expectations"].value
    assert timepoints.metadata["gx_result"].value["statistics"]["unsuccessful_expectations"] == 1
    assert outcomes.passed
    assert outcomes.metadata["gx_result"].value["statistics"]["unsuccessful_expectations"] == 0
    # One GX run for both: one Data Docs page, each check's rows read from it.
    page = timepoints.metadata["gx_data_docs"].value
    assert page == outcomes.metadata["gx_data_docs"].value and Path(page).is_file()
    assert not any(e.asset_key == keys[2] for e in result.get_asset_check_evaluations())
    assert not result.success
    assert materialized(result) & {after(key) for key in keys} == {after(keys[1])}


def test_mart_identifiers_block_and_are_reported_as_counts_only(work_db: Path) -> None:
    with duckdb.connect(str(work_db)) as con:
        birth = con.execute(
            "select date_of_birth from restricted.register_history limit 1"
        ).fetchone()[0]
    sql(
        work_db,
        f"update marts.quarantine set detail = 'nhs_number {VALID_NHS_NUMBER} is not linked'",
    )
    sql(
        work_db,
        f"update marts.participants set consent_date = date '{birth}' "
        "where participant_id = 'S01-000002'",
    )
    sql(
        work_db,
        "alter table marts.network_meetings add column referrer_nhs bigint; "
        f"update marts.network_meetings set referrer_nhs = {VALID_NHS_NUMBER.replace(' ', '')} "
        "where meeting_id in (select min(meeting_id) from marts.network_meetings)",
    )
    # Ten digits inside a longer run are not an NHS number: no false alarm on outcome_scores.
    sql(work_db, "update marts.outcome_scores set value_set = 'ref-94347659190'")
    leaking = [mart("quarantine"), mart("participants"), mart("network_meetings")]
    result = materialize(identifier_checks, [*leaking, mart("outcome_scores")])
    for key in leaking:
        check = evaluation(result, key, "no_direct_identifiers")
        assert (check.passed, check.severity) == (False, ERROR), key
        assert VALID_NHS_NUMBER.replace(" ", "") not in metadata_text(check).replace(" ", "")
        assert birth not in metadata_text(check)
    participants = evaluation(result, mart("participants"), "no_direct_identifiers")
    assert participants.metadata["rows_with_date_of_birth"].value == 1
    assert "consent_date" in participants.metadata["columns_with_identifiers"].value
    assert evaluation(result, mart("outcome_scores"), "no_direct_identifiers").passed
    assert materialized(result) & {after(key) for key in [*leaking, mart("outcome_scores")]} == {
        after(mart("outcome_scores"))
    }


def test_export_drift_blocks_dropped_participants_and_grades_changed_records(work_db: Path) -> None:
    current = EXPORTS[1]
    sql(
        work_db,
        f"delete from restricted.register_history where _export_id = '{current}' "
        "and _site = 's01' and hash(study_id) % 10 = 0",
    )
    sql(
        work_db,
        f"update restricted.redcap_records_history set _row_hash = md5(_row_hash) "
        f"where _export_id = '{current}' and _site = 's02' and hash(record_id) % 10 < 3",
    )
    sql(
        work_db,
        f"update restricted.honos_history set _row_hash = md5(_row_hash) "
        f"where _export_id = '{current}' and _site = 's01' and hash(assessment_id) % 10 < 7",
    )
    keys = [RAW_KEYS[file] for file in DRIFT_FILES]
    result = materialize(export_drift_checks, keys)
    register, records, honos, meetings, acute_care = (evaluation(result, key, "export_drift") for key in keys)
    assert (register.passed, register.severity) == (False, ERROR)
    assert register.metadata["participants_dropped"].value > 0
    assert (records.passed, records.severity) == (False, WARN)
    assert (honos.passed, honos.severity) == (False, ERROR)
    assert meetings.passed
    assert acute_care.passed  # this warehouse has no acute-care exports: nothing to compare
    assert "S01-" not in metadata_text(register) and "S02-" not in metadata_text(records)
    # Only the error-level failures (register, HoNOS) block what comes after them.
    assert materialized(result) & {after(key) for key in keys} == {
        after(RAW_KEYS["redcap_records.csv"]),
        after(RAW_KEYS["network_meetings.csv"]),
        after(RAW_KEYS["acute_care.csv"]),
    }


def test_a_check_that_cannot_read_its_table_blocks(work_db: Path) -> None:
    sql(work_db, "drop table marts.completeness")
    result = materialize([completeness_of_due_assessments], [mart("completeness")])
    assert not result.success
    assert after(mart("completeness")) not in materialized(result)


def test_every_check_targets_an_asset_of_the_code_location() -> None:
    from pod_pipeline.definitions import defs

    keys = set(defs.resolve_asset_graph().get_all_asset_keys())
    targets = {key.asset_key for check in quality_checks for key in check.check_keys}
    assert targets <= keys


def test_every_check_has_its_suite_and_a_line_in_the_readme() -> None:
    import great_expectations as gx

    readme = (EXPECTATIONS_DIR / "README.md").read_text(encoding="utf-8")
    names = {key.name for check in quality_checks for key in check.check_keys}
    assert {path.stem for path in EXPECTATIONS_DIR.glob("*.json")} == names
    for name in names:
        suite_json = load_suite_json(name)
        suite = gx.ExpectationSuite(**suite_json)
        assert suite.name == name and suite.meta["grain"]
        assert {e["severity"] for e in suite_json["expectations"]} <= {"critical", "warning"}
        assert f"`{name}`" in readme
