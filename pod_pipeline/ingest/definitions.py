"""What ingestion brings to the code location: its assets, checks and the new-batch sensor."""

import dagster as dg

from pod_pipeline.ingest.assets import audit_trail, landing_batches, raw_assets
from pod_pipeline.ingest.checks import ingest_checks
from pod_pipeline.ingest.sensors import new_batch_sensor

defs = dg.Definitions(assets=[landing_batches, *raw_assets, audit_trail], asset_checks=ingest_checks,
                      sensors=[new_batch_sensor])
