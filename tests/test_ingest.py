"""Ingestion against the landing-zone contract: what is loaded, quarantined or rejected, and why."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from landing_builder import (
    KEY,
    batch,
    dictionary_rows,
    episode,
    honos,
    ingest,
    meeting,
    participant,
    quarantine,
    redcap,
    write_csv,
)

from pod_pipeline import seeds
from pod_pipeline.identifiers import pseudonym
from pod_pipeline.ingest import csvfile, current, drift, ledger, load, pipeline
from pod_pipeline.ingest.assets import RAW_KEYS, landing_batches, raw_assets
from pod_pipeline.ingest.batch_manifest import KNOWN_FILES, seal_batch
from pod_pipeline.ingest.checks import conservation_failures
from pod_pipeline.ingest.specs import DICTIONARY_COLUMNS
from pod_pipeline.resources import Warehouse
from pod_pipeline.settings import Settings, SettingsError
from pod_pipeline.sql import in_any_order, lit

E1, E2, E3 = "20250101T060000Z", "20250301T060000Z", "20250201T060000Z"
NHS_A, NHS_B, NHS_UNKNOWN = "9434765919", "4010232137", "9990000018"


def test_register_rules(tmp_path: Path) -> None:
    rows = [
        participant("KMPT-0001", nhs_number="943 476 5919"),
        participant("kmpt-1"),                                                  # line 3
        participant("KMPT-0003", nhs_number="9434765918"),                      # line 4
        participant("KMPT-0004", date_of_birth="1990-02-30"),                   # line 5
        participant("KMPT-0005", gender="M"),                                   # line 6
        participant("KMPT-0006", arm="CONTROL"),                                # line 7
        participant("KMPT-0007", withdrawal_date="2024-01-01", withdrawal_type="follow_up"),  # line 8
        participant("KMPT-0008", withdrawal_type="died"),                       # line 9
        participant("KMPT-0009", consent_date=""),                              # line 10
        participant("KMPT-0010"), participant("KMPT-0010"),                     # lines 11, 12
        participant("KMPT-0012", ethnic_category="Q"),                          # line 13
    ]
    batch(tmp_path / "lz", "kmpt", E1, register=rows)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert quarantine(con) == [
        ("register.csv", 3, "study_id", "invalid_format", "row", None),
        ("register.csv", 4, "nhs_number", "invalid_nhs_number", "row", None),
        ("register.csv", 5, "date_of_birth", "invalid_date", "row", None),
        ("register.csv", 6, "gender", "invalid_code", "row", None),
        ("register.csv", 7, "arm", "invalid_code", "row", None),
        ("register.csv", 8, "withdrawal_date", "date_order", "row", None),
        ("register.csv", 9, "withdrawal_type", "inconsistent_value", "row", None),
        ("register.csv", 10, "consent_date", "missing_value", "row", None),
        ("register.csv", 11, "study_id", "duplicate_key", "row", None),
        ("register.csv", 12, "study_id", "duplicate_key", "row", None),
        ("register.csv", 13, "ethnic_category", "invalid_code", "row", None),
    ]
    assert con.execute("select study_id, age_at_consent, has_nhs_number from raw.register").fetchall() == [
        ("KMPT-0001", 43, True)]
    # A date of birth never reaches a detail, even when it is the invalid value.
    details = " ".join(d for (d,) in con.execute("select detail from audit.quarantine").fetchall())
    assert "1990-02-30" not in details and "9434765918" not in details


def test_redcap_instruments_are_quarantined_alone_and_rows_whole(tmp_path: Path) -> None:
    register = [participant("KMPT-0001"), participant("KMPT-0002", arm="TAU")]
    rows = [
        redcap("KMPT-0001", visit_date="2024-03-02", wemwbs_01="7", wemwbs_02="UNK", wsas_1="x", eq5d5l_mo="2"),
        redcap("KMPT-0001", "month_3_arm_1", visit_date="2024-02-30"),                      # line 3
        redcap("KMPT-0009"),                                                               # line 4
        redcap("KMPT-0002", "baseline_arm_1"),                                             # line 5
        redcap("KMPT-0002", "week_1_arm_2"),                                               # line 6
        redcap("KMPT-0001", "month_6_arm_1"), redcap("KMPT-0001", "month_6_arm_1"),        # lines 7, 8
        redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire", redcap_repeat_instance="1",
               carer_id="C1", carer_relationship="9", cws_wb_01="3"),                      # line 9
        redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire", carer_id="C2"),  # line 10
        redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire", redcap_repeat_instance="2"),  # 11
        redcap("KMPT-0002", "baseline_arm_2", redcap_data_access_group="other"),           # line 12
    ]
    batch(tmp_path / "lz", "kmpt", E1, register=register, redcap_rows=rows, dictionary=dictionary_rows())
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q for q in quarantine(con) if q[0] == "redcap_records.csv"] == [
        ("redcap_records.csv", 2, "wemwbs_01", "out_of_range", "instrument", "wemwbs"),
        ("redcap_records.csv", 2, "wsas_1", "not_a_number", "instrument", "wsas"),
        ("redcap_records.csv", 3, "visit_date", "invalid_date", "instrument", "visit"),
        ("redcap_records.csv", 4, "record_id", "unknown_participant", "row", None),
        ("redcap_records.csv", 5, "redcap_event_name", "arm_mismatch", "row", None),
        ("redcap_records.csv", 6, "redcap_event_name", "invalid_event", "row", None),
        ("redcap_records.csv", 7, "record_id", "duplicate_key", "row", None),
        ("redcap_records.csv", 8, "record_id", "duplicate_key", "row", None),
        ("redcap_records.csv", 9, "carer_relationship", "out_of_range", "instrument", "carer_questionnaire"),
        ("redcap_records.csv", 10, "redcap_repeat_instance", "invalid_repeat", "row", None),
        ("redcap_records.csv", 11, "carer_id", "missing_value", "row", None),
        ("redcap_records.csv", 12, "redcap_data_access_group", "invalid_code", "row", None),
    ]
    loaded = con.execute("select line_number, wemwbs_01, wemwbs_02, wsas_1, eq5d5l_mo, visit_date, "
                         "quarantined_instruments from raw.redcap_records order by line_number").fetchall()
    assert loaded == [(2, None, None, None, "2", "2024-03-02", "wemwbs,wsas"),
                      (3, None, None, None, None, None, "visit"),
                      (9, None, None, None, None, None, "carer_questionnaire")]
    assert conservation_failures(con, "redcap_records.csv") == []


def test_conservation_finds_rows_lost_or_counted_twice(tmp_path: Path) -> None:
    register = [participant("KMPT-0001"), participant("KMPT-0002"), participant("KMPT-0003"),
                participant("kmpt-4")]                                                      # line 5 quarantined
    batch(tmp_path / "lz", "kmpt", E1, register=register)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert conservation_failures(con, "register.csv") == []
    current = [("kmpt", E1, "current", 4, 3, 1)]
    # Line 3 in the raw table twice and line 4 in it nowhere: as many lines as the file had rows.
    con.execute("update raw.register set line_number = 3 where line_number = 4")
    assert conservation_failures(con, "register.csv") == current
    con.execute("update raw.register set line_number = 4 where study_id = 'KMPT-0003'")
    assert conservation_failures(con, "register.csv") == []
    # A quarantined line in the raw table as well: counted twice.
    con.execute("update raw.register set line_number = 5 where study_id = 'KMPT-0003'")
    assert conservation_failures(con, "register.csv") == current
    con.execute("update raw.register set line_number = 4 where study_id = 'KMPT-0003'")
    # A row gone from the raw table, or from history.
    con.execute("delete from raw.register where study_id = 'KMPT-0002'")
    assert conservation_failures(con, "register.csv") == [("kmpt", E1, "current", 4, 2, 1)]
    con.execute("delete from restricted.register_history where study_id = 'KMPT-0001'")
    assert conservation_failures(con, "register.csv") == [
        ("kmpt", E1, "current", 4, 2, 1), ("kmpt", E1, "history", 4, 2, 1)]


def test_events_follow_the_site_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kmpt follows pod_evaluation (seed site_protocols): a month_12 row is not one of its events,
    until POD_SITE_PROTOCOLS assigns kmpt the national trial. ZBI-12 is a carer's instrument."""
    register = [participant("KMPT-0001")]
    rows = [
        redcap("KMPT-0001", "month_12_arm_1"),                                             # line 2
        redcap("KMPT-0001", zbi_01="3"),                                                   # line 3
        redcap("KMPT-0001", "month_3_arm_1", redcap_repeat_instrument="carer_questionnaire",
               redcap_repeat_instance="1", carer_id="C1", zbi_01="3", zbi_02="7"),         # line 4
    ]
    batch(tmp_path / "lz", "kmpt", E1, register=register, redcap_rows=rows, dictionary=dictionary_rows())
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q for q in quarantine(con) if q[0] == "redcap_records.csv"] == [
        ("redcap_records.csv", 2, "redcap_event_name", "invalid_event", "row", None),
        ("redcap_records.csv", 3, "zbi_01", "inconsistent_value", "row", None),
        ("redcap_records.csv", 4, "zbi_02", "out_of_range", "instrument", "zbi12"),
    ]
    detail = con.execute("select detail from raw.quarantine where reason = 'invalid_event'").fetchone()[0]
    assert "pod_evaluation" in detail

    monkeypatch.setenv("POD_SITE_PROTOCOLS", "kmpt=national_trial")
    batch(tmp_path / "lz2", "kmpt", E1, register=register, redcap_rows=rows[:1], dictionary=dictionary_rows())
    con = ingest(tmp_path / "lz2", tmp_path / "w2.duckdb")
    assert [q for q in quarantine(con) if q[0] == "redcap_records.csv"] == []


