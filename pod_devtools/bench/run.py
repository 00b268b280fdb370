"""`pod bench`: full, incremental, next-day and no-op refreshes at study to national scale, against a reference."""

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pod_devtools.bench.measure import Measurement, run_measured
from pod_devtools.bench.reference import run_reference
from pod_pipeline.ingest.batch_manifest import seal_batch
from pod_pipeline.settings import PROJECT_ROOT

# participants -> sites (several sites from 10,000 up, as a national roll-out would have)
SITES = {50: 1, 10_000: 4, 100_000: 5, 1_000_000: 10}
REFERENCE_DATE = "2026-11-25"
# "Today's code" of issue 14: the last commit before the speed work, which study scale is compared to.
BASELINE_REF = "6af50dc"
SEED = 20261125


@dataclass
class SizeResult:
    participants: int
    sites: int
    zone_mb: float
    full: dict
    reference: dict
    ratio_to_reference: float
    steps: list[dict] = field(default_factory=list)
    incremental: dict | None = None
    incremental_steps: list[dict] = field(default_factory=list)
    # How many of the site's participants the incremental refresh's batch changed (add_batch).
    incremental_changed: int | None = None
    noop: dict | None = None
    noop_started_dbt: bool | None = None
    # The day after the incremental refresh: nothing new, the reference date one day on (a daily
    # scheduled refresh); only the models that depend on the date are rebuilt.
    next_day: dict | None = None
    next_day_steps: list[dict] = field(default_factory=list)


@dataclass
class BaselineResult:
    """Study-scale full refreshes of the same zone by the baseline code and by this code, taken in
    turns (new, baseline, new, baseline) so a slow spell of the machine hits both; best of each."""
    ref: str
    participants: int
    new_s: list[float]
    baseline_s: list[float]

    @property
    def ratio(self) -> float:
        return round(min(self.new_s) / min(self.baseline_s), 3)


@dataclass
class SuiteResult:
    """A clean clone's `make test` and one `pod run --force` of the sample, on the same machine."""
    commit: str
    make_test: dict
    pod_run_force: dict

    @property
    def ratio(self) -> float:
        return round(self.make_test["wall_s"] / self.pod_run_force["wall_s"], 2)


