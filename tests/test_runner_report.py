"""What `pod run` and `pod deliver` print: a failed run says so plainly; impossible settings stop it."""

import contextlib
import datetime as dt
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import scenario

from pod_pipeline.app import cli
from pod_pipeline.app.runner import RunLog, RunSummary, report
from pod_pipeline.delivery import deliveries
from pod_pipeline.ingest.fingerprint import STATE_DDL
from pod_pipeline.settings import SAMPLE_LANDING_DIR, Settings

RUN_ID = "f00dfeed-0000-4000-8000-000000000001"
EARLIER_RUN = "abcdef12-0000-4000-8000-000000000002"
SKIPPED = [f"analysis__step_{i}" for i in range(44)]


def failed(run_id: str = RUN_ID) -> RunSummary:
    return RunSummary(False, run_id, 11.0, skipped_steps=SKIPPED, failed_steps=["ingest__landing_batches"],
                      errors=["ingest__landing_batches: [Errno 2] No such file or directory: '/x/y'"])


def publish(settings: Settings, published_at: str | None, run_id: str = EARLIER_RUN) -> None:
    """A published file with one mart, and (with published_at) its row in audit.publications."""
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.published_db)) as con:
        con.execute("create schema marts; create table marts.participants as select 1 as participant_id")
    if published_at is None:
        return
    with duckdb.connect(str(settings.work_db)) as con:
        con.execute(STATE_DDL)
        con.execute("insert into audit.publications values (?, ?, 'fp', 'head', date '2026-11-25')",
                    [published_at, run_id])
        con.execute("create schema raw; create table raw.quarantine as select 'malformed_row' as reason, "
                    "'row' as scope, true as is_current_export")
        con.execute("create table raw.register as select 'all_data' as withdrawal_type")


def test_a_failed_run_with_nothing_published_says_so(pod_env: Path) -> None:
    text = report(Settings.from_env(), failed(), None)
    assert "FAILED" in text.splitlines()[0]
    assert "Failed steps:\n  ingest__landing_batches: [Errno 2] No such file or directory: '/x/y'" in text
    assert "\n44 downstream steps skipped\n" in text
    assert "analysis__step_" not in text
    assert "This run published nothing, and nothing has been published yet." in text
    assert "Published marts" not in text and "Marts (working database)" not in text
    assert "Checks:" not in text  # none ran


def test_a_failed_run_names_the_unchanged_publication_and_when_it_was_made(pod_env: Path) -> None:
    settings = Settings.from_env()
    publish(settings, "2026-11-20 06:00:07")
    text = report(settings, failed(), None)
    assert (f"This run published nothing: the publication is unchanged, still the one made 2026-11-20 06:00 "
            f"by run {EARLIER_RUN}: {settings.published_db}") in text
    assert "Published marts" not in text and "marts.participants" not in text
    assert "Quarantine" not in text and "Erased" not in text
    assert "\n44 downstream steps skipped\n" in text and "analysis__step_" not in text


def test_without_audit_the_publication_time_is_the_files(pod_env: Path) -> None:
    settings = Settings.from_env()
    publish(settings, None)
    stamp = dt.datetime(2026, 11, 18, 9, 30).timestamp()
    os.utime(settings.published_db, (stamp, stamp))
    text = report(settings, failed(), None)
    assert ("the publication is unchanged, still the one made 2026-11-18 09:30: "
            f"{settings.published_db}") in text


def test_a_failed_run_that_published_shows_its_publication(pod_env: Path) -> None:
    """The delivery failed, say, after this run published: the marts are this run's."""
    settings = Settings.from_env()
    publish(settings, "2026-11-25 06:00:00", run_id=RUN_ID)
    text = report(settings, failed(), None)
    assert f"Published marts: {settings.published_db}" in text and "Quarantine" in text
    assert "unchanged" not in text


def test_a_run_log_on_a_full_disk_stops_short_and_the_summary_says_so(pod_env: Path) -> None:
    """/dev/full fails every write as a full disk does (ENOSPC): the run goes on, the log stops."""
    log = RunLog(open("/dev/full", "w", encoding="utf-8"))  # noqa: SIM115 (closed by RunLog.close)
    with contextlib.redirect_stdout(log):
        print("x" * 100_000)  # more than the file's buffer: the write itself reaches the disk
        print("the rest of the run")
    log.flush()
    log.close()
    assert log.error == os.strerror(errno.ENOSPC) and log.handle.closed
    summary = failed()
    summary.log_path, summary.log_error = Path("/w/logs/run-1.log"), log.error
    text = report(Settings.from_env(), summary, None)
    assert ("The log of this run stops short: writing /w/logs/run-1.log failed (No space left on device); "
            "every step's events are in the run history") in text
    assert "Full log of this run" not in text


def test_a_successful_run_reports_as_before(pod_env: Path) -> None:
    settings = Settings.from_env()
    publish(settings, "2026-11-25 06:00:00", run_id=RUN_ID)
    summary = RunSummary(True, RUN_ID, 40.0, checks=[("marts/participants", "grain", True, "ERROR")])
    text = report(settings, summary, None)
    assert "SUCCESS" in text.splitlines()[0]
    assert f"Published marts: {settings.published_db}" in text
    assert "marts.participants" in text and "Checks: 1 passed, 0 failed (error)" in text
    assert "Quarantine (current exports): 1 unit(s)" in text and "Erased: 1 participant(s)" in text
    assert "unchanged" not in text and "skipped" not in text