def test_site_protocols_setting_names_known_protocols() -> None:
    settings = Settings.from_env({"POD_SITE_PROTOCOLS": "essex=national_trial, kent=pod_evaluation"})
    assert settings.site_protocols == {"essex": "national_trial", "kent": "pod_evaluation"}
    assert settings.dbt_vars()["site_protocols"] == "essex=national_trial,kent=pod_evaluation"
    assert seeds.site_protocol("essex", settings.site_protocols) == "national_trial"
    assert seeds.site_protocol("slam", {}) == "national_trial"
    assert seeds.site_protocol("kmpt", {"kmpt": "national_trial"}) == "national_trial"
    assert seeds.site_protocol("elsewhere", {}) == "pod_evaluation"
    for value in ("essex=trial", "essex", "Essex=national_trial"):
        with pytest.raises(SettingsError, match="POD_SITE_PROTOCOLS"):
            Settings.from_env({"POD_SITE_PROTOCOLS": value})


def test_honos_linking_through_the_keyed_pseudonym(tmp_path: Path) -> None:
    register = [participant("KMPT-0001", nhs_number="943 476 5919"), participant("KMPT-0002", nhs_number=NHS_B)]
    rows = [
        honos("H1", "943 476 5919", "05/03/2024", honos_06="9"),
        honos("H2", NHS_UNKNOWN),                                               # line 3: unlinked
        honos("H3", "1234567890"),                                              # line 4: invalid
        honos("H4", NHS_B, honos_08="0"),                                       # line 5: type given with 0
        honos("H5", NHS_B, honos_03="5"),                                       # line 6
        honos("H6", NHS_B, "31/04/2024"),                                       # line 7
        honos("H7", NHS_B, honos_08="9", honos_08_problem_type=""),
    ]
    batch(tmp_path / "lz", "kmpt", E1, register=register, honos_rows=rows)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q[1:4] for q in quarantine(con) if q[0] == "honos.csv"] == [
        (3, "nhs_number", "unlinked"), (4, "nhs_number", "invalid_nhs_number"),
        (5, "honos_08_problem_type", "inconsistent_value"), (6, "honos_03", "out_of_range"),
        (7, "assessment_date", "invalid_date")]
    assert con.execute("select assessment_id, study_id, honos_06 from raw.honos order by 1").fetchall() == [
        ("H1", "KMPT-0001", "9"), ("H7", "KMPT-0002", "1")]
    columns = {c for (c,) in con.execute("select column_name from information_schema.columns "
                                         "where table_schema = 'raw'").fetchall()}
    assert not columns & {"nhs_number", "date_of_birth"}
    stored = con.execute("select _pseudonym from restricted.register_history where study_id = 'KMPT-0001'")
    assert stored.fetchall()[0][0] == pseudonym(NHS_A, KEY)


