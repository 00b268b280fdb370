"""What analysis brings to the code location: summaries, figures and the study reports."""

import dagster as dg

from pod_pipeline.analysis import analysis_assets, relapse_summary
from pod_pipeline.analysis.assets import TIME_TO_RELAPSE
from pod_pipeline.transform.assets import pod_dbt_models

# The time-to-relapse analysis joins the graph once dbt builds its input: without the mart, a run
# of the refresh job would fail on a table that cannot exist yet.
HAS_TIME_TO_RELAPSE = TIME_TO_RELAPSE in {spec.key for spec in pod_dbt_models.specs}

defs = dg.Definitions(assets=[asset for asset in analysis_assets
                              if HAS_TIME_TO_RELAPSE or asset is not relapse_summary])
