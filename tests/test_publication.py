"""Publication: analysts' readers are never disturbed, and a failed run publishes nothing."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pod_pipeline.delivery import publication
from pod_pipeline.delivery.assets import PUBLISHED_KEY, published_marts
from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.fingerprint import current_publication, fingerprint, last_published_fingerprint
from pod_pipeline.resources import Warehouse, connect
from pod_pipeline.settings import Settings

PARTICIPANTS = dg.AssetKey(["marts", "participants"])

# Holds the published file open read-only, reads it in a loop until told to stop, then reopens it.
READER = """
import json, sys, time, duckdb
path, stop = sys.argv[1], sys.argv[2]
con = duckdb.connect(path, read_only=True)
count = lambda c: c.execute("select count(*) from marts.participants").fetchall()[0][0]
print(json.dumps({"ready": count(con)}), flush=True)
seen, errors, reads = set(), [], 0
while not __import__("os").path.exists(stop):
    try:
        seen.add(count(con)); reads += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.005)
con.close()
after = duckdb.connect(path, read_only=True)
report = {"seen": sorted(seen), "errors": errors, "reads": reads, "after": count(after)}
print(json.dumps(report), flush=True)
"""


def build_marts(settings: Settings, participants: int) -> None:
    """A small marts schema in the working database, as dbt and the analysis would leave it."""
    with connect(settings) as con:
        ledger.ensure(con)
        con.execute("create schema if not exists marts")
        con.execute(
            "create or replace table marts.participants as "
            "select 'KMPT-' || lpad(i::varchar, 4, '0') "
            "as participant_id, if(i % 2 = 0, 'POD', 'TAU') as arm, i * 1.5 as score "
            f"from range({participants}) t(i)"
        )
        con.execute(
            "create or replace table marts.participant_flow as select arm, 'consented' as stage, "
            "count(*) as n from marts.participants group by arm"
        )
        con.execute(
            "create or replace view marts.arms as select distinct arm from marts.participants"
        )


def publish() -> dg.ExecuteInProcessResult:
    return dg.materialize([published_marts], resources={"warehouse": Warehouse()})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_digests(settings: Settings) -> dict[str, str]:
    folder = settings.warehouse_dir / "marts"
    return {p.name: digest(p) for p in sorted(folder.iterdir())} | {"->": os.readlink(folder)}


@pytest.fixture
def settings(pod_env: Path) -> Settings:
    return Settings.from_env()


def test_publication_copies_every_mart_and_records_itself(settings: Settings) -> None:
    build_marts(settings, 7)
    result = publish()
    assert result.success
    metadata = result.asset_materializations_for_node("delivery__published_marts")[0].metadata
    assert metadata["tables"].value == 3 and metadata["rows"].value == 7 + 2 + 2
    assert metadata["path"].value == str(settings.published_db)
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        assert publication.mart_tables(con) == ["arms", "participant_flow", "participants"]
        assert con.execute("select count(*), sum(score) from marts.participants").fetchall() == [
            (7, 31.5)
        ]
        assert con.execute(
            "select table_type from information_schema.tables where table_name = 'arms'"
        ).fetchall() == [("BASE TABLE",)]
    parquet = settings.warehouse_dir / "marts"
    assert parquet.is_symlink() and sorted(p.name for p in parquet.iterdir()) == [
        publication.RELEASE_DIGESTS,  # hidden: what each file was written from
        "arms.parquet",
        "participant_flow.parquet",
        "participants.parquet",
    ]
    assert duckdb.connect().sql(
        f"select count(*) from '{parquet / 'participants.parquet'}'"
    ).fetchall() == [(7,)]
    assert not list(settings.warehouse_dir.glob(".*")), "staged files were left behind"
    with connect(settings) as con:
        # So that a later run with nothing new skips everything.
        assert last_published_fingerprint(con) == fingerprint(con, settings)


def _published_rows(settings: Settings, table: str) -> list[tuple]:
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        return sorted(con.execute(f"select * from marts.{table}").fetchall(), key=repr)


def test_a_publication_replaces_only_the_rows_of_the_sites_that_differ(settings: Settings) -> None:
    """With a register to name each participant's site, a publication copies the last one and
    replaces the rows of the sites that differ, and the published marts are the working ones."""
    with connect(settings) as con:
        ledger.ensure(con)
        con.execute("create schema raw; create schema marts")
        con.execute("create table raw.register as select printf('%s-%04d', upper(site), i) as study_id, site "
                    "from range(4) t(i), (values ('kmpt'), ('sabp'), ('oxf'), ('cwp')) s(site)")
        con.execute("create table marts.outcome_scores as select study_id as participant_id, "
                    "t.timepoint, length(study_id) * 1.5 as value from raw.register, "
                    "(values ('baseline'), ('3_months')) t(timepoint)")
        con.execute("create table marts.outcome_summary as select timepoint, avg(value) as mean "
                    "from marts.outcome_scores group by timepoint")
        con.execute("create table marts.participants as select study_id as participant_id, site, "
                    "cast(null as date) as withdrawal_date, cast(null as varchar) as withdrawal_type "
                    "from raw.register")
        first = publication.publish(con, settings.published_db, "run-one")
        assert first.by_site == {}  # nothing published before: every mart written whole
        # A new batch at kmpt: a changed value, a participant gone, one in no register.
        con.execute("update marts.outcome_scores set value = 0 where participant_id = 'KMPT-0001'")
        con.execute("delete from marts.outcome_scores where participant_id = 'KMPT-0002'")
        con.execute("insert into marts.outcome_scores values ('XXXX-0001', 'baseline', 1.0)")
        second = publication.publish(con, settings.published_db, "run-two")
        # The summary has no participants; the participants mart did not change.
        assert second.by_site == {"outcome_scores": ["", "kmpt"], "participants": []}
        working = sorted(con.execute("select * from marts.outcome_scores").fetchall(), key=repr)
    assert _published_rows(settings, "outcome_scores") == working
    # A published file that is not the last build's (here: sabp's rows changed in it by hand)
    # has those sites replaced too; more than half the sites differing rewrites the mart whole.
    with duckdb.connect(str(settings.published_db)) as published:
        published.execute("update marts.outcome_scores set value = -1 where participant_id like 'SABP-%'")
    with connect(settings) as con:
        assert publication.publish(con, settings.published_db, "run-three").by_site["outcome_scores"] == ["sabp"]
        con.execute("update marts.outcome_scores set value = value + 1 where participant_id not like 'KMPT-%'")
        assert "outcome_scores" not in publication.publish(con, settings.published_db, "run-four").by_site
        working = sorted(con.execute("select * from marts.outcome_scores").fetchall(), key=repr)
    assert _published_rows(settings, "outcome_scores") == working
    # A participant who withdraws, or leaves the marts: the database is written afresh, so no
    # deleted row of theirs can survive in a copied file's free blocks.
    for number, change in enumerate(("update marts.participants set withdrawal_type = 'follow_up', "
                   "withdrawal_date = date '2026-06-01' where participant_id = 'OXF-0001'",
                   "delete from marts.participants where participant_id = 'CWP-0002'")):
        with connect(settings) as con:
            con.execute(change)
            assert publication.publish(con, settings.published_db, f"fresh-{number}").by_site == {}
            assert publication.publish(con, settings.published_db, f"again-{number}").by_site["participants"] == []
    with duckdb.connect(str(settings.published_db), read_only=True) as con:  # a copy keeps the v1.0 format
        assert con.execute("select tags['storage_version'] from duckdb_databases() "
                           "where database_name = current_database()").fetchall() == [("v1.0.0+",)]


def test_a_mart_that_names_its_sites_is_published_by_them(settings: Settings) -> None:
    """A mart of participants with a site column is compared and replaced by that column, not by
    the register's site: the two agree for every mart dbt builds, and the column needs no join."""
    with connect(settings) as con:
        ledger.ensure(con)
        con.execute("create schema raw; create schema marts")
        con.execute("create table raw.register as select printf('%s-%04d', upper(site), i) as study_id, site "
                    "from range(3) t(i), (values ('kmpt'), ('sabp'), ('oxf'), ('cwp')) s(site)")
        con.execute("create table marts.participant_timepoints as select study_id as participant_id, "
                    "site, length(study_id) * 1.5 as value from raw.register")
        con.execute("create table marts.participants as select study_id as participant_id, site, "
                    "cast(null as date) as withdrawal_date, cast(null as varchar) as withdrawal_type "
                    "from raw.register")
        publication.publish(con, settings.published_db, "run-one")
        # Moved to oxf in the register only: the mart's rows, which still say kmpt, are unchanged.
        con.execute("update raw.register set site = 'oxf' where study_id = 'KMPT-0001'")
        assert publication.publish(con, settings.published_db, "run-two").by_site == {
            "participant_timepoints": [], "participants": []}
        # A changed value, and a row that names no site ('').
        con.execute("update marts.participant_timepoints set value = 0 where participant_id = 'KMPT-0001'")
        con.execute("insert into marts.participant_timepoints values ('XXXX-0001', null, 1.0)")
        assert publication.publish(con, settings.published_db, "run-three").by_site == {
            "participant_timepoints": ["", "kmpt"], "participants": []}
        working = sorted(con.execute("select * from marts.participant_timepoints").fetchall(), key=repr)
    assert _published_rows(settings, "participant_timepoints") == working


