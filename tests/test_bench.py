"""The benchmark: its verdicts, and a smoke run at 50 and 2,000 participants so it cannot rot.

No timing is asserted here (figures vary with the machine); the smoke run checks that `pod bench`
completes, measures what it says it measures, and that the reference script and the pipeline agree
on the size of the tables they both compute.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from pod_devtools.bench import run as bench_run
from pod_devtools.bench.measure import process_label, run_measured
from pod_devtools.bench.run import BaselineResult, SizeResult, SuiteResult, _change_answers, _code_at, goals, table


def _result(n: int, full_s: float, reference_s: float, peak_mb: float = 500.0,
            incremental_s: float | None = None, noop_s: float | None = None,
            noop_dbt: bool | None = None) -> SizeResult:
    run = {"wall_s": full_s, "cpu_s": full_s, "peak_rss_mb": peak_mb, "returncode": 0}
    result = SizeResult(n, 1, 1.0, run, {"wall_s": reference_s, "cpu_s": reference_s, "peak_rss_mb": 100.0,
                                        "returncode": 0}, round(full_s / reference_s, 2))
    if incremental_s is not None:
        result.incremental = dict(run, wall_s=incremental_s)
    if noop_s is not None:
        result.noop = dict(run, wall_s=noop_s)
        result.noop_started_dbt = noop_dbt
    return result


def test_goals_report_what_was_missed_and_by_how_much() -> None:
    results = {
        50: _result(50, 30.0, 0.5),
        100_000: _result(100_000, 200.0, 10.0, noop_s=3.0, noop_dbt=False),
        1_000_000: _result(1_000_000, 90.0, 30.0, peak_mb=5 * 1024, incremental_s=18.0),
    }
    baseline = BaselineResult("abc1234", 50, new_s=[31.0, 30.0], baseline_s=[60.0, 62.0])
    suite = SuiteResult("def5678", {"wall_s": 1200.0, "returncode": 0}, {"wall_s": 100.0, "returncode": 0})
    verdicts = {v["goal"]: v for v in goals(results, baseline, suite)}
    assert verdicts["full refresh at 1,000,000 / reference"]["met"] is True  # 3.0
    incremental = verdicts["one new batch at one of 10 sites, 1,000,000 participants / full refresh"]
    assert incremental["met"] is False and incremental["missed_by"] == "100% over"  # 0.2 against 0.1
    study = verdicts["study scale (50) full refresh, this code / baseline code"]
    assert study["measured"] == 0.5 and study["missed_by"] == "25% over"  # best 30 / best 60
    assert verdicts["no-op refresh / full refresh at 100,000"]["met"] is True  # 0.015
    memory = verdicts["peak memory at 1,000,000 (GiB)"]
    assert memory["met"] is False and memory["measured"] == 5.0
    suite_goal = verdicts["clean-clone make test / one pod run --force of the sample"]
    assert suite_goal["measured"] == 12.0 and suite_goal["met"] is False
    assert verdicts["no-op refresh starts no dbt work"]["met"] is True
    results[1_000_000].full.update(peak_by_process={"pod-dbt": 3072.0, "pod": 2048.0}, peak_at_s=1234.5)
    printed = table(results, list(verdicts.values()), baseline, suite)
    assert "peak memory at 1,000,000: 5,120 MB (1,234 s into the run), by process: pod-dbt 3,072, pod 2,048" in printed
    assert "| 1,000,000 |" in printed and "MISSED (100% over)" in printed and "baseline abc1234" in printed


def test_goals_at_sizes_not_run_are_not_measured_rather_than_met() -> None:
    verdicts = goals({50: _result(50, 10.0, 0.5)})
    assert [v["met"] for v in verdicts] == [None] * 6


def test_the_peak_is_told_by_process(tmp_path: Path) -> None:
    """A parent that starts a child holding 200 MB: the peak sample names each, and they add up.
    Another child of the measuring process, holding 400 MB and ending while it measures (a test's
    earlier server, say), is not counted."""
    child = tmp_path / "holder.py"
    child.write_text("import sys, time\nheld = bytearray(int(sys.argv[1]) * 2**20)\ntime.sleep(float(sys.argv[2]))\n")
    other = subprocess.Popen([sys.executable, str(child), "400", "0.3"])
    reaper = threading.Thread(target=other.wait)
    reaper.start()
    parent = f"import subprocess, sys; subprocess.run([sys.executable, {str(child)!r}, '200', '1.5'], check=True)"
    measured = run_measured([sys.executable, "-c", parent], dict(os.environ), interval_s=0.05)
    reaper.join()
    assert measured.returncode == 0
    by_process = measured.peak_by_process
    assert set(by_process) == {f"{Path(sys.executable).name} -c", "holder.py"}, by_process
    assert 200 <= by_process["holder.py"] < 260
    assert sum(by_process.values()) == pytest.approx(measured.peak_rss_mb, abs=2)
    assert list(by_process.values()) == sorted(by_process.values(), reverse=True)
    assert 0 < measured.peak_at_s < measured.wall_s


@pytest.mark.parametrize(("argv", "label"), [
    (["/v/bin/python", "-m", "pod_pipeline.app.cli", "run"], "pod_pipeline.app.cli"),
    (["/v/bin/python3.11", "-B", "-m", "pod_pipeline.transform.warm_dbt"], "pod_pipeline.transform.warm_dbt"),
    (["/v/bin/python", "/v/bin/pod-dbt", "build", "-m", "x"], "pod-dbt"),
    (["/v/bin/python", "-B", "-c", "from multiprocessing import x"], "python -c"),
    (["/usr/bin/make", "test"], "make"),
    (["/usr/lib/chromium/chromium --type=renderer --lang=en-US"], "chromium"),
    (["/v/bin/python"], "python"),
    ([], "?"),
])
def test_a_process_is_named_by_what_it_runs(argv: list[str], label: str) -> None:
    assert process_label(argv) == label


def test_the_baseline_is_the_committed_code_at_its_revision(tmp_path: Path) -> None:
    code = _code_at("HEAD", tmp_path / "code")
    assert (code / "pod_pipeline" / "app" / "cli.py").is_file()
    assert (code / "dbt_project" / "dbt_project.yml").is_file()
    assert not (code / ".git").exists() and not (code / ".venv").exists()


def test_a_baseline_that_cannot_be_read_fails_before_anything_is_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a copy that is not a git checkout, the baseline's `git archive` fails: at once,
    saying what to do, rather than after every size's runs (whose figures would be lost)."""
    monkeypatch.setattr(bench_run, "PROJECT_ROOT", tmp_path / "not-a-checkout")
    (tmp_path / "not-a-checkout").mkdir()
    measured = []
    monkeypatch.setattr(bench_run, "bench_size", lambda *args, **kwargs: measured.append(args))
    with pytest.raises(RuntimeError, match="cannot be read .*--baseline ''"):
        bench_run.main([50], tmp_path / "out", tmp_path / "work", baseline_ref="HEAD")
    assert measured == []