def test_meeting_rules(tmp_path: Path) -> None:
    register = [participant("KMPT-0001")]
    rows = [meeting("M1", "KMPT-0001"), meeting("M2", "KMPT-0001", "2023-11-01"),
            meeting("M3", "KMPT-0099"), meeting("M4", "KMPT-0001", duration_minutes="600"),
            meeting("M5", "KMPT-0001", key_element_03="3"), meeting("M6", "KMPT-0001", "2023-12-03")]
    batch(tmp_path / "lz", "kmpt", E1, register=register, meetings=rows)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q[1:4] for q in quarantine(con)] == [
        (3, "meeting_date", "date_order"), (4, "study_id", "unknown_participant"),
        (5, "duration_minutes", "out_of_range"), (6, "key_element_03", "invalid_code")]
    # 2023-12-03 is exactly 89 days before consent: inside the allowed 90.
    assert con.execute("select meeting_id from raw.network_meetings order by 1").fetchall() == [("M1",), ("M6",)]


def test_acute_care_rules(tmp_path: Path) -> None:
    register = [participant("KMPT-0001", nhs_number=NHS_A), participant("KMPT-0002", nhs_number=NHS_B)]
    rows = [
        episode("E1", "943 476 5919", "10/03/2024", "2024-03-20", detained="1"),
        episode("E2", NHS_B, "2024-04-01", "", "crisis_team"),                 # open episode
        episode("E3", NHS_UNKNOWN),                                             # line 4: unlinked
        episode("E4", "1234567890"),                                            # line 5: invalid
        episode("E5", NHS_A, episode_type="day_hospital"),                      # line 6
        episode("E6", NHS_A, "2024-03-10", "09/03/2024"),                       # line 7: ends before start
        episode("E7", NHS_A, "31/04/2024"),                                     # line 8
        episode("E8", NHS_A, ""),                                               # line 9
        episode("E9", NHS_A, detained="yes"),                                   # line 10
        episode("E10", NHS_A), episode("E10", NHS_B),                           # lines 11, 12
        episode("", NHS_A),                                                     # line 13
        episode("E13", NHS_A, "05/03/2024", "2024-03-05"),                      # same day, two formats
    ]
    batch(tmp_path / "lz", "kmpt", E1, register=register, acute_care=rows)
    folder = tmp_path / "lz" / "kmpt" / E1
    (folder / "acute_care.csv").write_text((folder / "acute_care.csv").read_text() + "E14,9434765919\n")
    seal_batch(folder)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q[1:4] for q in quarantine(con) if q[0] == "acute_care.csv"] == [
        (4, "nhs_number", "unlinked"), (5, "nhs_number", "invalid_nhs_number"),
        (6, "episode_type", "invalid_code"), (7, "end_date", "date_order"), (8, "start_date", "invalid_date"),
        (9, "start_date", "missing_value"), (10, "detained", "invalid_code"),
        (11, "episode_id", "duplicate_key"), (12, "episode_id", "duplicate_key"),
        (13, "episode_id", "missing_value"), (15, None, "malformed_row")]
    assert con.execute("select episode_id, study_id, episode_type, start_date, end_date, detained "
                       "from raw.acute_care order by line_number").fetchall() == [
        ("E1", "KMPT-0001", "inpatient", "10/03/2024", "2024-03-20", "1"),
        ("E2", "KMPT-0002", "crisis_team", "2024-04-01", None, "0"),
        ("E13", "KMPT-0001", "inpatient", "05/03/2024", "2024-03-05", "0")]
    columns = {c for (c,) in con.execute("select column_name from information_schema.columns "
                                         "where table_schema = 'raw' and table_name = 'acute_care'").fetchall()}
    assert "nhs_number" not in columns
    details = " ".join(d for (d,) in con.execute("select detail from raw.quarantine").fetchall())
    assert "1234567890" not in details and NHS_UNKNOWN not in details and NHS_A not in details
    assert conservation_failures(con, "acute_care.csv") == []


def test_a_later_acute_care_export_corrects_an_episode_and_an_unlinked_one_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    db = tmp_path / "w.duckdb"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001", nhs_number=NHS_A)],
          acute_care=[episode("E1", NHS_A, end=""), episode("E2", NHS_B, "2024-05-01", "2024-05-10")])
    con = ingest(root, db)
    assert _current_quarantine(con) == [("acute_care.csv", E1, 3, "nhs_number", "unlinked")]
    con.close()
    # The next export closes E1; the register, left out of it, still stands and does not know NHS_B.
    batch(root, "kmpt", E3, acute_care=[episode("E1", NHS_A, end="2024-03-25"),
                                        episode("E2", NHS_B, "2024-05-01", "2024-05-10")])
    con = ingest(root, db)
    assert con.execute("select episode_id, end_date, export_id from raw.acute_care").fetchall() == [
        ("E1", "2024-03-25", E3)]
    assert con.execute("select episode_id, end_date, _export_id from restricted.acute_care_history "
                       "order by _export_id, episode_id").fetchall() == [
        ("E1", None, E1), ("E2", "2024-05-10", E1), ("E1", "2024-03-25", E3), ("E2", "2024-05-10", E3)]
    assert _current_quarantine(con) == [("acute_care.csv", E3, 3, "nhs_number", "unlinked")]
    con.close()
    # The register gains the person: their episode comes back, no acute_care file re-sent.
    batch(root, "kmpt", E2, register=[participant("KMPT-0001", nhs_number=NHS_A),
                                      participant("KMPT-0002", nhs_number=NHS_B)])
    con = ingest(root, db)
    assert _current_quarantine(con) == []
    assert con.execute("select episode_id, study_id, export_id from raw.acute_care order by 1").fetchall() == [
        ("E1", "KMPT-0001", E3), ("E2", "KMPT-0002", E3)]
    for file in KNOWN_FILES:
        assert conservation_failures(con, file) == [], file


