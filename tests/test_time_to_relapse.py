"""Time to relapse end to end: acute-care episodes ingested from a small landing zone, then the mart
built by dbt, with values worked out by hand (national-trial contract sections 3 and 4).

Site kmpt delivers its register and acute_care.csv on 2026-06-01, then on 2026-09-01 a new
acute_care.csv alone (closing an open episode, adding one): the data cut is 2026-09-01. Site slam
never delivers acute_care.csv: no data cut, its participants are not followed.
"""

import duckdb
import pytest
from landing_builder import batch, episode, ingest, participant
from test_dbt_build import dbt, rows

from pod_pipeline.ingest.checks import conservation_failures

NHS_A, NHS_B, NHS_UNKNOWN = "9434765919", "4010232137", "9990000018"
FIRST, SECOND = "20260601T060000Z", "20260901T060000Z"


@pytest.fixture(scope="module")
def relapse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("relapse")
    root, db = tmp / "landing", tmp / "pod_work.duckdb"
    register = [
        participant("KMPT-0001", nhs_number=NHS_A, consent_date="2026-01-10"),
        participant("KMPT-0002", nhs_number=NHS_B, arm="TAU", consent_date="2026-02-01",
                    withdrawal_date="2026-04-01", withdrawal_type="died"),
        participant("KMPT-0003", consent_date="2026-02-01"),
    ]
    batch(root, "kmpt", FIRST, register=register, acute_care=[
        episode("A1", NHS_A, "02/01/2026", "12/01/2026"),
        episode("A2", NHS_A, "2026-03-01", "", "crisis_team"),
        episode("A3", NHS_B, "2026-02-10", "2026-02-20", detained="1"),
        episode("A4", NHS_UNKNOWN, "2026-02-10", "2026-02-20"),
    ])
    batch(root, "kmpt", SECOND, acute_care=[
        episode("A1", NHS_A, "02/01/2026", "12/01/2026"),
        episode("A2", NHS_A, "2026-03-01", "2026-03-20", "crisis_team"),
        episode("A3", NHS_B, "2026-02-10", "2026-02-20", detained="1"),
        episode("A5", NHS_A, "2026-03-25", "2026-04-04"),
    ])
    batch(root, "slam", FIRST, register=[participant("SLAM-0001", nhs_number=NHS_A)])
    with ingest(root, db) as con:
        assert conservation_failures(con, "acute_care.csv") == []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(db))
        result = dbt(tmp, "build", "--select", "+time_to_relapse", "--indirect-selection", "cautious",
                     reference_date="2026-11-20")
    assert result.success, result.exception
    with duckdb.connect(str(db)) as con:
        marts = {c for (c,) in con.execute("select column_name from information_schema.columns "
                                           "where table_schema = 'marts'").fetchall()}
        assert not marts & {"episode_id", "nhs_number"}
        return {r["participant_id"]: r for r in rows(con, "select * from marts.time_to_relapse")}


def test_a_relapse_after_the_index_spell_with_a_corrected_episode(relapse: dict[str, dict]) -> None:
    first = relapse["KMPT-0001"]
    assert first["is_followed_in_epr"] is True
    # A1 (DD/MM/YYYY) contains consent: the index spell. A2, open in the first export and closed
    # on 20 March by the second, merges with A5 (5 days later): the relapse spell starts 1 March
    # with a crisis team episode, 50 days after consent, within follow-up (data cut 2026-09-01).
    assert [str(first[c]) for c in ("index_spell_start", "index_spell_end", "relapse_date", "followup_end_date")] == [
        "2026-01-02", "2026-01-12", "2026-03-01", "2026-09-01"]
    assert (first["relapse_type"], first["time_days"], first["is_relapse"], first["censor_reason"]) == (
        "crisis_team", 50, 1, "relapse")
    # A2 is a crisis team episode after consent outside the index spell.
    assert first["has_crisis_rereferral"] is True
    # 10-11 January (from consent; the discharge day not counted) and 25 March - 3 April.
    assert (first["psychiatric_inpatient_days"], str(first["epr_inpatient_cost"]), first["exposure_days"]) == (
        12, "6768.00", 234)


def test_death_ends_follow_up_after_a_relapse(relapse: dict[str, dict]) -> None:
    second = relapse["KMPT-0002"]
    assert (str(second["relapse_date"]), second["relapse_type"], second["time_days"], second["is_relapse"]) == (
        "2026-02-10", "inpatient", 9, 1)
    assert (str(second["followup_end_date"]), second["exposure_days"], second["psychiatric_inpatient_days"]) == (
        "2026-04-01", 59, 10)
    assert second["index_spell_start"] is None and second["has_crisis_rereferral"] is False


def test_no_nhs_number_or_no_data_cut_is_not_followed(relapse: dict[str, dict]) -> None:
    assert sorted(relapse) == ["KMPT-0001", "KMPT-0002", "KMPT-0003", "SLAM-0001"]
    for participant_id in ("KMPT-0003", "SLAM-0001"):
        row = relapse[participant_id]
        assert row["is_followed_in_epr"] is False
        assert [row[c] for c in ("followup_end_date", "censor_reason", "time_days", "is_relapse",
                                 "exposure_days", "psychiatric_inpatient_days")] == [None] * 6
