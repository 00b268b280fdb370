"""Analysis: outcome, time-to-relapse and cost-effectiveness summaries, figures and the study report."""

from pod_pipeline.analysis.assets import (
    cost_effectiveness,
    outcome_summary,
    relapse_summary,
    study_figures,
    study_report,
    study_report_external,
)

analysis_assets = [
    outcome_summary,
    cost_effectiveness,
    relapse_summary,
    study_figures,
    study_report,
    study_report_external,
]
