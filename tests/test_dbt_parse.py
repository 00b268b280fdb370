"""A fresh warehouse's first `dbt build` starts from the project's parse instead of parsing in full
(transform/parse.py): dbt itself, given the rewritten parse state, reports nothing to parse; given
the project's state as it was, it parses in full because the profile changed."""

import json
import shutil
from pathlib import Path

import msgpack
import pytest
from dbt.cli.main import dbtRunner

from pod_pipeline.settings import DBT_PROJECT_DIR
from pod_pipeline.transform import parse


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
