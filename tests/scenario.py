"""One story of full pipeline runs, shared by the reliability, withdrawal, identifier and CSV tests.

A full run takes ~40 s, so the story is told once per test session (on first use) and every test
reads what it left behind:

1. batch 1 of a two-site synthetic zone lands, with formula-like values planted (a cluster_id
   `@SUM(1)`, a carer_id and a rater_role `=cmd|' /C calc'!A0`); `weekly_delivery` runs (build,
   publish, deliver), with POD_ENV=production and a recognisable secret key;
2. batch 2 lands: one participant with carers has withdrawn with `all_data`;
3. `pod run` starts in a process group of its own and is SIGKILLed once its `dbt build` has
   written a few tables;
4. `pod run` runs again, to the end;
5. the delivery asset of `weekly_delivery` delivers again (new_folder);
6. the same zone (both batches) is run once, uninterrupted, in a clean data folder;
7. there, the load ledger is edited behind the pipeline's back and a forced run follows.

Between the steps the story records what the tests compare: digests of the published file, the
Parquet release and every delivery file, the killed run's state, each command's output.
"""

import contextlib
import csv
import datetime as dt
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from pod_devtools.synth import generate
from pod_pipeline.app.runner import RunSummary, execute, prepare_instance
from pod_pipeline.definitions import defs
from pod_pipeline.delivery.assets import DELIVERY_KEY
from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.assets import FULL_REFRESH
from pod_pipeline.ingest.batch_manifest import KNOWN_FILES, seal_batch
from pod_pipeline.ingest.checks import conservation_failures
from pod_pipeline.settings import Settings

KEY = "pod-story-key-7f3a9c1e5b2d4068a1c3e5f7-RECOGNISABLE"
REFERENCE_DATE = "2026-11-25"
# Batch 1 is run as the day after it was exported: on the later date most of what is due by then
# is missing from it, and the completeness check (rightly) blocks.
FIRST_REFERENCE_DATE = "2026-01-12"
SMALL_ZONE_MIN_DUE = "20"
CALC = "=cmd|' /C calc'!A0"
CLUSTER_FORMULA = "@SUM(1)"
FORCE = FULL_REFRESH
POD = Path(sys.executable).with_name("pod")
DBT_STEP = "pod_dbt_models"


@dataclass
class Story:
    root: Path
    landing: Path
    data: Path  # the story's data folder (steps 1-5)
    clean: Path  # the uninterrupted run of the same zone (steps 6-7)
    batches: dict[int, list[Path]]  # 1 and 2: the batch folders in the landing zone
    erased: str  # study id of the participant withdrawn with all_data in batch 2
    erased_carers: list[str]
    all_data: set[str]  # every participant withdrawn with all_data in the newest registers
    dates_of_birth: set[str]
    first: RunSummary | None = None
    before_kill: dict[str, str] = field(default_factory=dict)
    after_kill: dict[str, str] = field(default_factory=dict)
    killed: dict[str, Any] = field(default_factory=dict)
    recovered: dict[str, Any] = field(default_factory=dict)
    second: subprocess.CompletedProcess | None = None
    ledger_after: dict[str, list[tuple]] = field(default_factory=dict)
    deliveries: list[Path] = field(default_factory=list)
    redelivery: dg.ExecuteInProcessResult | None = None
    clean_run: RunSummary | None = None
    tampered: dict[str, Any] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse"


def env_for(data: Path, landing: Path, reference_date: str = REFERENCE_DATE) -> dict[str, str]:
    return {"POD_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"),
            "POD_LANDING_DIR": str(landing), "POD_REFERENCE_DATE": reference_date,
            "POD_PSEUDONYM_KEY": KEY, "POD_ENV": "production",
            # 30 participants a site: the national-trial site's month 12 groups hold about 7 due
            # assessments, too few to block on (the completeness check has tests of its own).
            "POD_COMPLETENESS_MIN_DUE": SMALL_ZONE_MIN_DUE}


@contextlib.contextmanager
def pipeline_env(data: Path, landing: Path, reference_date: str = REFERENCE_DATE) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env_for(data, landing, reference_date).items():
            patch.setenv(name, value)
        patch.delenv("POD_WAREHOUSE_DIR", raising=False)
        yield


def subprocess_env(data: Path, landing: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POD_WAREHOUSE_DIR"}
    return env | env_for(data, landing)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(warehouse: Path) -> dict[str, str]:
    """The published file, the current Parquet release (which one, and each file) and every file
    of every delivery folder, by SHA-256; the release folders that exist."""
    found = {"pod_marts.duckdb": sha256(warehouse / "pod_marts.duckdb"),
             "marts ->": os.readlink(warehouse / "marts"),
             "releases": " ".join(sorted(os.listdir(warehouse / "marts_releases")))}
    found |= {f"marts/{p.name}": sha256(p) for p in (warehouse / "marts").iterdir()}
    deliveries = warehouse / "deliveries"
    if deliveries.exists():
        found |= {str(p.relative_to(warehouse)): sha256(p)
                  for p in deliveries.rglob("*") if p.is_file()}
    return found


def ledger_rows(work_db: Path) -> list[tuple]:
    with duckdb.connect(str(work_db), read_only=True) as con:
        return con.execute("select * from audit.load_ledger order by entry_id").fetchall()


def read_rows(path: Path) -> tuple[bool, list[list[str]]]:
    data = path.read_bytes()
    bom = data.startswith(b"\xef\xbb\xbf")
    return bom, list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def write_rows(path: Path, bom: bool, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))


