"""Quality: the GX suites of expectations/ as blocking asset checks; site completeness reports."""

from pod_pipeline.quality.checks import quality_checks
from pod_pipeline.quality.reports import site_completeness_reports

quality_assets = [site_completeness_reports]

__all__ = ["quality_assets", "quality_checks"]
