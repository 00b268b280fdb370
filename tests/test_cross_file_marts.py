"""Issue 11's scenario through the real job: rows delivered before their participant was in an
accepted register reach the marts once the register catches up, and leave them when the
participant is dropped from it."""

from pathlib import Path

import duckdb
import pytest
from landing_builder import batch, dictionary_rows, meeting, participant, redcap

from pod_pipeline.app.runner import execute
from pod_pipeline.ingest.batch_manifest import seal_batch
from pod_pipeline.ingest.rules import instrument_items

pytestmark = pytest.mark.slow

E1, E2, E3 = "20240401T060000Z", "20240501T060000Z", "20240601T060000Z"
WEMWBS = {i.field_name: "3" for i in instrument_items() if i.instrument == "wemwbs" and i.role == "item"}


def _marts(work_db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(work_db), read_only=True) as con:
        return {
            "meetings": con.execute("select participant_id, meeting_id from marts.network_meetings "
                                    "order by all").fetchall(),
            "wemwbs": con.execute("select participant_id, value from marts.outcome_scores where parameter = "
                                  "'wemwbs_total' and timepoint = 'baseline' order by all").fetchall(),
            "quarantined": con.execute("select file, line, reason from marts.quarantine where is_current_export "
                                       "and scope = 'row' order by all").fetchall(),
        }


def test_a_late_register_brings_rows_into_the_marts_and_a_dropped_participant_takes_them_out(
        pod_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landing = tmp_path / "landing"
    monkeypatch.setenv("POD_LANDING_DIR", str(landing))
    # Twenty more participants, so that dropping one later stays under the export-drift check's 5%
    # (their assessments are all missing: completeness may warn here, not block).
    monkeypatch.setenv("POD_COMPLETENESS_ERROR_BELOW", "0")
    others = [participant(f"KMPT-{n:04d}") for n in range(3, 23)]
    people = [participant("KMPT-0001", nhs_number="9434765919"), participant("KMPT-0002", arm="TAU"), *others]
    batch(landing, "kmpt", E1, register=[people[0], *others], dictionary=dictionary_rows())
    # Batch 2: the register (now with KMPT-0002) is rejected whole for a duplicated column, while
    # the meeting log and REDCap rows for KMPT-0002 arrive with it.
    second = batch(landing, "kmpt", E2, register=people,
                   meetings=[meeting("M1", "KMPT-0001"), meeting("M2", "KMPT-0002")],
                   redcap_rows=[redcap("KMPT-0001", visit_date="2024-03-02", **WEMWBS),
                                redcap("KMPT-0002", "baseline_arm_2", visit_date="2024-03-02", **WEMWBS)])
    lines = (second / "register.csv").read_text().splitlines()
    (second / "register.csv").write_text("\n".join([lines[0] + ",gender", *(f"{x},1" for x in lines[1:])]) + "\n")
    seal_batch(second)
    assert execute(quiet=True).success
    work_db = pod_env / "warehouse" / "pod_work.duckdb"
    before = _marts(work_db)
    assert before["meetings"] == [("KMPT-0001", "M1")]
    assert before["wemwbs"] == [("KMPT-0001", 42.0)]
    assert before["quarantined"] == [("network_meetings.csv", 3, "unknown_participant"),
                                     ("redcap_records.csv", 3, "unknown_participant")]

    # Batch 3 re-sends a good register and nothing else: the earlier meeting log and REDCap stand.
    batch(landing, "kmpt", E3, register=people)
    assert execute(quiet=True).success
    after = _marts(work_db)
    assert after["meetings"] == [("KMPT-0001", "M1"), ("KMPT-0002", "M2")]
    assert after["wemwbs"] == [("KMPT-0001", 42.0), ("KMPT-0002", 42.0)]
    assert after["quarantined"] == []

    # The reverse: KMPT-0001 is dropped from the register (recruited in error, say).
    batch(landing, "kmpt", "20240701T060000Z", register=people[1:])
    assert execute(quiet=True).success
    dropped = _marts(work_db)
    assert dropped["meetings"] == [("KMPT-0002", "M2")]
    assert dropped["wemwbs"] == [("KMPT-0002", 42.0)]
    assert dropped["quarantined"] == [("network_meetings.csv", 2, "unknown_participant"),
                                      ("redcap_records.csv", 2, "unknown_participant")]