@pytest.mark.slow
def test_bench_smoke_run_at_50_and_2000(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POD_", "DAGSTER_"))}
    out, work = tmp_path / "out", tmp_path / "work"
    completed = subprocess.run(
        [sys.executable, "-m", "pod_pipeline.app.cli", "bench", "--sizes", "50 2000", "--out", str(out),
         "--work", str(work), "--incremental-at", "50", "--noop-at", "50", "--baseline", ""],
        env=env, capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "| 2,000 |" in completed.stdout

    [report_path] = out.glob("bench-*.json")
    report = json.loads(report_path.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_gib"] > 0
    for size in ("50", "2000"):
        result = report["results"][size]
        assert result["full"]["returncode"] == 0
        assert result["full"]["wall_s"] > 0 and result["full"]["cpu_s"] > 0 and result["full"]["peak_rss_mb"] > 50
        # The peak told by process: `pod run` itself is one of them (a sample between two can
        # miss the top, so the parts may add up to less than the peak, never more).
        assert "pod_pipeline.app.cli" in result["full"]["peak_by_process"], result["full"]
        assert sum(result["full"]["peak_by_process"].values()) <= result["full"]["peak_rss_mb"] + 1
        assert result["reference"]["wall_s"] > 0
        assert result["ratio_to_reference"] == pytest.approx(
            result["full"]["wall_s"] / result["reference"]["wall_s"], rel=0.02)
        steps = {s["step"]: s for s in result["steps"]}
        assert "pod_dbt_models" in steps, sorted(steps)
        assert all(s["status"] == "SUCCESS" for s in steps.values())
        assert len(steps) > 10  # ingestion, dbt, quality checks, analysis, publication

        # The reference and the pipeline computed the same spine from the same zone.
        [marts] = (work / "runs" / size).rglob("pod_marts.duckdb")
        with duckdb.connect(str(marts), read_only=True) as con:
            pipeline_rows = con.execute("select count(*) from marts.participant_timepoints").fetchone()[0]
        with duckdb.connect(str(work / "reference" / f"{size}.duckdb"), read_only=True) as con:
            reference_rows = con.execute("select count(*) from participant_timepoints").fetchone()[0]
        assert pipeline_rows == reference_rows
        # every participant x 3 timepoints (5 at a national-trial site), less all_data withdrawals
        assert int(size) * 3 * 0.9 <= pipeline_rows <= int(size) * 5
        # `pod run` ends without Python's teardown (app/cli.py), only once its databases are
        # closed: no write-ahead log is left beside the run history or the warehouse.
        assert not [p.name for p in (work / "runs" / size).rglob("*") if p.name.endswith(("-wal", ".wal"))]

    at_50 = report["results"]["50"]
    assert at_50["incremental"]["returncode"] == 0 and at_50["noop"]["returncode"] == 0
    assert at_50["incremental_changed"] is not None
    assert at_50["noop_started_dbt"] is False
    assert {"step": "pod_dbt_models", "status": "SUCCESS"} in [
        {k: s[k] for k in ("step", "status")} for s in at_50["incremental_steps"]]
    # The next day's refresh ran dbt, and its build was made at the next day's date.
    assert at_50["next_day"]["returncode"] == 0
    assert {"step": "pod_dbt_models", "status": "SUCCESS"} in [
        {k: s[k] for k in ("step", "status")} for s in at_50["next_day_steps"]]
    [work_db] = (work / "runs" / "50").rglob("pod_work.duckdb")
    with duckdb.connect(str(work_db), read_only=True) as con:
        assert con.execute("select reference_date from audit.dbt_build_state").fetchall() == [("2026-11-26",)]
    assert report["results"]["2000"]["incremental"] is None and report["results"]["2000"]["noop"] is None
    assert report["baseline"] is None and report["suite"] is None
    names = {v["goal"] for v in report["goals"]}
    assert "no-op refresh starts no dbt work" in names and len(names) == 7


def test_the_incremental_batch_changes_one_baseline_answer_of_the_participants_it_picks(tmp_path: Path) -> None:
    """add_batch's change to the REDCap export: a baseline WEMWBS item 1 answer moves one on (5 to
    1) for the records whose id hashes into the share; every other byte stays as it was."""
    rows = ["record_id,redcap_event_name,redcap_repeat_instrument,wemwbs_01,wemwbs_02",
            *(f"P-{i:04d},baseline_arm_1,,{i % 5 + 1},3" for i in range(400)),
            *(f"P-{i:04d},month_3_arm_1,,2,3" for i in range(400)),
            "P-0001,baseline_arm_1,carer_questionnaire,2,3", "P-0002,baseline_arm_1,,,3"]
    export = tmp_path / "redcap_records.csv"
    export.write_text("\n".join(rows) + "\n", encoding="utf-8")
    changed = _change_answers(export, 0.10)
    after = export.read_text(encoding="utf-8").splitlines()
    moved = [(a, b) for a, b in zip(rows, after, strict=True) if a != b]
    assert changed == len(moved) and 20 < changed < 70  # about a tenth of 400 baselines
    for before, now in moved:
        old, new = before.split(","), now.split(",")
        assert old[1] == "baseline_arm_1" and old[2] == "" and old[4:] == new[4:] and old[:3] == new[:3]
        assert new[3] == str(int(old[3]) % 5 + 1)
    assert _change_answers(export, 0.0) == 0