@pytest.mark.parametrize("command", ["run", "deliver"])
def test_a_missing_landing_zone_stops_before_any_run(
    pod_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: str
) -> None:
    missing = pod_env.parent / "no" / "landing"
    monkeypatch.setenv("POD_LANDING_DIR", str(missing))
    assert cli.main([command]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"pod {command}: the landing zone {missing} does not exist "
                   "(set POD_LANDING_DIR to the folder sites deliver into)\n")
    assert not pod_env.exists(), "no Dagster instance, no warehouse: no run was created"


def test_only_the_commands_that_run_the_pipeline_need_the_landing_zone(
    pod_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POD_LANDING_DIR", str(tmp_path / "missing"))
    assert Settings.from_env().landing_dir == tmp_path / "missing"  # the UI and sensors still load
    batch = tmp_path / "zone" / "kmpt" / "20261120T060000Z"
    batch.mkdir(parents=True)
    (batch / "register.csv").write_text("study_id\nKMPT-0001\n")
    assert cli.main(["seal", str(batch)]) == 0
    assert (batch / "manifest.json").exists()


def test_a_second_delivery_the_same_day_is_refused_before_any_run(
    pod_env: Path, capsys: pytest.CaptureFixture
) -> None:
    today = pod_env / "warehouse" / "deliveries" / deliveries.delivery_day().isoformat()
    today.mkdir(parents=True)
    assert cli.main(["deliver"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert str(today) in err and "`pod deliver --new-folder`" in err and f"{today.name}_2" in err
    assert not (pod_env / "dagster_home").exists()


@pytest.mark.slow
def test_pod_deliver_delivers_refuses_a_second_delivery_and_delivers_into_a_new_folder(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(SAMPLE_LANDING_DIR, landing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POD_")}
    env |= {"POD_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "data" / "dagster_home"),
            "POD_LANDING_DIR": str(landing), "POD_REFERENCE_DATE": scenario.REFERENCE_DATE}

    def deliver(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(scenario.POD), "deliver", *args], env=env, capture_output=True, text=True,
                              timeout=600)

    def delivered(result: subprocess.CompletedProcess) -> Path:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        last = result.stdout.strip().splitlines()[-1]
        assert last.startswith("Delivered to "), result.stdout[-3000:]
        folder = Path(last.removeprefix("Delivered to "))
        assert (folder / "manifest.json").is_file() and deliveries.verify_delivery(folder) == []
        return folder

    first = delivered(deliver())
    refused = deliver()
    assert refused.returncode == 1 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and "--new-folder" in refused.stderr, refused.stderr
    again = deliver("--new-folder")
    second = delivered(again)
    assert second != first and second.parent == first.parent
    assert second.name == f"{first.name}_2"
    # Nothing new since the first delivery's publication: no rebuild, the same marts delivered again.
    assert "nothing new since the last publication" in again.stdout and "Checks: 0 passed" in again.stdout
    tables = sorted(path.name for path in first.glob("*.csv"))
    assert tables == sorted(path.name for path in second.glob("*.csv")) and "participants.csv" in tables
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in tables)


def test_the_bundled_sample_is_judged_as_of_its_own_day_and_real_exports_as_of_today(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datetime as dt

    from pod_pipeline.settings import SAMPLE_REFERENCE_DATE, Settings

    monkeypatch.delenv("POD_REFERENCE_DATE", raising=False)
    monkeypatch.delenv("POD_LANDING_DIR", raising=False)
    assert Settings.from_env().reference_date == SAMPLE_REFERENCE_DATE == dt.date(2026, 11, 25)
    monkeypatch.setenv("POD_LANDING_DIR", str(tmp_path))
    assert Settings.from_env().reference_date == dt.date.today()
    monkeypatch.setenv("POD_REFERENCE_DATE", "2027-01-31")
    assert Settings.from_env().reference_date == dt.date(2027, 1, 31)


def test_pod_run_exits_with_its_code_even_when_its_reader_went_away() -> None:
    # `pod run` ends with os._exit after flushing (app/cli.py): a closed pipe must not stop it there.
    script = ("import sys; from pod_pipeline.app import cli; print('report'); "
              "cli._exit_without_teardown(3)")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a terminal user's
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=buffered)
    process.stdout.close()  # the reader goes away before the report (buffered) is flushed
    assert process.wait(timeout=60) == 3
    assert b"Traceback" not in process.stderr.read()


def _error_info(exc: BaseException):
    from dagster._utils.error import serializable_error_info_from_exc_info

    try:
        raise RuntimeError("Error occurred while executing op \"pod_dbt_models\":") from exc
    except RuntimeError:
        return serializable_error_info_from_exc_info(sys.exc_info())


def test_a_failed_steps_line_shows_the_innermost_error_without_its_module() -> None:
    from pod_pipeline.app.runner import _root_cause
    from pod_pipeline.transform.assets import DbtBuildFailed

    assert _root_cause(_error_info(DbtBuildFailed("dbt build failed at 1 node: model a: File too large"))) == (
        "dbt build failed at 1 node: model a: File too large")
    assert _root_cause(_error_info(duckdb.IOException("Could not write file \"w.wal\": File too large"))) == (
        "IOException: Could not write file \"w.wal\": File too large")
    assert _root_cause(_error_info(OSError(errno.ENOSPC, "No space left on device"))) == (
        "OSError: [Errno 28] No space left on device")
    assert _root_cause(_error_info(ValueError("see a.b.ValueError: x"))) == "ValueError: see a.b.ValueError: x"
