"""What delivery brings to the code location: publication, deliveries and the weekly delivery."""

import dagster as dg

from pod_pipeline.delivery.assets import delivery_assets
from pod_pipeline.delivery.jobs import weekly_delivery_job, weekly_delivery_schedule

defs = dg.Definitions(assets=delivery_assets, jobs=[weekly_delivery_job],
                      schedules=[weekly_delivery_schedule])
