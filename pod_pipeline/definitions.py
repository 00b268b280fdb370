"""The Dagster code location: every asset, check, job, schedule, sensor and resource, gathered once."""

import dagster as dg

from pod_pipeline.analysis import analysis_assets
from pod_pipeline.automation import REFRESH_SELECTION, apply_freshness, jobs, schedules, sensors
from pod_pipeline.delivery.assets import delivery_assets
from pod_pipeline.ingest.assets import audit_trail, landing_batches, raw_assets
from pod_pipeline.ingest.checks import ingest_checks
from pod_pipeline.quality import quality_assets, quality_checks
from pod_pipeline.resources import Warehouse
from pod_pipeline.transform.assets import dbt_resource, pod_dbt_models

refresh_job = dg.define_asset_job(
    "refresh",
    selection=REFRESH_SELECTION,
    description="Load new landing batches, rebuild and check every table, figure and report, publish.",
    executor_def=dg.in_process_executor,
)

defs = apply_freshness(dg.Definitions(
    assets=[landing_batches, *raw_assets, audit_trail, pod_dbt_models, *quality_assets, *analysis_assets,
            *delivery_assets],
    asset_checks=[*ingest_checks, *quality_checks],
    jobs=[refresh_job, *jobs],
    schedules=schedules,
    sensors=sensors,
    resources={"warehouse": Warehouse(), "dbt": dbt_resource()},
    # One process, one writer: also for materialisations started from the UI outside a job.
    executor=dg.in_process_executor,
))