def edit(path: Path, change) -> None:
    """Apply `change(row as dict) -> dict | None` to every data row of a CSV file."""
    bom, rows = read_rows(path)
    header = rows[0]
    for i, row in enumerate(rows[1:], start=1):
        new = change(dict(zip(header, row, strict=True)))
        if new is not None:
            rows[i] = [new[name] for name in header]
    write_rows(path, bom, rows)


def plant(generated: Path) -> tuple[str, list[str], set[str]]:
    """Formula-like values in every batch, an all_data withdrawal in each site's newest batch.

    Returns the withdrawn participant, their carers and the dates of birth in the zone.
    """
    batches = {site.name: sorted(p for p in site.iterdir() if p.is_dir())
               for site in sorted(p for p in generated.iterdir() if p.is_dir())}
    site = "kmpt"
    first, newest = batches[site][0], batches[site][-1]
    _, register = read_rows(first / "register.csv")
    header = register[0]
    in_first = [dict(zip(header, r, strict=True)) for r in register[1:]]
    carers: dict[str, list[str]] = {}
    _, records = read_rows(first / "redcap_records.csv")
    for row in (dict(zip(records[0], r, strict=True)) for r in records[1:]):
        if row["redcap_repeat_instrument"] == "carer_questionnaire" and row["carer_id"]:
            carers.setdefault(row["record_id"], [])
            if row["carer_id"] not in carers[row["record_id"]]:
                carers[row["record_id"]].append(row["carer_id"])
    candidates = [p for p in in_first if not p["withdrawal_type"] and carers.get(p["study_id"])]
    erased, formula_carer, cluster_holder = candidates[0], candidates[1], candidates[2]

    def withdraw(row: dict) -> dict | None:
        if row["study_id"] != erased["study_id"]:
            return None
        when = dt.date.fromisoformat(row["consent_date"]) + dt.timedelta(days=20)
        return row | {"withdrawal_type": "all_data", "withdrawal_date": when.isoformat()}

    dates_of_birth = set()
    for folder in (b for site_batches in batches.values() for b in site_batches):
        edit(folder / "register.csv", lambda r: r | {"cluster_id": CLUSTER_FORMULA}
             if r["study_id"] == cluster_holder["study_id"] else None)
        edit(folder / "redcap_records.csv", lambda r: r | {"carer_id": CALC}
             if r["record_id"] == formula_carer["study_id"]
             and r["carer_id"] == carers[formula_carer["study_id"]][0] else None)
        edit(folder / "honos.csv", lambda r: r | {"rater_role": CALC})
        if folder == newest:
            edit(folder / "register.csv", withdraw)
        _, rows = read_rows(folder / "register.csv")
        dates_of_birth |= {r[rows[0].index("date_of_birth")] for r in rows[1:]}
        seal_batch(folder)
    return erased["study_id"], carers[erased["study_id"]], dates_of_birth


def all_data_withdrawals(batches: list[Path]) -> set[str]:
    """Participants withdrawn with all_data in each site's newest register."""
    newest = {}
    for batch in sorted(batches):
        if (batch / "register.csv").exists():
            newest[batch.parent.name] = batch / "register.csv"
    erased = set()
    for path in newest.values():
        _, rows = read_rows(path)
        kind, study = rows[0].index("withdrawal_type"), rows[0].index("study_id")
        erased |= {r[study] for r in rows[1:] if r[kind] == "all_data"}
    return erased