def zone_for(participants: int, cache: Path) -> Path:
    """A cached synthetic landing zone of that size (generated once per generator version)."""
    sites = SITES.get(participants, max(1, participants // 100_000))
    zone = cache / f"zone-{participants}-{sites}-{SEED}"
    if not (zone / ".complete").exists():
        shutil.rmtree(zone, ignore_errors=True)
        command = [sys.executable, "-m", "pod_pipeline.app.cli", "synth", str(zone), "--sites", str(sites),
                   "--participants", str(participants // sites), "--seed", str(SEED), "--batches", "2"]
        result = run_measured(command, dict(os.environ))
        if result.returncode:
            raise RuntimeError(f"pod synth failed for {participants}:\n{result.output[-2000:]}")
        (zone / ".complete").write_text("ok")
    return zone


def _env(zone: Path, data: Path, reference_date: str = REFERENCE_DATE) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POD_", "DAGSTER_"))}
    return env | {"POD_LANDING_DIR": str(zone), "POD_DATA_DIR": str(data), "POD_REFERENCE_DATE": reference_date,
                  "DAGSTER_HOME": str(data / "dagster_home")}


def _pod_run(zone: Path, data: Path, reference_date: str = REFERENCE_DATE) -> Measurement:
    result = run_measured([sys.executable, "-m", "pod_pipeline.app.cli", "run"], _env(zone, data, reference_date))
    if result.returncode:
        raise RuntimeError(f"pod run failed on {zone}:\n{result.output[-4000:]}")
    return result


def newest_run_id(data: Path) -> str | None:
    runs = _newest_runs(data)
    return runs[0] if runs else None


def _newest_runs(data: Path, steps_of_newest: bool = False):
    import dagster as dg

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(limit=1)
            if steps_of_newest:
                return instance.get_run_step_stats(runs[0].run_id)
            return [run.run_id for run in runs]
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def step_durations(data: Path) -> list[dict]:
    """Each step (asset or check) of the newest run, from the Dagster event log."""
    stats = _newest_runs(data, steps_of_newest=True)
    steps = [{"step": s.step_key, "status": s.status.value if s.status else None,
              "seconds": round((s.end_time or s.start_time or 0) - (s.start_time or 0), 2)} for s in stats]
    return sorted(steps, key=lambda s: -s["seconds"])


# The share of the site's participants whose answers the incremental refresh's new batch changes.
# A cumulative export repeats what the site sent before and adds what happened since: at the
# national trial's pace (assessments at 0, 3, 6, 12 and 24 months) about one participant in ten
# has something new in a month. Changing none would measure a re-export that changes nothing,
# which dbt now skips (transform/partitions.py); changing all would measure a site's first export.
CHANGED_SHARE = 0.10


def add_batch(zone: Path, share: float = CHANGED_SHARE) -> tuple[Path, int]:
    """A new sealed batch at the first site: its newest export again, a day later, in which the
    baseline WEMWBS item 1 answer of about `share` of its participants (chosen by a hash of the
    record id) is another valid answer. Returns the batch and how many participants changed."""
    site = sorted(p for p in zone.iterdir() if p.is_dir())[0]
    newest = sorted(p for p in site.iterdir() if (p / "manifest.json").exists())[-1]
    stamp = dt.datetime.strptime(newest.name, "%Y%m%dT%H%M%SZ") + dt.timedelta(days=1)
    target = site / stamp.strftime("%Y%m%dT%H%M%SZ")
    shutil.copytree(newest, target)
    (target / "manifest.json").unlink()
    changed = _change_answers(target / "redcap_records.csv", share)
    seal_batch(target)
    return target, changed


def _change_answers(path: Path, share: float, field: str = "wemwbs_01") -> int:
    """Rewrite the REDCap export with `field` at baseline moved one answer on (5 -> 1) for the
    records whose id hashes into `share`; returns how many rows changed."""
    changed = 0
    partial = path.with_suffix(".partial")
    with path.open(encoding="utf-8", newline="") as source, partial.open("w", encoding="utf-8", newline="") as out:
        header = source.readline()
        out.write(header)
        column = header.rstrip("\r\n").split(",").index(field)
        for line in source:
            parts = line.split(",", column + 1)
            if (len(parts) > column + 1 and parts[1].startswith("baseline_") and not parts[2]
                    and parts[column] in ("1", "2", "3", "4", "5")
                    and zlib.crc32(parts[0].encode()) % 1000 < share * 1000):
                parts[column] = str(int(parts[column]) % 5 + 1)
                changed += 1
            out.write(",".join(parts))
    partial.replace(path)
    return changed


def _as_dict(m: Measurement) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(m).items() if k != "output"}


def bench_size(participants: int, work: Path, incremental: bool, noop: bool) -> SizeResult:
    zone = zone_for(participants, work / "zones")
    data = work / "runs" / str(participants)
    shutil.rmtree(data, ignore_errors=True)
    full = _pod_run(zone, data)
    steps = step_durations(data)
    reference = run_reference(zone, work / "reference" / f"{participants}.duckdb")
    size_mb = sum(p.stat().st_size for p in zone.rglob("*.csv")) / 2**20
    result = SizeResult(participants, SITES.get(participants, 1), round(size_mb, 1), _as_dict(full),
                        _as_dict(reference), round(full.wall_s / reference.wall_s, 2), steps)
    if noop:
        # Nothing new since the full refresh: `pod run` must find that out without starting dbt
        # (it starts no Dagster run at all when the publication is current).
        before = newest_run_id(data)
        result.noop = _as_dict(_pod_run(zone, data))
        result.noop_started_dbt = newest_run_id(data) != before and any(
            s["step"] == "pod_dbt_models" and s["status"] == "SUCCESS" for s in step_durations(data))
    if incremental:
        batch, result.incremental_changed = add_batch(zone)
        try:
            result.incremental = _as_dict(_pod_run(zone, data))
            result.incremental_steps = step_durations(data)
            next_day = (dt.date.fromisoformat(REFERENCE_DATE) + dt.timedelta(days=1)).isoformat()
            result.next_day = _as_dict(_pod_run(zone, data, next_day))
            result.next_day_steps = step_durations(data)
        finally:
            shutil.rmtree(batch)
    return result


def _code_at(ref: str, folder: Path) -> Path:
    """The project's files at git revision `ref`, unpacked (not a worktree: the repository is left as it is)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", ref], capture_output=True, check=False)
    if archive.returncode:
        raise RuntimeError(f"the baseline's code at {ref} cannot be read (git archive: "
                           f"{archive.stderr.decode(errors='replace').strip()[-500:]}); run the benchmark "
                           "from a git checkout that has that revision, or pass --baseline ''")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def bench_baseline(ref: str, code: Path, participants: int, work: Path, rounds: int = 2) -> BaselineResult:
    """Full refreshes at study scale by this code and by the code at `ref` (unpacked in `code`,
    `_code_at`), in turns, one venv."""
    zone = zone_for(participants, work / "zones")
    result = BaselineResult(ref, participants, [], [])
    for turn in range(rounds):
        for label, cwd in (("new", None), ("baseline", code)):
            data = work / "runs" / f"{participants}-{label}-{turn}"
            shutil.rmtree(data, ignore_errors=True)
            env = _env(zone, data)
            if cwd is not None:
                env["PYTHONPATH"] = str(cwd)  # ahead of the editable install of this checkout
            measured = run_measured([sys.executable, "-m", "pod_pipeline.app.cli", "run"], env, cwd=cwd)
            if measured.returncode:
                raise RuntimeError(f"pod run ({label}) failed:\n{measured.output[-3000:]}")
            (result.new_s if label == "new" else result.baseline_s).append(round(measured.wall_s, 2))
            shutil.rmtree(data, ignore_errors=True)
    return result


def bench_suite(work: Path) -> SuiteResult:
    """`make test` in a clean clone of the committed project (venv built from scratch, as CI does),
    then one `pod run --force` of the bundled sample with that clone's venv."""
    clone = work / "suite-clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POD_", "DAGSTER_", "VIRTUAL_ENV"))}
    make_test = run_measured(["make", "test"], env, cwd=clone)
    (work / "suite-make-test.log").write_text(make_test.output)
    data = clone / "data-bench"
    force = run_measured([str(clone / ".venv" / "bin" / "pod"), "run", "--force"],
                         env | {"POD_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home")}, cwd=clone)
    if force.returncode:
        raise RuntimeError(f"pod run --force failed in the clone:\n{force.output[-3000:]}")
    return SuiteResult(commit, _as_dict(make_test), _as_dict(force))


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(total_kb / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform(), "date": dt.date.today().isoformat()}


