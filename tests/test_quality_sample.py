"""The quality checks on the bundled sample, through the whole pipeline: no error-level failure."""

import csv
from pathlib import Path

import pytest

from pod_pipeline.quality import quality_checks


@pytest.mark.slow
def test_sample_passes_every_error_level_check(sample_run) -> None:
    summary, data = sample_run
    ours = {(key.asset_key.to_user_string(), key.name) for check in quality_checks for key in check.check_keys}
    # Every GX check of ours was evaluated by the run, and no check of any kind failed at error level.
    evaluated = {(asset, name): (passed, severity) for asset, name, passed, severity in summary.checks}
    assert ours <= set(evaluated), sorted(ours - set(evaluated))
    errors = sorted(check for check, (passed, severity) in evaluated.items()
                    if not passed and severity == "ERROR")
    assert errors == []
    assert summary.success and not summary.failed_steps and not summary.skipped_steps
    reports = Path(data) / "warehouse" / "reports" / "sites"
    # Each site is sent only what its protocol schedules: kmpt (the evaluation) never month 12 or
    # 24; slam (the national trial) its month 12 visits too, month 24 not yet due on the 25th.
    evaluation = {"Baseline", "Month 3", "Month 6"}
    for site, allowed in (("kmpt", evaluation), ("slam", evaluation | {"Month 12"})):
        with (reports / site / "missing_assessments_2026-11-25.csv").open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert rows and {row["Timepoint"] for row in rows} <= allowed, site
    assert "Month 12" in {row["Timepoint"] for row in rows}
