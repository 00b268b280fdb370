"""The code location's own automation: the refresh job, its daily schedule and freshness policies.

Each concern brings its own sensors and jobs (the new-batch sensor with ingestion, the weekly
delivery with delivery); this module holds what spans them all. Automation only asks for runs:
the instance (app/dagster.yaml) queues them one at a time, and every run holds the working
database's lock (pod_pipeline/worklock.py) for its whole life.
"""

import datetime as dt
import warnings

import dagster as dg

from pod_pipeline.delivery.assets import DELIVERY_KEY, PUBLISHED_KEY
from pod_pipeline.delivery.jobs import TIMEZONE
from pod_pipeline.ingest.sensors import REFRESH_JOB

# The refresh job rebuilds and publishes; only weekly_delivery (or a hand-picked run) delivers.
refresh_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(DELIVERY_KEY),
    description="Load new landing batches, rebuild and check every table, figure and report, publish.",
    executor_def=dg.in_process_executor,
)

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_job,
    cron_schedule="0 5 * * *",
    execution_timezone=TIMEZONE,
    tags={"pod/trigger": "daily_refresh"},
    default_status=dg.DefaultScheduleStatus.RUNNING,
    # Not forced: the reference date moves on every day, so timepoints fall due even with nothing
    # new; the run rebuilds for every site only the models that depend on the date, and the sites
    # whose inputs changed (transform/partitions.py). weekly_delivery rebuilds everything.
    description="Every day at 05:00 UK time: load what is new, rebuild what changed or depends on "
                "the new reference date, check and publish.",
)

# The marts are rebuilt daily: one missed refresh warns, two fail.
MARTS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=50), warn_window=dt.timedelta(hours=26)
)
# The weekly delivery is due between 06:00 and 09:00 every Monday, UK time.
DELIVERY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 9 * * 1", lower_bound_delta=dt.timedelta(hours=3), timezone=TIMEZONE
)

defs = dg.Definitions(jobs=[refresh_job], schedules=[daily_refresh_schedule])


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