# The goals of issue 14, each a ratio measured side by side in one `pod bench` run.
GOALS = (
    ("full refresh at 1,000,000 / reference", 4.0,
     lambda r, b, t: r.get(1_000_000) and r[1_000_000].ratio_to_reference),
    ("one new batch at one of 10 sites, 1,000,000 participants / full refresh", 0.10,
     lambda r, b, t: r.get(1_000_000) and r[1_000_000].incremental and
     r[1_000_000].incremental["wall_s"] / r[1_000_000].full["wall_s"]),
    ("study scale (50) full refresh, this code / baseline code", 0.4, lambda r, b, t: b and b.ratio),
    ("no-op refresh / full refresh at 100,000", 0.02,
     lambda r, b, t: r.get(100_000) and r[100_000].noop and r[100_000].noop["wall_s"] / r[100_000].full["wall_s"]),
    ("peak memory at 1,000,000 (GiB)", 3.0,
     lambda r, b, t: r.get(1_000_000) and r[1_000_000].full["peak_rss_mb"] / 1024),
    ("clean-clone make test / one pod run --force of the sample", 5.0, lambda r, b, t: t and t.ratio),
)


def goals(results: dict[int, SizeResult], baseline: BaselineResult | None = None,
          suite: SuiteResult | None = None) -> list[dict]:
    verdicts = []
    for name, limit, measure in GOALS:
        value = measure(results, baseline, suite)
        if not value:
            verdicts.append({"goal": name, "measured": None, "limit": limit, "met": None})
            continue
        verdicts.append({"goal": name, "measured": round(value, 3), "limit": limit, "met": value <= limit,
                         "missed_by": None if value <= limit else f"{(value / limit - 1) * 100:.0f}% over"})
    noop = [r for r in results.values() if r.noop_started_dbt is not None]
    if noop:
        verdicts.append({"goal": "no-op refresh starts no dbt work", "measured": noop[0].noop_started_dbt,
                         "limit": False, "met": not noop[0].noop_started_dbt})
    return verdicts


