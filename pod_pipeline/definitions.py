"""The Dagster code location: each concern's definitions merged, and cross-cutting policy applied once."""

import dagster as dg

from pod_pipeline import automation
from pod_pipeline.analysis import definitions as analysis
from pod_pipeline.delivery import definitions as delivery
from pod_pipeline.ingest import definitions as ingest
from pod_pipeline.quality import definitions as quality
from pod_pipeline.resources import Warehouse
from pod_pipeline.transform import definitions as transform

defs = automation.apply_freshness(dg.Definitions.merge(
    ingest.defs,
    transform.defs,
    quality.defs,
    analysis.defs,
    delivery.defs,
    automation.defs,
    dg.Definitions(
        resources={"warehouse": Warehouse()},
        # One process, one writer: also for materialisations started from the UI outside a job.
        executor=dg.in_process_executor,
    ),
))
