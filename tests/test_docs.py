"""The README stays true to the code: every quarantine reason and every setting is documented."""

import re
from pathlib import Path

from pod_pipeline.ingest.reasons import REASONS
from pod_pipeline.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_quarantine_reason_has_a_row_in_the_readme_table() -> None:
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert set(REASONS) <= rows, set(REASONS) - rows


def test_every_setting_the_pipeline_reads_is_documented() -> None:
    source = (PROJECT_ROOT / "pod_pipeline" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"((?:POD|DAGSTER)_[A-Z_]+)"', source))
    assert names, "no settings found"
    missing = {name for name in names if name not in README}
    assert not missing, missing


def test_the_two_setup_commands_are_the_makefile_targets_ci_runs() -> None:
    assert "make run" in README and "make test" in README
    assert "make test" in Path(PROJECT_ROOT / ".ci" / "run").read_text()