def test_a_publication_trusts_the_recorded_digests_of_the_file_it_wrote_and_checks_what_it_replaced(
        settings: Settings) -> None:
    """While pod_marts.duckdb is the file the last publication wrote, the next one compares the
    working rows with that publication's recorded digests by site instead of digesting the copy;
    a site replaced on a record's word is checked, and a mart that fails the check is written whole."""
    with connect(settings) as con:
        ledger.ensure(con)
        con.execute("create schema raw; create schema marts")
        con.execute("create table raw.register as select printf('%s-%04d', upper(site), i) as study_id, site "
                    "from range(3) t(i), (values ('kmpt'), ('sabp'), ('oxf'), ('cwp')) s(site)")
        con.execute("create table marts.outcome_scores as select study_id as participant_id, "
                    "length(study_id) * 1.5 as value from raw.register")
        con.execute("create table marts.participants as select study_id as participant_id, site, "
                    "cast(null as date) as withdrawal_date, cast(null as varchar) as withdrawal_type "
                    "from raw.register")
        first = publication.publish(con, settings.published_db, "run-one")
    digests_file = first.release / publication.RELEASE_DIGESTS
    written = json.loads(digests_file.read_text())
    stat = settings.published_db.stat()
    assert written["database"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    assert sorted(written["tables"]["outcome_scores"]["sites"]) == ["cwp", "kmpt", "oxf", "sabp"]

    def record(sites: dict[str, list]) -> None:
        # The release's file, edited as a stale record would read (the database is untouched).
        written["tables"]["outcome_scores"]["sites"] = sites
        os.chmod(digests_file, 0o644)
        digests_file.write_text(json.dumps(written))

    # Nothing changed, but the record says kmpt's published rows differ: they are replaced, so
    # the record was read and the copy not digested; the result is checked and holds the working rows.
    record({**written["tables"]["outcome_scores"]["sites"], "kmpt": [3, "0"]})
    with connect(settings) as con:
        second = publication.publish(con, settings.published_db, "run-two")
        assert second.by_site == {"outcome_scores": ["kmpt"], "participants": []}
        # kmpt's rows change; a record that misses it (it names the new rows) and wrongly names
        # sabp: sabp is replaced, the check finds kmpt's stale rows, and the mart is written whole.
        con.execute("update marts.outcome_scores set value = 0 where participant_id = 'KMPT-0001'")
        now = {site: [n, str(digest)] for site, (n, digest) in publication._by_site(
            con, "marts.outcome_scores", publication._columns(con, "outcome_scores")).items()}
        written = json.loads((second.release / publication.RELEASE_DIGESTS).read_text())
        digests_file = second.release / publication.RELEASE_DIGESTS
        record({**now, "sabp": [3, "0"]})
        third = publication.publish(con, settings.published_db, "run-three")
        assert "outcome_scores" not in third.by_site
        working = sorted(con.execute("select * from marts.outcome_scores").fetchall(), key=repr)
    assert _published_rows(settings, "outcome_scores") == working


def _parquet_rows(release: Path, table: str) -> list[tuple]:
    return sorted(duckdb.connect().execute(f"select * from read_parquet('{release / table}.parquet')").fetchall(),
                  key=repr)


def test_a_release_links_the_parquet_files_of_unchanged_marts_and_writes_the_rest(settings: Settings) -> None:
    """A mart whose rows and columns are those the current release's file was written from keeps
    that file (a hard link, not a copy); a changed mart, or a file edited since it was written,
    is written again, and every file holds the working rows."""
    build_marts(settings, 6)
    with connect(settings) as con:
        first = publication.publish(con, settings.published_db, "run-one")
        assert first.parquet_kept == []  # no release before it
        second = publication.publish(con, settings.published_db, "run-two")
        assert second.parquet_kept == ["arms", "participant_flow", "participants"]
        for table in second.parquet_kept:
            assert (second.release / f"{table}.parquet").stat().st_ino == \
                (first.release / f"{table}.parquet").stat().st_ino
        # Same count, one value changed: the digest tells it apart. A new column: written again.
        con.execute("update marts.participants set score = -1 where participant_id = 'KMPT-0003'")
        con.execute("create or replace table marts.participant_flow as select *, 1 as version "
                    "from marts.participant_flow")
        third = publication.publish(con, settings.published_db, "run-three")
        assert third.parquet_kept == ["arms"]
        for table in ("participants", "participant_flow"):
            assert _parquet_rows(third.release, table) == sorted(
                con.execute(f"select * from marts.{table}").fetchall(), key=repr)
    # A file of the current release changed behind the pipeline's back is not linked again.
    edited = third.release / "participants.parquet"
    duckdb.connect().execute(f"copy (select * from read_parquet('{edited}') limit 1) to '{edited}' (format parquet)")
    with connect(settings) as con:
        fourth = publication.publish(con, settings.published_db, "run-four")
        assert fourth.parquet_kept == ["arms", "participant_flow"]
        assert _parquet_rows(fourth.release, "participants") == sorted(
            con.execute("select * from marts.participants").fetchall(), key=repr)
    recorded = json.loads((fourth.release / publication.RELEASE_DIGESTS).read_text())["tables"]
    assert sorted(recorded) == ["arms", "participant_flow", "participants"]
    assert recorded["participants"]["rows"] == 6 and recorded["participants"]["columns"][0] == [
        "participant_id", "VARCHAR"]


@pytest.mark.parametrize("name, value", [
    ("POD_REFERENCE_DATE", "2026-12-01"), ("POD_VALUE_SET", "england_2018"), ("POD_PRICE_YEAR", "2023/24"),
    ("POD_SITE_PROTOCOLS", "kmpt=national_trial"), ("POD_RELAPSE_MERGE_DAYS", "3"),
    ("POD_BOOTSTRAP_REPLICATES", "1000"), ("POD_BOOTSTRAP_SEED", "1"), ("POD_SUPPRESS_COUNTS_BELOW", "5"),
    ("POD_COMPLETENESS_WARN_BELOW", "0.9"), ("POD_COMPLETENESS_ERROR_BELOW", "0.6"),
    ("POD_COMPLETENESS_MIN_DUE", "3"),
])
def test_every_setting_a_publication_depends_on_is_in_its_fingerprint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # What the marts are built with, and the thresholds that decide whether a run may publish:
    # with one changed, neither `pod run` nor `pod deliver` may take the last publication as current.
    build_marts(settings, 3)
    with connect(settings) as con:
        before = fingerprint(con, settings)
        monkeypatch.setenv(name, value)
        changed = Settings.from_env()
        assert changed != settings
        assert fingerprint(con, changed) != before


def test_a_publication_is_current_only_while_its_file_is_there(
    pod_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "landing").mkdir()
    monkeypatch.setenv("POD_LANDING_DIR", str(tmp_path / "landing"))  # nothing landed
    settings = Settings.from_env()
    build_marts(settings, 4)
    result = publish()
    assert result.success
    with connect(settings) as con:
        assert current_publication(con, settings)[0] == result.run_id
    settings.published_db.unlink()  # removed by hand: `pod run` and `pod deliver` must rebuild
    with connect(settings) as con:
        assert current_publication(con, settings) is None


def test_reader_holding_the_published_file_is_not_disturbed(
    settings: Settings, tmp_path: Path
) -> None:
    build_marts(settings, 5)
    assert publish().success
    build_marts(settings, 9)
    stop = tmp_path / "stop-reading"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(settings.published_db), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(reader.stdout.readline()) == {"ready": 5}
        started = time.monotonic()
        assert publish().success  # neither blocked nor failed by the open reader
        seconds = time.monotonic() - started
        stop.touch()
        report = json.loads(reader.stdout.readline())
    finally:
        reader.kill() if reader.poll() is None else None
        reader.wait()
    assert report["errors"] == []
    assert report["reads"] > 10, "the reader should have been reading throughout the publication"
    assert report["seen"] == [5], "the open connection must keep seeing the old, complete data"
    assert report["after"] == 9, "reopening must show the new publication"
    assert seconds < 30


def test_failed_blocking_check_leaves_the_last_publication_byte_identical(
    settings: Settings,
) -> None:
    build_marts(settings, 4)
    assert publish().success
    before = digest(settings.published_db), release_digests(settings)
    with connect(settings) as con:
        publications = con.execute("select count(*) from audit.publications").fetchall()[0][0]

    @dg.asset(
        key=PARTICIPANTS,
        check_specs=[dg.AssetCheckSpec("no_missing_arm", asset=PARTICIPANTS, blocking=True)],
    )
    def participants(warehouse: Warehouse):
        with warehouse.connect() as con:
            con.execute("insert into marts.participants values ('KMPT-9999', null, 0)")
            missing = con.execute(
                "select count(*) from marts.participants where arm is null"
            ).fetchall()[0][0]
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="no_missing_arm", passed=missing == 0)

    result = dg.materialize(
        [participants, published_marts], resources={"warehouse": Warehouse()}, raise_on_error=False
    )
    assert not result.success
    assert PUBLISHED_KEY not in {
        event.asset_key for event in result.get_asset_materialization_events()
    }
    assert "delivery__published_marts" not in {
        event.step_key for event in result.all_events if event.event_type_value == "STEP_START"
    }
    assert (digest(settings.published_db), release_digests(settings)) == before
    with connect(settings) as con:
        assert (
            con.execute("select count(*) from audit.publications").fetchall()[0][0] == publications
        )
        assert (
            con.execute("select count(*) from marts.participants").fetchall()[0][0] == 5
        )  # built, not published


