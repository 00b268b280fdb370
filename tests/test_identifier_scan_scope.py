"""The identifier scan reads only what the last build rebuilt (quality/identifier_scan.py): after
a build that rebuilt some participants' rows of a mart found clean after the build before, only
those rows; every row after anything else. What it finds is what a scan of every row finds."""

import duckdb
import pandas as pd
import pytest
from test_dbt_partitions import MANIFEST, _digests, settings, warehouse  # noqa: F401 (fixtures)

from pod_pipeline.quality import identifier_scan
from pod_pipeline.settings import Settings
from pod_pipeline.transform import partitions

VALID = "9434765919"  # passes the modulus-11 check


def _build(con: duckdb.DuckDBPyConnection, config: Settings, scores: dict[str, str]) -> partitions.BuildPlan:
    """A build as pod_dbt_models makes one: planned, begun, the mart's rows of the participants
    named rebuilt (all of them on a full build), finished."""
    build = partitions.plan(con, config, manifest=MANIFEST)
    partitions.begin(con, build)
    rebuilt = [p for p in scores if build.full or (p,) in con.execute(
        "select participant_id from audit.dbt_rebuilt_participants where model = 'scores'").fetchall()]
    con.execute("delete from marts.scores where participant_id in (select unnest($p))", {"p": rebuilt})
    for participant in rebuilt:
        con.execute("insert into marts.scores values ($p, $n)", {"p": participant, "n": scores[participant]})
    partitions.finish(con, build)
    return build


def _scan(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, identifier_scan.Scope]:
    """The check's scan of marts.scores: its scope, its profile, what it keeps for the next."""
    births = identifier_scan.births_digest(con)
    scope = identifier_scan.scopes(con, ["scores"], births)["scores"]
    profile = identifier_scan.identifiers(con, "scores", scope)
    identifier_scan.record_clean(con, {"scores": profile}, births)
    return profile, scope


@pytest.fixture()
def marts(warehouse: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:  # noqa: F811
    warehouse.execute("create schema marts; create schema restricted")
    warehouse.execute("create table marts.scores (participant_id varchar, note varchar)")
    warehouse.execute("create table restricted.register_history (date_of_birth varchar)")
    warehouse.execute("insert into restricted.register_history values ('1970-01-02')")
    warehouse.execute("insert into raw.register values ('K1', 'kmpt'), ('K2', 'kmpt'), ('K3', 'kmpt')")
    partitions.plan(warehouse, Settings.from_env({}), manifest=MANIFEST)  # makes the audit tables
    return warehouse


def test_after_a_clean_scan_only_the_rebuilt_rows_are_read(marts, settings) -> None:  # noqa: F811
    answers = {"K1": "a", "K2": "b", "K3": "c"}
    _digests(marts, "redcap_records.csv", "kmpt", answers)
    _build(marts, settings, {"K1": "fine", "K2": "fine", "K3": "fine"})
    profile, scope = _scan(marts)
    assert not scope.rebuilt_only and profile.attrs["rows_scanned"] == 3
    # K2's answers change: the build rebuilds K2's row, and the scan reads that row alone.
    _digests(marts, "redcap_records.csv", "kmpt", answers | {"K2": "b2"})
    _build(marts, settings, {"K1": "fine", "K2": f"nhs {VALID}", "K3": "fine"})
    profile, scope = _scan(marts)
    assert scope.rebuilt_only and profile.attrs["rows_scanned"] == 1
    assert profile.set_index("column_name").loc["note", "nhs_numbers"] == 1  # found, as a whole scan finds it
    # A scan that found something is not a clean one: the next scan reads every row again.
    _digests(marts, "redcap_records.csv", "kmpt", answers | {"K2": "b3"})
    _build(marts, settings, {"K1": "fine", "K2": "fine", "K3": "fine"})
    profile, scope = _scan(marts)
    assert (scope.rebuilt_only, profile.attrs["rows_scanned"], scope.why) == (
        False, 3, "every row: no clean scan on record")
    assert not profile["nhs_numbers"].any()
    # Clean again: a build that rebuilt nobody's row reads no row.
    _build(marts, settings, {})
    profile, scope = _scan(marts)
    assert scope.rebuilt_only and profile.attrs["rows_scanned"] == 0


@pytest.mark.parametrize("change", ["dates of birth", "a build not scanned", "a full build", "a build begun"])
def test_anything_else_reads_every_row(marts, settings, change: str) -> None:  # noqa: F811
    _digests(marts, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b", "K3": "c"})
    _build(marts, settings, {"K1": "fine", "K2": "fine", "K3": "fine"})
    _scan(marts)
    # An unchanged row that holds a date someone was born on: only a scan of every row sees it.
    marts.execute("update marts.scores set note = 'seen 12/11/1980' where participant_id = 'K1'")
    _digests(marts, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b2", "K3": "c"})
    expected = {"dates of birth": "every row: the register's dates of birth changed",
                "a build not scanned": "every row: the build before the last was not found clean",
                "a full build": "every row: the last build rebuilt the whole mart",
                "a build begun": "every row: no finished dbt build on record"}[change]
    if change == "dates of birth":
        marts.execute("insert into restricted.register_history values ('1980-11-12')")
        _build(marts, settings, {"K2": "fine"})
    elif change == "a build not scanned":
        _build(marts, settings, {"K2": "fine"})
        _digests(marts, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b3", "K3": "c"})
        _build(marts, settings, {"K2": "fine"})
    elif change == "a full build":
        marts.execute("update audit.dbt_build_state set fingerprint = 'another project'")
        _build(marts, settings, {"K1": "seen 12/11/1980", "K2": "fine", "K3": "fine"})
    else:  # a build that started and did not finish
        partitions.begin(marts, partitions.plan(marts, settings, manifest=MANIFEST))
    profile, scope = _scan(marts)
    assert (scope.rebuilt_only, scope.why, profile.attrs["rows_scanned"]) == (False, expected, 3)
    assert profile.set_index("column_name").loc["note", "dates_of_birth"] == (change == "dates of birth")


def test_a_scan_run_again_after_the_same_build_reads_the_rebuilt_rows(marts, settings) -> None:  # noqa: F811
    _digests(marts, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b", "K3": "c"})
    _build(marts, settings, {"K1": "fine", "K2": "fine", "K3": "fine"})
    _scan(marts)
    _digests(marts, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b2", "K3": "c"})
    _build(marts, settings, {"K2": "fine"})
    for _ in range(2):  # the checks run again without a build (a run of the checks alone)
        profile, scope = _scan(marts)
        assert scope.rebuilt_only and profile.attrs["rows_scanned"] == 1
