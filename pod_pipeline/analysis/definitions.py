"""What analysis brings to the code location: summaries, figures and the study reports."""

import dagster as dg

from pod_pipeline.analysis import analysis_assets

defs = dg.Definitions(assets=analysis_assets)