def test_nothing_to_publish_leaves_no_file(settings: Settings) -> None:
    with connect(settings) as con:
        con.execute("create schema marts")
    with (
        pytest.raises(publication.PublicationError, match="no tables in schema marts"),
        connect(settings) as con,
    ):
        publication.publish(con, settings.published_db, "run-1")
    assert sorted(p.name for p in settings.warehouse_dir.iterdir()) == ["pod_work.duckdb"]


def test_only_the_newest_releases_are_kept_and_a_plain_folder_is_adopted(
    settings: Settings,
) -> None:
    build_marts(settings, 3)
    (settings.warehouse_dir / "marts").mkdir()
    (settings.warehouse_dir / "marts" / "old.parquet").write_bytes(b"from before releases")
    names = []
    for run in range(5):
        with connect(settings) as con:
            names.append(
                publication.publish(con, settings.published_db, f"run{run}xxxxxxx").release.name
            )
    releases = sorted(p.name for p in (settings.warehouse_dir / publication.RELEASES).iterdir())
    assert releases == names[-publication.KEEP_RELEASES :]
    assert os.readlink(settings.warehouse_dir / "marts") == f"{publication.RELEASES}/{names[-1]}"


def test_analysts_duckdb_shell_opens_the_published_file_read_only(settings: Settings) -> None:
    """The contract's `duckdb -readonly pod_marts.duckdb`, with the DuckDB 1.x shell from the venv."""
    build_marts(settings, 7)
    assert publish().success
    shell = Path(sys.executable).with_name("duckdb")
    result = subprocess.run([str(shell), "-readonly", str(settings.published_db), "-csv", "-noheader", "-c",
                             "select count(*) from marts.participants"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"


def test_the_parquet_files_are_written_while_the_staged_database_takes_the_next_mart(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged copy of the last mart waits until the first mart's Parquet file has been started:
    written one after the other (the files only once the database was done), this would wait in
    vain. The release is then as a publication written in turn would leave it."""
    build_marts(settings, 6)
    started, threads = threading.Event(), []
    file_of, write_whole = publication._ParquetRelease._file, publication._write_whole

    def file(release, table, digests):
        threads.append(threading.current_thread().name)
        started.set()
        return file_of(release, table, digests)

    def whole(con, table, columns, of_sites):
        if table == "participants":  # the last of arms, participant_flow, participants
            assert started.wait(timeout=60), "no Parquet file was started before the last mart's copy"
        return write_whole(con, table, columns, of_sites)

    monkeypatch.setattr(publication._ParquetRelease, "_file", file)
    monkeypatch.setattr(publication, "_write_whole", whole)
    with connect(settings) as con:
        done = publication.publish(con, settings.published_db, "run-one")
        assert len(threads) == 3 and all(name.startswith("pod-parquet") for name in threads)
        for table in ("arms", "participant_flow", "participants"):
            assert _parquet_rows(done.release, table) == sorted(
                con.execute(f"select * from marts.{table}").fetchall(), key=repr)
    recorded = json.loads((done.release / publication.RELEASE_DIGESTS).read_text())
    assert sorted(recorded["tables"]) == ["arms", "participant_flow", "participants"]
    assert recorded["database"]["size"] == settings.published_db.stat().st_size


@pytest.mark.parametrize("failing", ["parquet", "database"])
def test_a_publication_failing_on_either_side_leaves_the_last_one_as_it_was(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A Parquet file that cannot be written, or a staged database that cannot be, fails the
    publication with its own error while the other side is at work; the last publication stays
    byte for byte, and nothing staged is left behind."""
    build_marts(settings, 6)
    with connect(settings) as con:
        publication.publish(con, settings.published_db, "run-one")
        con.execute("update marts.participants set score = -1 where participant_id = 'KMPT-0003'")
    before = release_digests(settings), digest(settings.published_db)

    def no_space(*args: object) -> None:
        raise OSError(28, f"No space left on device ({failing})")

    write_whole = publication._write_whole

    def whole(con, table, columns, of_sites):
        if table == "participants":  # the last mart: the other two's files are on their way
            no_space()
        return write_whole(con, table, columns, of_sites)

    if failing == "parquet":
        monkeypatch.setattr(publication, "_link_unchanged", no_space)
    else:
        monkeypatch.setattr(publication, "_write_whole", whole)
    with pytest.raises(OSError, match=f"No space left on device \\({failing}\\)"), connect(settings) as con:
        publication.publish(con, settings.published_db, "run-two")
    assert (release_digests(settings), digest(settings.published_db)) == before
    warehouse = settings.warehouse_dir
    assert not list(warehouse.glob(".pod_marts.staged-*"))
    assert [p.name for p in (warehouse / publication.RELEASES).iterdir() if p.name.startswith(".")] == []