def process_group_runs_dbt(pgid: int) -> bool:
    """Whether a `dbt build` process runs in the process group (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        group = int(stat.rsplit(")", 1)[1].split()[2])
        if group == pgid and any(part.endswith(b"dbt") for part in command) and b"build" in command:
            return True
    return False


def tables_built(row_counts: Path) -> int:
    """Tables of models a `dbt build` has written so far: the row counts their builds wrote
    (macros/row_counts.sql), in a folder the pipeline empties before it starts dbt."""
    return sum(1 for path in row_counts.glob("*.count") if path.name.startswith(("intermediate.", "marts.")))


def kill_during_dbt(story: "Story", env: dict[str, str], logs: Path) -> dict[str, Any]:
    """`pod run` in its own process group, SIGKILLed (the whole group) in the middle of its
    `dbt build`: once dbt runs in the group and has written a few tables to the database."""
    row_counts = story.warehouse / "dbt_target" / "row_counts"
    with (logs / "killed.out").open("wb") as out:
        run = subprocess.Popen([str(POD), "run"], env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
        deadline = time.monotonic() + 300

        def wait_for(condition, what: str) -> None:
            while not condition():
                if run.poll() is not None or time.monotonic() > deadline:
                    run.kill()
                    raise AssertionError(f"pod run ended or stalled before {what}: {run.poll()}")
                time.sleep(0.1)

        wait_for(lambda: process_group_runs_dbt(run.pid), "dbt started")
        with pipeline_env(story.data, story.landing):
            (started,) = prepare_instance(Settings.from_env()).get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        wait_for(lambda: tables_built(row_counts) >= 3, "dbt wrote tables")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    return {"returncode": run.returncode, "run_id": started.run_id,
            "tables_built_before_kill": tables_built(row_counts)}


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str | None]]:
    return [(r.dagster_event.event_type_value, r.dagster_event.step_key)
            for r in instance.all_logs(run_id) if r.dagster_event]


def tell(root: Path) -> Story:
    generated, landing = root / "generated", root / "landing"
    generate(generated, sites=2, participants_per_site=30, seed=20261125, batches=2,
             messy=False, preset=None)
    erased, carers, births = plant(generated)
    story = Story(root, landing, root / "data", root / "clean", {1: [], 2: []}, erased, carers,
                  all_data_withdrawals(sorted(generated.glob("*/*"))), births)
    for site in sorted(p for p in generated.iterdir() if p.is_dir()):
        for number, batch in enumerate(sorted(p for p in site.iterdir() if p.is_dir()), start=1):
            story.batches[number].append(landing / site.name / batch.name)
    logs = root / "outputs"
    logs.mkdir()

    # 1. Batch 1; build, publish and deliver.
    for batch in story.batches[1]:
        shutil.copytree(generated / batch.parent.name / batch.name, batch)
    with pipeline_env(story.data, landing, FIRST_REFERENCE_DATE):
        story.first = execute("weekly_delivery", quiet=True)
    assert story.first.success, story.first.errors
    story.deliveries.append(next((story.warehouse / "deliveries").iterdir()))
    story.ledger_after["first"] = ledger_rows(story.warehouse / "pod_work.duckdb")
    story.before_kill = digests(story.warehouse)

    # 2, 3. Batch 2 lands; a run is killed in the middle of its dbt build.
    for batch in story.batches[2]:
        shutil.copytree(generated / batch.parent.name / batch.name, batch)
    env = subprocess_env(story.data, landing)
    story.killed = kill_during_dbt(story, env, logs)
    story.after_kill = digests(story.warehouse)
    with pipeline_env(story.data, landing):
        instance = prepare_instance(Settings.from_env())
        killed = instance.get_run_by_id(story.killed["run_id"])
        story.killed |= {"status": killed.status, "events": run_events(instance, killed.run_id)}
    work_db = story.warehouse / "pod_work.duckdb"
    with duckdb.connect(str(work_db)) as con:  # read-write: replays whatever the kill left
        story.recovered = {
            "ledger_problems": ledger.verify(con),
            "conservation": {f: conservation_failures(con, f) for f in KNOWN_FILES},
            "batches_loaded": con.execute(
                "select count(distinct site || export_id) from audit.load_ledger "
                "where file = 'manifest.json' and status = 'accepted'").fetchall()[0][0]}

    # 4. The next run, to the end.
    story.second = subprocess.run([str(POD), "run"], env=env, capture_output=True, text=True,
                                  timeout=600)
    story.ledger_after["second"] = ledger_rows(work_db)
    with pipeline_env(story.data, landing):
        story.killed["status_after_next_run"] = prepare_instance(
            Settings.from_env()).get_run_by_id(killed.run_id).status

        # 5. Deliver again, into a new folder.
        story.redelivery = defs.resolve_job_def("weekly_delivery").execute_in_process(
            instance=prepare_instance(Settings.from_env()), asset_selection=[DELIVERY_KEY],
            run_config={"ops": {"delivery__trial_delivery": {"config": {"new_folder": True}}}},
            raise_on_error=False)
    story.deliveries = sorted((story.warehouse / "deliveries").iterdir())
    story.ledger_after["redelivery"] = ledger_rows(work_db)

    # 6. The same zone, uninterrupted, in a clean data folder.
    with pipeline_env(story.clean, landing):
        story.clean_run = execute(quiet=True)

        # 7. The ledger edited behind the pipeline's back, then a forced run.
        clean_warehouse = story.clean / "warehouse"
        before = digests(clean_warehouse)
        with duckdb.connect(str(clean_warehouse / "pod_work.duckdb")) as con:
            # A file's checksum: nothing but the hash chain looks at it again.
            con.execute("update audit.load_ledger set sha256 = repeat('0', 64) "
                        "where entry_id = (select min(entry_id) from audit.load_ledger "
                        "where status = 'loaded')")
            publications = con.execute("select count(*) from audit.publications").fetchall()[0][0]
        summary = execute(run_config=FORCE, quiet=True)
        with duckdb.connect(str(clean_warehouse / "pod_work.duckdb"), read_only=True) as con:
            published = con.execute("select count(*) from audit.publications").fetchall()[0][0]
        story.tampered = {"before": before, "after": digests(clean_warehouse), "summary": summary,
                          "publications": (publications, published)}
    return story
