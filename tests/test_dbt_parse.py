"""A fresh warehouse's first `dbt build` starts from the project's parse instead of parsing in full
(transform/parse.py): dbt itself, given the rewritten parse state, reports nothing to parse; given
the project's state as it was, it parses in full because the profile changed."""

import datetime as dt
import json
import shutil
from pathlib import Path

import msgpack
import pytest
from dbt.cli.main import dbtRunner

from pod_pipeline.settings import DBT_PROJECT_DIR
from pod_pipeline.transform import parse
from pod_pipeline.transform.assets import dbt_failure


def _dbt_parse(target: Path, work_db: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`dbt parse` as the run's `dbt build` parses (the default settings' vars and environment,
    this working database); the parse-state events dbt reports."""
    wanted = parse.parse_settings()
    for name, value in {**wanted["env"], "POD_WORK_DB": str(work_db)}.items():
        monkeypatch.setenv(name, value)
    events: list[str] = []

    def record(event) -> None:
        name = event.info.name
        if name == "UnableToPartialParse":
            events.append(f"{name}: {event.data.reason}")
        elif name == "PartialParsingSkipParsing":  # nothing changed: no file parsed
            events.append(name)

    result = dbtRunner(callbacks=[record]).invoke([
        "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target), "--log-path", str(target), "--vars", json.dumps(wanted["vars"])])
    assert result.success, result.exception
    return events


def test_the_connection_checksum_is_reckoned_as_dbt_reckons_it() -> None:
    manifest = parse.ensure_dbt_manifest()
    assert manifest.exists()
    state = msgpack.unpackb((parse.TARGET_DIR / parse.PARTIAL_PARSE).read_bytes(), raw=False, strict_map_key=False)
    stored = state["state_check"]["profile_hash"]["checksum"]
    assert parse.connection_checksum(parse.PARSE_DB) == stored
    assert parse.connection_checksum(Path("/elsewhere") / parse.PARSE_DB.name) != stored


def test_a_fresh_warehouse_starts_from_the_projects_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parse.ensure_dbt_manifest()
    work_db = tmp_path / "warehouse" / parse.PARSE_DB.name
    target = tmp_path / "warehouse" / "dbt_target"
    assert parse.start_from_project_parse(target, work_db)
    assert _dbt_parse(target, work_db, monkeypatch) == ["PartialParsingSkipParsing"]
    # Once the warehouse has a parse of its own, it is left to dbt.
    before = (target / parse.PARTIAL_PARSE).read_bytes()
    assert not parse.start_from_project_parse(target, work_db)
    assert (target / parse.PARTIAL_PARSE).read_bytes() == before


def test_without_it_dbt_parses_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the project's parse state copied as it is (what dagster-dbt does) is refused."""
    parse.ensure_dbt_manifest()
    work_db = tmp_path / "warehouse" / parse.PARSE_DB.name
    target = tmp_path / "warehouse" / "dbt_target"
    target.mkdir(parents=True)
    shutil.copy(parse.TARGET_DIR / parse.PARTIAL_PARSE, target / parse.PARTIAL_PARSE)
    events = _dbt_parse(target, work_db, monkeypatch)
    assert "UnableToPartialParse: profile has changed" in events
    assert "PartialParsingSkipParsing" not in events


def test_a_working_database_of_another_name_is_left_to_dbt(tmp_path: Path) -> None:
    parse.ensure_dbt_manifest()
    # dbt names the database after the file: the project's parse would name the wrong one.
    assert not parse.start_from_project_parse(tmp_path / "dbt_target", tmp_path / "other.duckdb")
    assert not (tmp_path / "dbt_target" / parse.PARTIAL_PARSE).exists()


def _run_results(path: Path, generated_at: str, results: list[tuple[str, str, str | None]]) -> Path:
    """run_results.json as dbt 1.11 writes it (only the fields read here)."""
    path.write_text(json.dumps({
        "metadata": {"dbt_version": "1.11.16", "generated_at": generated_at},
        "results": [{"unique_id": uid, "status": status, "message": message} for uid, status, message in results],
    }))
    return path


def test_a_failed_build_is_told_in_dbts_words(tmp_path: Path) -> None:
    """The run's summary shows this line for a failed dbt step, not "the dbt CLI process failed"."""
    since = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
    full_disk = ('Runtime Error in model int_a (models/int_a.sql)\n  TransactionContext Error: Failed to commit: '
                 'Could not write file "/w/pod_work.duckdb.wal": File too large')
    path = _run_results(tmp_path / "run_results.json", "2026-12-05T09:00:10.5Z", [
        ("seed.pod.protocols", "success", "INSERT 2"),
        ("model.pod.int_a", "error", full_disk),
        ("test.pod.unique_participants_participant_id.cb0c12f898", "fail", "Got 3 results, configured to fail if != 0"),
        ("test.pod.not_null_x.1", "warn", "Got 1 result, configured to warn if != 0"),
        ("model.pod.int_b", "skipped", None),
    ])
    assert dbt_failure(path, since) == (
        "dbt build failed at 2 nodes: model int_a: TransactionContext Error: Failed to commit: Could not write "
        'file "/w/pod_work.duckdb.wal": File too large; test unique_participants_participant_id: Got 3 results, '
        "configured to fail if != 0")
    assert dbt_failure(path, since, shown=1).endswith("File too large; and 1 more")
    conversion = ("Runtime Error in model stg_a (models/stg_a.sql)\n"
                  "  Conversion Error: Could not convert string '943 476 5919' to INT32")
    assert dbt_failure(_run_results(tmp_path / "conversion.json", "2026-12-05T09:00:10Z",
                                    [("model.pod.stg_a", "error", conversion)]), since) == (
        "dbt build failed at 1 node: model stg_a: Conversion Error: Could not convert string "
        "'(10 digits withheld)' to INT32")
    # Results older than the build (dbt stopped before writing its own), none failed, or none at all.
    assert dbt_failure(path, since + dt.timedelta(minutes=1)) is None
    assert dbt_failure(_run_results(path, "2026-12-05T09:00:10Z", [("model.pod.int_a", "success", "OK")]),
                       since) is None
    assert dbt_failure(tmp_path / "missing.json", since) is None
