"""What runs by itself: new-batch sensor, daily and weekly schedules, freshness, run recovery.

Automation only asks for runs; the instance (dagster.yaml) queues them one at a time, and every
run holds the working database's lock (pod_pipeline/worklock.py) for its whole life.
"""

import datetime as dt
import hashlib
import json
import warnings
from pathlib import Path

import dagster as dg

from pod_pipeline.delivery.assets import DELIVERY_KEY, PUBLISHED_KEY
from pod_pipeline.delivery.recovery import recover_interrupted_runs
from pod_pipeline.ingest import landing
from pod_pipeline.ingest.manifest import MANIFEST
from pod_pipeline.resources import Warehouse

REFRESH_JOB = "refresh"
LANDING_OP = "ingest__landing_batches"  # config is keyed by op name: ["ingest", "landing_batches"]
TIMEZONE = "Europe/London"
FULL_REFRESH = {"ops": {LANDING_OP: {"config": {"force": True}}}}
# The refresh job rebuilds and publishes; only weekly_delivery (or a hand-picked run) delivers.
REFRESH_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.assets(DELIVERY_KEY)

weekly_delivery_job = dg.define_asset_job(
    "weekly_delivery",
    selection=dg.AssetSelection.all(),
    description="Rebuild and publish everything, then write the week's delivery to the trial.",
    executor_def=dg.in_process_executor,
)


def batch_key(batch_dir: Path) -> str:
    """site/export_id@<manifest hash>: a batch sealed again with another manifest arrives anew."""
    digest = hashlib.sha256((batch_dir / MANIFEST).read_bytes()).hexdigest()[:16]
    return f"{batch_dir.parent.name}/{batch_dir.name}@{digest}"


@dg.sensor(
    job_name=REFRESH_JOB, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_batch_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse) -> dg.SensorResult:
    """One refresh run per newly sealed landing batch; unsealed ones (no manifest.json yet) wait."""
    found = landing.discover(warehouse.settings.landing_dir)
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    new = [(batch, batch_key(batch)) for batch in found.sealed if batch_key(batch) not in seen]
    if not new:
        waiting = f"{len(found.sealed)} sealed seen, {len(found.unsealed)} unsealed waiting"
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new sealed batch ({waiting})"))
    # The run key makes Dagster refuse a second run for the same batch even if the cursor is lost.
    requests = [
        dg.RunRequest(
            run_key=key,
            tags={"pod/batch": f"{batch.parent.name}/{batch.name}", "pod/trigger": "new_batch"},
        )
        for batch, key in new
    ]
    return dg.SensorResult(
        run_requests=requests, cursor=json.dumps(sorted(seen | {k for _, k in new}))
    )


daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_full_refresh",
    job_name=REFRESH_JOB,
    cron_schedule="0 5 * * *",
    execution_timezone=TIMEZONE,
    run_config=FULL_REFRESH,
    tags={"pod/trigger": "daily_full_refresh"},
    default_status=dg.DefaultScheduleStatus.RUNNING,
    # Forced: even with nothing new, timepoints fall due as the reference date moves on.
    description="Every day at 05:00 UK time: rebuild and publish everything.",
)

weekly_delivery_schedule = dg.ScheduleDefinition(
    name="weekly_delivery",
    job=weekly_delivery_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=TIMEZONE,
    # Forced: with nothing new a plain run skips everything downstream, the delivery included.
    run_config=FULL_REFRESH,
    tags={"pod/trigger": "weekly_delivery"},
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays at 06:00 UK time: rebuild, publish and deliver to the national trial.",
)

# The marts are rebuilt daily: one missed refresh warns, two fail.
MARTS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=50), warn_window=dt.timedelta(hours=26)
)
# The weekly delivery is due between 06:00 and 09:00 every Monday, UK time.
DELIVERY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 9 * * 1", lower_bound_delta=dt.timedelta(hours=3), timezone=TIMEZONE
)


def apply_freshness(defs: dg.Definitions) -> dg.Definitions:
    """The code location with freshness policies on every mart, the publication and the delivery."""
    marts = dg.AssetSelection.key_prefixes(["marts"]) | dg.AssetSelection.assets(PUBLISHED_KEY)
    with warnings.catch_warnings():
        # map_resolved_asset_specs is a preview API in 1.13; the policies themselves are stable.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        defs = defs.map_resolved_asset_specs(
            selection=marts, func=lambda spec: dg.apply_freshness_policy(spec, MARTS_FRESHNESS)
        )
        return defs.map_resolved_asset_specs(
            selection=dg.AssetSelection.assets(DELIVERY_KEY),
            func=lambda spec: dg.apply_freshness_policy(spec, DELIVERY_FRESHNESS),
        )


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def interrupted_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """While the UI runs: fail runs whose process was killed, so they stop blocking the queue."""
    recovered = recover_interrupted_runs(context.instance)
    return dg.SkipReason(
        f"marked {len(recovered)} interrupted run(s) failed: {', '.join(recovered)}"
        if recovered
        else "no interrupted run"
    )


jobs = [weekly_delivery_job]
schedules = [daily_refresh_schedule, weekly_delivery_schedule]
sensors = [new_batch_sensor, interrupted_run_sensor]
