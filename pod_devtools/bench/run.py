"""`pod bench`: full, incremental and no-op refreshes at study to national scale, against a reference."""

import datetime as dt
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pod_devtools.bench.measure import Measurement, run_measured
from pod_devtools.bench.reference import run_reference
from pod_pipeline.ingest.batch_manifest import seal_batch
from pod_pipeline.settings import PROJECT_ROOT

# participants -> sites (several sites from 10,000 up, as a national roll-out would have)
SITES = {50: 1, 10_000: 4, 100_000: 5, 1_000_000: 10}
REFERENCE_DATE = "2026-11-25"
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
    noop: dict | None = None
    noop_started_dbt: bool | None = None


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


def _env(zone: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POD_", "DAGSTER_"))}
    return env | {"POD_LANDING_DIR": str(zone), "POD_DATA_DIR": str(data), "POD_REFERENCE_DATE": REFERENCE_DATE,
                  "DAGSTER_HOME": str(data / "dagster_home")}


def _pod_run(zone: Path, data: Path) -> Measurement:
    result = run_measured([sys.executable, "-m", "pod_pipeline.app.cli", "run"], _env(zone, data))
    if result.returncode:
        raise RuntimeError(f"pod run failed on {zone}:\n{result.output[-4000:]}")
    return result


def step_durations(data: Path) -> list[dict]:
    """Each step (asset or check) of the newest run, from the Dagster event log."""
    import dagster as dg

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_runs(limit=1)[0]
            stats = instance.get_run_step_stats(run.run_id)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    steps = [{"step": s.step_key, "status": s.status.value if s.status else None,
              "seconds": round((s.end_time or s.start_time or 0) - (s.start_time or 0), 2)} for s in stats]
    return sorted(steps, key=lambda s: -s["seconds"])


def add_batch(zone: Path) -> Path:
    """A new sealed batch at the first site: its newest export again, a day later (a routine re-export)."""
    site = sorted(p for p in zone.iterdir() if p.is_dir())[0]
    newest = sorted(p for p in site.iterdir() if (p / "manifest.json").exists())[-1]
    stamp = dt.datetime.strptime(newest.name, "%Y%m%dT%H%M%SZ") + dt.timedelta(days=1)
    target = site / stamp.strftime("%Y%m%dT%H%M%SZ")
    shutil.copytree(newest, target)
    (target / "manifest.json").unlink()
    seal_batch(target)
    return target


def _as_dict(m: Measurement) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(m).items() if k != "output"}


def bench_size(participants: int, work: Path, incremental: bool) -> SizeResult:
    zone = zone_for(participants, work / "zones")
    data = work / "runs" / str(participants)
    shutil.rmtree(data, ignore_errors=True)
    full = _pod_run(zone, data)
    steps = step_durations(data)
    reference = run_reference(zone, work / "reference" / f"{participants}.duckdb")
    size_mb = sum(p.stat().st_size for p in zone.rglob("*.csv")) / 2**20
    result = SizeResult(participants, SITES.get(participants, 1), round(size_mb, 1), _as_dict(full),
                        _as_dict(reference), round(full.wall_s / reference.wall_s, 2), steps)
    if incremental:
        batch = add_batch(zone)
        try:
            result.incremental = _as_dict(_pod_run(zone, data))
            result.noop = _as_dict(_pod_run(zone, data))
            result.noop_started_dbt = any(s["step"] == "pod_dbt_models" and s["status"] == "SUCCESS"
                                          for s in step_durations(data))
        finally:
            shutil.rmtree(batch)
    return result


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(total_kb / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform(), "date": dt.date.today().isoformat()}


GOALS = (
    ("study-scale full refresh under 20 s", lambda r: r.get(50) and r[50].full["wall_s"], 20.0),
    ("1M full refresh within 2x the reference", lambda r: r.get(1_000_000) and r[1_000_000].ratio_to_reference, 2.0),
    ("1M full refresh under 4 GiB peak memory",
     lambda r: r.get(1_000_000) and r[1_000_000].full["peak_rss_mb"] / 1024, 4.0),
    ("100k incremental under a quarter of the full refresh",
     lambda r: r.get(100_000) and r[100_000].incremental and
     r[100_000].incremental["wall_s"] / r[100_000].full["wall_s"], 0.25),
)


def goals(results: dict[int, SizeResult]) -> list[dict]:
    verdicts = []
    for name, measure, limit in GOALS:
        value = measure(results)
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


def table(results: dict[int, SizeResult], verdicts: list[dict]) -> str:
    lines = ["| participants | sites | CSV MB | full wall s | CPU s | peak RSS MB | reference s | ratio | "
             "incremental s | no-op s |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in sorted(results.items()):
        lines.append(f"| {n:,} | {r.sites} | {r.zone_mb} | {r.full['wall_s']} | {r.full['cpu_s']} | "
                     f"{r.full['peak_rss_mb']:.0f} | {r.reference['wall_s']} | {r.ratio_to_reference} | "
                     f"{r.incremental['wall_s'] if r.incremental else '–'} | {r.noop['wall_s'] if r.noop else '–'} |")
    lines.append("")
    for v in verdicts:
        state = {True: "met", False: f"MISSED ({v.get('missed_by') or 'see value'})", None: "not measured"}[v["met"]]
        lines.append(f"- {v['goal']}: {v['measured']} → {state}")
    return "\n".join(lines)


def main(sizes: list[int], out: Path, work: Path, incremental_at: int = 100_000) -> int:
    results: dict[int, SizeResult] = {}
    for n in sizes:
        print(f"bench: {n:,} participants ...", flush=True)
        results[n] = bench_size(n, work, incremental=(n == incremental_at))
        print(f"bench: {n:,} full {results[n].full['wall_s']} s, reference {results[n].reference['wall_s']} s",
              flush=True)
    verdicts = goals(results)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "results": {str(n): asdict(r) for n, r in results.items()}, "goals": verdicts}
    path = out / f"bench-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(results, verdicts))
    print(f"\nmachine: {report['machine']}\nJSON: {path}")
    return 0


DEFAULT_WORK = PROJECT_ROOT / "data" / "bench"