def test_batches_are_verified_and_rejected_whole(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    good = batch(root, "kmpt", E1, register=[participant("KMPT-0001")])
    (good / "notes.txt").write_text("not listed")
    tampered = batch(root, "kmpt", E2, register=[participant("KMPT-0001"), participant("KMPT-0002")])
    (tampered / "register.csv").write_text((tampered / "register.csv").read_text() + "KMPT-0003,,,,,,,,,\n")
    moved = batch(root, "kmpt", E3, register=[participant("KMPT-0001")])
    manifest = json.loads((moved / "manifest.json").read_text())
    (moved / "manifest.json").write_text(json.dumps(manifest | {"site": "slam"}))
    batch(root, "kmpt", "20250401T060000Z", register=[participant("KMPT-0004")], seal=False)
    con = ingest(root, tmp_path / "w.duckdb")
    assert [q[:4] for q in quarantine(con)] == [("manifest.json", None, None, "manifest_mismatch"),
                                               ("register.csv", None, None, "checksum_mismatch")]
    statuses = con.execute("select export_id, file, status from audit.load_ledger order by entry_id").fetchall()
    assert (E1, "notes.txt", "ignored") in statuses
    assert not any(e == "20250401T060000Z" for e, _, _ in statuses)  # unsealed: waited for, not an error
    assert con.execute("select study_id from raw.register").fetchall() == [("KMPT-0001",)]


def test_later_batch_correction_wins_and_history_keeps_both(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    register = [participant("KMPT-0001")]
    batch(root, "kmpt", E1, register=register, redcap_rows=[redcap("KMPT-0001", wemwbs_01="2")])
    batch(root, "kmpt", E2, redcap_rows=[redcap("KMPT-0001", wemwbs_01="4")])
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select wemwbs_01, export_id from raw.redcap_records").fetchall() == [("4", E2)]
    assert con.execute("select wemwbs_01, _export_id from restricted.redcap_records_history order by 2"
                       ).fetchall() == [("2", E1), ("4", E2)]
    # The register was left out of the second batch: the first one stands and links it.
    assert con.execute("select export_id from raw.register").fetchall() == [(E1,)]
    # An older batch arriving late goes to history but does not replace the current truth.
    batch(root, "kmpt", E3, register=register, redcap_rows=[redcap("KMPT-0001", wemwbs_01="1")])
    con.close()
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select wemwbs_01 from raw.redcap_records").fetchall() == [("4",)]
    assert con.execute("select count(*) from restricted.redcap_records_history").fetchall() == [(3,)]


def test_loading_twice_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001")], redcap_rows=[redcap("KMPT-0001")])
    ingest(root, tmp_path / "w.duckdb").close()
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select count(*) from audit.load_ledger").fetchall() == [(3,)]
    assert con.execute("select count(*) from restricted.redcap_records_history").fetchall() == [(1,)]
    assert ledger.verify(con) == []
    for file in KNOWN_FILES:
        assert conservation_failures(con, file) == []


def test_a_changed_loaded_batch_is_refused_and_the_ledger_chain_detects_tampering(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    folder = batch(root, "kmpt", E1, register=[participant("KMPT-0001")])
    ingest(root, tmp_path / "w.duckdb").close()
    (folder / "register.csv").write_text((folder / "register.csv").read_text().replace("1980", "1981"))
    seal_batch(folder)
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select status from audit.load_ledger where file = 'manifest.json' order by entry_id"
                       ).fetchall() == [("accepted",), ("rejected",)]
    assert con.execute("select count(*) from restricted.register_history").fetchall() == [(1,)]
    con.execute("update audit.load_ledger set rows_loaded = 99 where file = 'register.csv'")
    assert ledger.verify(con) == ["entry 2 (kmpt/20250101T060000Z/register.csv) was altered after it was written"]


@pytest.mark.parametrize("flagged", [("carer_id",)])
def test_fields_the_dictionary_flags_as_identifiers_stay_restricted(tmp_path: Path, flagged: tuple) -> None:
    rows = [redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire", redcap_repeat_instance="1",
                   carer_id="Jane Doe", cws_wb_01="3")]
    batch(tmp_path / "lz", "kmpt", E1, register=[participant("KMPT-0001")], redcap_rows=rows,
          dictionary=dictionary_rows(flagged))
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert con.execute("select carer_id, cws_wb_01 from raw.redcap_records").fetchall() == [(None, "3")]


def test_ten_digits_in_a_free_text_field_are_quarantined_without_the_value(tmp_path: Path) -> None:
    register = [participant("KMPT-0001", nhs_number=NHS_A, cluster_id="943 476 5919"),
                participant("KMPT-0002", nhs_number=NHS_B, cluster_id="GP-07")]
    batch(tmp_path / "lz", "kmpt", E1, register=register,
          honos_rows=[honos("H1", NHS_B, rater_role="Nurse 4010232137"), honos("H2", NHS_B)])
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q[:4] for q in quarantine(con)] == [("honos.csv", 2, "rater_role", "identifier_in_text"),
                                               ("register.csv", 2, "cluster_id", "identifier_in_text")]
    details = " ".join(d for (d,) in con.execute("select detail from audit.quarantine").fetchall())
    assert "5919" not in details and "2137" not in details
    assert con.execute("select cluster_id from raw.register").fetchall() == [("GP-07",)]


def _current_quarantine(con) -> list[tuple]:
    return con.execute('select file, export_id, line, "column", reason from raw.quarantine '
                       "where is_current_export and scope = 'row' order by all").fetchall()


