"""What quality brings to the code location: the GX suites as checks, and the site reports."""

import dagster as dg

from pod_pipeline.quality import quality_assets, quality_checks

defs = dg.Definitions(assets=quality_assets, asset_checks=quality_checks)