def table(results: dict[int, SizeResult], verdicts: list[dict], baseline: BaselineResult | None = None,
          suite: SuiteResult | None = None) -> str:
    lines = ["| participants | sites | CSV MB | full wall s | CPU s | peak RSS MB | reference s | ratio | "
             "incremental s | next day s | no-op s |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in sorted(results.items()):
        lines.append(f"| {n:,} | {r.sites} | {r.zone_mb} | {r.full['wall_s']} | {r.full['cpu_s']} | "
                     f"{r.full['peak_rss_mb']:.0f} | {r.reference['wall_s']} | {r.ratio_to_reference} | "
                     f"{r.incremental['wall_s'] if r.incremental else '–'} | "
                     f"{r.next_day['wall_s'] if r.next_day else '–'} | {r.noop['wall_s'] if r.noop else '–'} |")
    lines.append("")
    for n, r in sorted(results.items()):
        if r.full.get("peak_by_process"):
            parts = ", ".join(f"{label} {mb:,.0f}" for label, mb in r.full["peak_by_process"].items())
            when = f" ({r.full['peak_at_s']:,.0f} s into the run)" if r.full.get("peak_at_s") is not None else ""
            lines.append(f"peak memory at {n:,}: {r.full['peak_rss_mb']:,.0f} MB{when}, by process: {parts}")
    if baseline:
        lines.append(f"study scale ({baseline.participants}): this code {baseline.new_s} s, "
                     f"baseline {baseline.ref} {baseline.baseline_s} s (best of each compared)")
    if suite:
        lines.append(f"suite: clean clone {suite.commit} `make test` {suite.make_test['wall_s']} s "
                     f"(exit {suite.make_test['returncode']}), `pod run --force` {suite.pod_run_force['wall_s']} s")
    lines += ["", "| figure | measured | goal | verdict |", "|---|---:|---:|---|"]
    for v in verdicts:
        state = {True: "met", False: f"MISSED ({v.get('missed_by') or 'see value'})", None: "not measured"}[v["met"]]
        limit = "no dbt" if v["limit"] is False else f"≤ {v['limit']}"
        lines.append(f"| {v['goal']} | {v['measured']} | {limit} | {state} |")
    return "\n".join(lines)


def main(sizes: list[int], out: Path, work: Path, incremental_at: int | None = None,
         noop_at: int = 100_000, baseline_ref: str | None = BASELINE_REF, suite: bool = False) -> int:
    incremental_at = max(sizes) if incremental_at is None else incremental_at
    # The baseline's code first: a revision that cannot be read (not in this repository, or the
    # project not a git checkout) fails here, not after the sizes' runs.
    baseline_code = _code_at(baseline_ref, work / f"baseline-{baseline_ref}") if baseline_ref else None
    results: dict[int, SizeResult] = {}
    for n in sizes:
        print(f"bench: {n:,} participants ...", flush=True)
        results[n] = bench_size(n, work, incremental=(n == incremental_at), noop=(n == noop_at))
        print(f"bench: {n:,} full {results[n].full['wall_s']} s, reference {results[n].reference['wall_s']} s",
              flush=True)
    baseline = None
    if baseline_ref:
        print(f"bench: study scale, this code against {baseline_ref} ...", flush=True)
        baseline = bench_baseline(baseline_ref, baseline_code, min(sizes), work)
    suite_result = None
    if suite:
        print("bench: clean-clone make test and pod run --force ...", flush=True)
        suite_result = bench_suite(work)
    verdicts = goals(results, baseline, suite_result)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "results": {str(n): asdict(r) for n, r in results.items()},
              "baseline": baseline and {**asdict(baseline), "ratio": baseline.ratio},
              "suite": suite_result and {**asdict(suite_result), "ratio": suite_result.ratio},
              "goals": verdicts}
    path = out / f"bench-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(results, verdicts, baseline, suite_result))
    print(f"\nmachine: {report['machine']}\nJSON: {path}")
    return 0


DEFAULT_WORK = PROJECT_ROOT / "data" / "bench"