def test_rows_delivered_before_their_participant_is_registered_come_back_when_the_register_catches_up(
        tmp_path: Path) -> None:
    """Issue 11's scenario: the register of batch 1 is rejected whole (a duplicated column), so the
    participant recruited that month is in no accepted register while their meeting log, REDCap and
    HoNOS rows load; batch 2 re-sends a good register and leaves the other files out."""
    root = tmp_path / "lz"
    db = tmp_path / "w.duckdb"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001", nhs_number=NHS_A)])
    first = batch(root, "kmpt", E3, register=[participant("KMPT-0001", nhs_number=NHS_A),
                                              participant("KMPT-0002", nhs_number=NHS_B)],
                  meetings=[meeting("M1", "KMPT-0001"), meeting("M2", "KMPT-0002")],
                  redcap_rows=[redcap("KMPT-0001"), redcap("KMPT-0002", wemwbs_01="3")],
                  honos_rows=[honos("H1", NHS_A), honos("H2", NHS_B)], dictionary=dictionary_rows())
    register = first / "register.csv"
    lines = register.read_text().splitlines()
    register.write_text("\n".join([lines[0] + ",arm", *(line + ",POD" for line in lines[1:])]) + "\n")
    seal_batch(first)
    con = ingest(root, db)
    assert ("register.csv", E3, None, "arm", "duplicate_column") in con.execute(
        'select file, export_id, line, "column", reason from raw.quarantine where is_current_export').fetchall()
    assert _current_quarantine(con) == [
        ("honos.csv", E3, 3, "nhs_number", "unlinked"),
        ("network_meetings.csv", E3, 3, "study_id", "unknown_participant"),
        ("redcap_records.csv", E3, 3, "record_id", "unknown_participant")]
    assert con.execute("select meeting_id from raw.network_meetings").fetchall() == [("M1",)]
    con.close()

    batch(root, "kmpt", E2, register=[participant("KMPT-0001", nhs_number=NHS_A),
                                      participant("KMPT-0002", nhs_number=NHS_B)])
    con = ingest(root, db)
    assert _current_quarantine(con) == []
    assert con.execute("select meeting_id, export_id from raw.network_meetings order by 1").fetchall() == [
        ("M1", E3), ("M2", E3)]
    assert con.execute("select record_id, wemwbs_01 from raw.redcap_records order by 1").fetchall() == [
        ("KMPT-0001", None), ("KMPT-0002", "3")]
    assert con.execute("select assessment_id, study_id from raw.honos order by 1").fetchall() == [
        ("H1", "KMPT-0001"), ("H2", "KMPT-0002")]
    # History and the ledger only grew: the meeting log was loaded once, with its own verdicts.
    assert con.execute("select count(*) from audit.load_ledger where file = 'network_meetings.csv'"
                       ).fetchall() == [(1,)]
    assert con.execute("select count(*), count(*) filter (where _status = 'loaded') "
                       "from restricted.network_meetings_history").fetchall() == [(2, 2)]
    for file in KNOWN_FILES:
        assert conservation_failures(con, file) == [], file


def test_a_participant_dropped_from_the_register_or_renumbered_sends_their_rows_to_quarantine(
        tmp_path: Path) -> None:
    root = tmp_path / "lz"
    db = tmp_path / "w.duckdb"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001", nhs_number=NHS_A),
                                      participant("KMPT-0002", nhs_number=NHS_B)],
          meetings=[meeting("M1", "KMPT-0001"), meeting("M2", "KMPT-0002")],
          redcap_rows=[redcap("KMPT-0001"), redcap("KMPT-0002", "baseline_arm_1")],
          honos_rows=[honos("H1", NHS_A), honos("H2", NHS_B)])
    ingest(root, db).close()
    # KMPT-0002 leaves the register; KMPT-0001's NHS number is corrected; KMPT-0003 joins in arm TAU
    # under the REDCap record that was KMPT-0002's... no: the arm of KMPT-0001 changes to TAU.
    batch(root, "kmpt", E2, register=[participant("KMPT-0001", nhs_number="9990000018", arm="TAU")])
    con = ingest(root, db)
    assert _current_quarantine(con) == [
        ("honos.csv", E1, 2, "nhs_number", "unlinked"),
        ("honos.csv", E1, 3, "nhs_number", "unlinked"),
        ("network_meetings.csv", E1, 3, "study_id", "unknown_participant"),
        ("redcap_records.csv", E1, 2, "redcap_event_name", "arm_mismatch"),
        ("redcap_records.csv", E1, 3, "record_id", "unknown_participant")]
    assert con.execute("select meeting_id from raw.network_meetings").fetchall() == [("M1",)]
    assert con.execute("select count(*) from raw.honos").fetchall() == [(0,)]
    assert con.execute("select count(*) from raw.redcap_records").fetchall() == [(0,)]
    details = " ".join(d for (d,) in con.execute("select detail from raw.quarantine").fetchall())
    assert "9990000018" not in details and NHS_A not in details
    for file in KNOWN_FILES:
        assert conservation_failures(con, file) == [], file


def test_a_run_with_nothing_new_rebuilds_no_site_and_a_new_register_rebuilds_only_its_site(tmp_path: Path) -> None:
    root = tmp_path / "lz"
    db = tmp_path / "w.duckdb"
    for site in ("kmpt", "slam"):
        prefix = site.upper()
        batch(root, site, E1, register=[participant(f"{prefix}-0001")],
              meetings=[meeting("M1", f"{prefix}-0001"), meeting("M2", f"{prefix}-0002")])
    ingest(root, db).close()

    def judged() -> list[tuple]:  # each cross-file verdict with the time it was reached
        with duckdb.connect(str(db)) as con:
            return con.execute("select site, line, quarantined_at from audit.cross_file_quarantine "
                               "order by all").fetchall()

    verdicts = judged()
    assert [v[:2] for v in verdicts] == [("kmpt", 3), ("slam", 3)]
    ingest(root, db).close()
    assert judged() == verdicts
    batch(root, "slam", E2, register=[participant("SLAM-0001"), participant("SLAM-0002")])
    con = ingest(root, db)
    assert _current_quarantine(con) == [("network_meetings.csv", E1, 3, "study_id", "unknown_participant")]
    con.close()
    assert judged() == [v for v in verdicts if v[0] == "kmpt"]  # kmpt was not re-judged
    con = duckdb.connect(str(db))
    assert con.execute("select count(*) from raw.network_meetings where site = 'slam'").fetchall() == [(2,)]


def test_a_loaded_batch_removed_from_the_landing_zone_is_named_and_stops_nothing(tmp_path: Path) -> None:
    """A site or an operator may archive old batches: what was loaded from one stays in history,
    later batches load, and the batch is named as gone (it crashed every later run before)."""
    from pod_pipeline.ingest import landing

    root = tmp_path / "lz"
    first = batch(root, "kmpt", E1, register=[participant("KMPT-0001")],
                  redcap_rows=[redcap("KMPT-0001", wemwbs_01="2")])
    ingest(root, tmp_path / "w.duckdb").close()
    for path in sorted(first.iterdir()):
        path.unlink()
    first.rmdir()
    batch(root, "kmpt", E2, redcap_rows=[redcap("KMPT-0001", wemwbs_01="4")])
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select wemwbs_01, export_id from raw.redcap_records").fetchall() == [("4", E2)]
    assert con.execute("select export_id from raw.register").fetchall() == [(E1,)]
    assert landing.gone_batches(con, root) == [f"kmpt/{E1}"]
    assert all(landing.pending_files(con, root, file) == [] for file in KNOWN_FILES)


