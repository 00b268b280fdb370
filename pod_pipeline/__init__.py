"""POD trial data pipeline: landing-zone exports to analysis-ready marts."""

__version__ = "0.1.0"
