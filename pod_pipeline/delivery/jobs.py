"""The weekly delivery to the national trial: its job and its Monday schedule."""

import dagster as dg

from pod_pipeline.ingest.assets import FULL_REFRESH

TIMEZONE = "Europe/London"

weekly_delivery_job = dg.define_asset_job(
    "weekly_delivery",
    selection=dg.AssetSelection.all(),
    description="Rebuild and publish everything, then write the week's delivery to the trial.",
    executor_def=dg.in_process_executor,
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