def test_rows_written_in_any_order_keep_their_lines_and_the_connection_keeps_its_order(tmp_path: Path) -> None:
    """History and raw rows are written on every core, in no particular order (sql.in_any_order):
    each keeps the line it came from, and the connection, whose staging numbers lines by insertion
    order, has insertion order kept again afterwards."""
    root = tmp_path / "lz"
    n = 3_000
    batch(root, "kmpt", E1, register=[participant("KMPT-0001")],
          meetings=[meeting(f"M{i:06d}", "KMPT-0001", date=f"2024-03-{i % 28 + 1:02d}") for i in range(n)])
    con = ingest(root, tmp_path / "w.duckdb")
    assert con.execute("select current_setting('preserve_insertion_order')").fetchall() == [(True,)]
    misplaced = ("count(*) filter (where {line} <> cast(substr(meeting_id, 2) as bigint) + 2), count(*)")
    assert con.execute(f"select {misplaced.format(line='_line')} from restricted.network_meetings_history"
                       ).fetchall() == [(0, n)]
    assert con.execute(f"select {misplaced.format(line='line_number')} from raw.network_meetings"
                       ).fetchall() == [(0, n)]


def test_in_any_order_restores_the_setting_when_the_block_fails() -> None:
    con = duckdb.connect()
    with pytest.raises(duckdb.CatalogException), in_any_order(con):
        assert con.execute("select current_setting('preserve_insertion_order')").fetchall() == [(False,)]
        con.execute("select * from no_such_table")
    assert con.execute("select current_setting('preserve_insertion_order')").fetchall() == [(True,)]


def _deliver_again(root: Path, site: str, earlier: str, export_id: str, files: tuple[str, ...]) -> Path:
    """A new batch repeating `files` of an earlier one byte for byte."""
    folder = root / site / export_id
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes((root / site / earlier / name).read_bytes())
    seal_batch(folder)
    return folder


def _as_recorded(con: duckdb.DuckDBPyConnection, export_id: str) -> dict[str, list[tuple]]:
    """What ingestion recorded of one batch's files, the times and run aside, in a stable order."""
    recorded = {
        "ledger": 'select file, sha256, status, rows_read, rows_loaded, rows_quarantined, error '
                  "from audit.load_ledger where export_id = $e and file <> 'manifest.json'",
        "quarantine": 'select file, line, "column", reason, detail, scope, instrument from audit.quarantine '
                      "where export_id = $e",
        "columns": 'select file, position, "column" from audit.file_columns where export_id = $e',
        "cross_file": 'select file, line, "column", reason, detail from audit.cross_file_quarantine '
                      "where export_id = $e",
    }
    for table in ("register", "redcap_records", "honos"):
        recorded[f"raw.{table}"] = f"select * exclude (loaded_at) from raw.{table} where export_id = $e"
    for table in ("register", "redcap_records", "honos"):
        # A line's digest is kept with its row only when it was read against earlier rows.
        recorded[table] = (f"select * exclude (_loaded_at, _line_digest) from restricted.{table}_history "
                           "where _export_id = $e")
    return {name: sorted(con.execute(sql, {"e": export_id}).fetchall(), key=repr) for name, sql in recorded.items()}


def test_a_file_delivered_again_byte_for_byte_is_recorded_as_its_first_delivery_without_being_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register = [participant("KMPT-0001", nhs_number=NHS_A), participant("KMPT-0002", nhs_number=NHS_B),
                participant("kmpt-3")]                                                   # line 4 quarantined
    rows = [redcap("KMPT-0001", wemwbs_01="7", wemwbs_02="3"),                            # wemwbs quarantined
            redcap("KMPT-0002"), redcap("KMPT-0009")]                                     # line 4 quarantined
    ratings = [honos("H1", NHS_A), honos("H2", NHS_UNKNOWN)]
    files = ("register.csv", "redcap_records.csv", "honos.csv", "redcap_dictionary.csv")
    for root in (tmp_path / "a", tmp_path / "b"):
        folder = batch(root, "kmpt", E1, register=register, redcap_rows=rows, honos_rows=ratings,
                       dictionary=dictionary_rows(), seal=False)
        with (folder / "register.csv").open("a", encoding="utf-8") as out:
            out.write("KMPT-0004,too,few,fields\n")                                       # line 5 malformed
        seal_batch(folder)
        ingest(root, tmp_path / f"{root.name}.duckdb").close()
        _deliver_again(root, "kmpt", E1, E2, files)

    # Warehouse a: the second batch's files are never read; b judges them as any file is judged.
    def not_read(*args, **kwargs):
        raise AssertionError(f"a file delivered again byte for byte was read: {args[1]}")

    # Nor are the current rows rebuilt from them: they are the same rows, named by the new batch.
    def not_rebuilt(*args, **kwargs):
        raise AssertionError(f"the raw rows of a file delivered again byte for byte were rebuilt: {args[1].file}")

    with monkeypatch.context() as patched:
        patched.setattr(load, "stage_file", not_read)
        patched.setattr(current, "_rebuild_site", not_rebuilt)
        a = ingest(tmp_path / "a", tmp_path / "a.duckdb")
    with monkeypatch.context() as patched:
        patched.setattr(load, "_judged_before", lambda *args: None)
        b = ingest(tmp_path / "b", tmp_path / "b.duckdb")

    copied = _as_recorded(a, E2)
    assert copied == _as_recorded(b, E2)
    assert all(copied[name] for name in ("ledger", "cross_file", "raw.register", "raw.honos", "register"))
    assert a.execute("select count(*) from raw.redcap_records where export_id <> $e", {"e": E2}).fetchall() == [(0,)]
    assert a.execute("select distinct r.loaded_at = h._loaded_at from raw.register r join restricted.register_history"
                     " h on h._export_id = r.export_id and h._line = r.line_number").fetchall() == [(True,)]
    assert {(line, reason) for file, line, _, reason, *_ in copied["quarantine"] if file == "register.csv"} == {
        (4, "invalid_format"), (5, "malformed_row")}
    assert any(scope == "instrument" for *_, scope, _ in copied["quarantine"])
    assert a.execute("select file, copied_from from audit.file_judgements where export_id = $e order by file",
                     {"e": E2}).fetchall() == [(f, E1) for f in sorted(files)]
    assert b.execute("select count(*) from audit.file_judgements where export_id = $e and copied_from is null",
                     {"e": E2}).fetchall() == [(len(files),)]
    # The current snapshot is the second batch's, and every row is still accounted for.
    assert a.execute("select distinct export_id from raw.register").fetchall() == [(E2,)]
    assert ledger.verify(a) == []
    for file in files:
        assert conservation_failures(a, file) == []

    # A third delivery of the same bytes copies from the first judgement, through the second; its
    # export drift is taken from the profile on record of the pair the second delivery ended.
    _deliver_again(tmp_path / "a", "kmpt", E1, "20250401T060000Z", ("register.csv",))
    a.close()

    def not_profiled(*args, **kwargs):
        raise AssertionError("the export drift of a file delivered again byte for byte was worked out again")

    with monkeypatch.context() as patched:
        patched.setattr(load, "stage_file", not_read)
        patched.setattr(drift, "_profile_sql", not_profiled)
        a = ingest(tmp_path / "a", tmp_path / "a.duckdb")
    assert a.execute("select copied_from from audit.file_judgements where export_id = '20250401T060000Z'"
                     ).fetchall() == [(E1,)]
    recorded, worked_out = drift.current(a, "register.csv"), drift.drift(a, "register.csv")
    assert recorded[["previous_export", "current_export", "records_current", "participants_current"]].values.tolist(
    ) == [[E2, "20250401T060000Z", 3, 3]]
    pd.testing.assert_frame_equal(recorded, worked_out, check_dtype=False)


