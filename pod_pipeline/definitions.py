"""The Dagster code location: every asset, check, job, schedule, sensor and resource, gathered once."""

import dagster as dg

from pod_pipeline.ingest.assets import audit_trail, landing_batches, raw_assets
from pod_pipeline.ingest.checks import ingest_checks
from pod_pipeline.resources import Warehouse

all_assets = [landing_batches, *raw_assets, audit_trail]

refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.all(),
    description="Load new landing batches and rebuild every table, check and figure.",
    executor_def=dg.in_process_executor,
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=ingest_checks,
    jobs=[refresh_job],
    resources={"warehouse": Warehouse()},
)