def test_the_same_bytes_are_judged_anew_under_other_rules_another_key_or_other_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, db = tmp_path / "lz", tmp_path / "w.duckdb"
    rows = [redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire", redcap_repeat_instance="1",
                   carer_id="Jane Doe", cws_wb_01="9")]
    batch(root, "kmpt", E1, register=[participant("KMPT-0001", nhs_number=NHS_A)], redcap_rows=rows,
          honos_rows=[honos("H1", NHS_A)], dictionary=dictionary_rows())
    ingest(root, db).close()

    def delivered_with_dictionary(export_id: str, flagged: tuple[str, ...]) -> list[tuple]:
        folder = _deliver_again(root, "kmpt", E1, export_id, ("redcap_records.csv",))
        write_csv(folder / "redcap_dictionary.csv", list(DICTIONARY_COLUMNS), dictionary_rows(flagged))
        seal_batch(folder)
        ingest(root, db).close()
        with duckdb.connect(str(db)) as con:
            return con.execute("select file, copied_from from audit.file_judgements where export_id = $e "
                               "order by file", {"e": export_id}).fetchall()

    # The dictionary now marks carer_id as an identifier. No rule of the load judges carer_id, so
    # the records are judged alike and copied; the raw layer withholds the field (current.py).
    assert delivered_with_dictionary(E2, ("carer_id",)) == [
        ("redcap_dictionary.csv", None), ("redcap_records.csv", E1)]
    # It marks cws_wb_01, whose rule quarantined the carer questionnaire quoting the value: judged anew.
    later = "20250401T060000Z"
    assert delivered_with_dictionary(later, ("carer_id", "cws_wb_01")) == [
        ("redcap_dictionary.csv", None), ("redcap_records.csv", None)]
    con = duckdb.connect(str(db))
    details = dict(con.execute("select export_id, detail from audit.quarantine where instrument = "
                               "'carer_questionnaire'").fetchall())
    assert "9" in details[E2] and "9" not in details[later] and "withheld" in details[later]
    assert con.execute("select carer_id, cws_wb_01 from raw.redcap_records").fetchall() == [(None, None)]
    con.close()

    # The same HoNOS ratings under another pseudonym key: judged anew, so linked under the new key.
    later = "20250501T060000Z"
    _deliver_again(root, "kmpt", E1, later, ("register.csv", "honos.csv"))
    con = duckdb.connect(str(db))
    pipeline.ingest_zone(con, root, "another key, for this test only")
    assert con.execute("select file, copied_from from audit.file_judgements where export_id = $e order by file",
                       {"e": later}).fetchall() == [("honos.csv", None), ("register.csv", None)]
    assert con.execute("select study_id from raw.honos").fetchall() == [("KMPT-0001",)]
    assert con.execute("select _pseudonym from restricted.honos_history where _export_id = $e",
                       {"e": later}).fetchall() == [(pseudonym(NHS_A, "another key, for this test only"),)]
    con.close()

    # The same bytes and rules, judged by other code (a change to staging, rules or this module).
    _deliver_again(root, "kmpt", E1, "20250601T060000Z", ("redcap_records.csv",))
    monkeypatch.setattr(load, "_JUDGED_BY", "other code")
    con = ingest(root, db)
    assert con.execute("select copied_from from audit.file_judgements where export_id = '20250601T060000Z'"
                       ).fetchall() == [(None,)]


def test_the_raw_asset_tells_the_engineer_which_files_were_repeated(
        pod_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "lz"
    batch(root, "kmpt", E1, register=[participant("KMPT-0001"), participant("kmpt-2")])
    _deliver_again(root, "kmpt", E1, E2, ("register.csv",))
    monkeypatch.setenv("POD_LANDING_DIR", str(root))
    register = next(a for a in raw_assets if RAW_KEYS["register.csv"] in a.keys)
    result = dg.materialize([landing_batches, register], resources={"warehouse": Warehouse()})
    metadata = {key: value.value for key, value in result.asset_materializations_for_node(
        register.op.name)[0].metadata.items()}
    assert (metadata["files_loaded"], metadata["files_repeated"], metadata["rows_quarantined"]) == (2, 1, 2)
    assert metadata["read_methods"] == {f"kmpt/{E1}/register.csv": "plain",
                                        f"kmpt/{E2}/register.csv": f"copied from {E1}"}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_cumulative_export_judges_only_its_changed_lines_and_records_what_judging_every_line_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: str) -> None:
    register = [participant("KMPT-0001", nhs_number=NHS_A), participant("KMPT-0002", nhs_number=NHS_B),
                participant("kmpt-3"), participant("KMPT-0005")]                          # line 4 quarantined
    first = [redcap("KMPT-0001", wemwbs_01="7", wemwbs_02="3"),      # line 2: wemwbs quarantined
             redcap("KMPT-0002", wemwbs_01="3"),                     # line 3: changed in the second export
             redcap("KMPT-0009"),                                    # line 4: not in the register
             redcap("KMPT-0002", "month_3_arm_1", wemwbs_01="2"),    # line 5: gone from the second export
             redcap("kmpt-9"),                                       # line 6: quarantined (record_id)
             redcap("KMPT-0005"), redcap("KMPT-0005"),               # lines 7, 8: a duplicate key
             redcap("KMPT-0001", "month_6_arm_1")]                   # line 9
    second = [first[4], first[0],                                    # lines 2, 3: repeated, elsewhere
              redcap("KMPT-0002", wemwbs_01="4"),                    # line 4: changed
              first[2], first[5],                                    # lines 5, 6: repeated
              redcap("KMPT-0004", wemwbs_01="9"),                    # line 7: new, wemwbs quarantined
              redcap("KMPT-0001", "month_3_arm_1", wemwbs_01="5"),   # line 8: new
              first[6],                                              # line 9: its key twice, as before
              first[7], first[7]]                                    # lines 10, 11: its key now twice
    # A third export repeats rows of the second that were copied (lines 2, 3, 5, 6, 9, 10) and judged
    # (4, 7, 8) there, compared with the digests the second kept, and changes one (line 11).
    third = [*second[:9], redcap("KMPT-0001", "month_6_arm_1", wemwbs_01="6")]
    ratings = [honos("H1", NHS_A), honos("H2", NHS_UNKNOWN)]

    def deliver(root: Path, export_id: str, rows: list[dict[str, str]], people: list[dict[str, str]],
                malformed: str = "") -> None:
        folder = batch(root, "kmpt", export_id, register=people, redcap_rows=rows, honos_rows=ratings, seal=False)
        with (folder / "honos.csv").open("a", encoding="utf-8") as out:
            out.write(malformed)
        for path in folder.glob("*.csv"):
            path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
        seal_batch(folder)

    stats, recorded = {}, {}
    for root in (tmp_path / "a", tmp_path / "b"):
        deliver(root, E1, first, register)
        ingest(root, tmp_path / f"{root.name}.duckdb").close()
        # The second register adds a participant; the second HoNOS file has a malformed line, so
        # it is read in full (and reported as before).
        deliver(root, E2, second, [*register, participant("KMPT-0004")], malformed="H3,too,few,fields\n")
    staged_plain: list[str] = []
    plain = csvfile._stage_plain

    def spy(con: duckdb.DuckDBPyConnection, path: Path, *args, **kwargs):
        staged_plain.append(path.name)
        return plain(con, path, *args, **kwargs)

    fourth_export, later_stats, kept = "20250401T060000Z", {}, {}
    for export_id, later in ((E2, None), (fourth_export, third)):
        if later is not None:
            for root in (tmp_path / "a", tmp_path / "b"):
                deliver(root, fourth_export, later, [*register, participant("KMPT-0004")])
        with monkeypatch.context() as patched:  # a: the changed lines only; b: every line, as any file
            patched.setattr(csvfile, "_stage_plain", spy)
            with duckdb.connect(str(tmp_path / "a.duckdb")) as a:
                (later_stats if later else stats).update(
                    {o.file.path.name: o.method for done in pipeline.ingest_zone(a, tmp_path / "a", KEY).values()
                     for o in done.outcomes})
                recorded[f"a{export_id}"] = _as_recorded(a, export_id)
                kept[export_id] = a.execute(
                    "select _line, _line_digest from restricted.redcap_records_history where _export_id = $e "
                    "order by _line", {"e": export_id}).fetchall()
        with monkeypatch.context() as patched:
            patched.setattr(load, "_judged_alike", lambda *args: None)
            with duckdb.connect(str(tmp_path / "b.duckdb")) as b:
                pipeline.ingest_zone(b, tmp_path / "b", KEY)
                recorded[f"b{export_id}"] = _as_recorded(b, export_id)
    recorded["a"], recorded["b"] = recorded[f"a{E2}"], recorded[f"b{E2}"]

    assert stats["redcap_records.csv"] == f"plain: 5 line(s) judged, 5 repeating rows of {E1}"
    assert stats["register.csv"] == f"plain: 1 line(s) judged, 4 repeating rows of {E1}"
    assert stats["honos.csv"] == "python"
    assert staged_plain == ["honos.csv"]
    assert recorded["a"] == recorded["b"]
    # Copied (lines 3, 6 and 9) and judged (the rest) alike; the duplicate keys counted over the file.
    assert {(file, line, reason, scope) for file, line, _, reason, _, scope, _ in recorded["a"]["quarantine"]} == {
        ("honos.csv", 4, "malformed_row", "row"), ("register.csv", 4, "invalid_format", "row"),
        ("redcap_records.csv", 3, "out_of_range", "instrument"), ("redcap_records.csv", 6, "duplicate_key", "row"),
        ("redcap_records.csv", 7, "out_of_range", "instrument"), ("redcap_records.csv", 9, "duplicate_key", "row"),
        ("redcap_records.csv", 10, "duplicate_key", "row"), ("redcap_records.csv", 11, "duplicate_key", "row")}
    assert recorded["a"]["cross_file"]  # kmpt-9 and KMPT-0009 are not in the register

    # Each line read against earlier rows, copied or judged, keeps its own line's digest.
    lines = (tmp_path / "a" / "kmpt" / E2 / "redcap_records.csv").read_bytes().decode().split(newline)
    with duckdb.connect() as con:
        assert kept[E2] == con.execute(f"select _line, {csvfile.line_digest('l')} from (values " + ", ".join(
            f"({n}, {lit(lines[n - 1])})" for n in range(2, 12)) + ") t(_line, l) order by _line").fetchall()
    # The third export: compared with the second's kept digests, recorded as judging every line records.
    assert later_stats["redcap_records.csv"] == f"plain: 1 line(s) judged, 9 repeating rows of {E2}"
    assert recorded[f"a{fourth_export}"] == recorded[f"b{fourth_export}"]
    assert None not in {digest for _, digest in kept[fourth_export]}
