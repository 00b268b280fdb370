"""Shared fixtures: every test that builds anything gets its own data folder."""

from pathlib import Path

import pytest


@pytest.fixture
def pod_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the whole pipeline (warehouse, Dagster instance) at a temporary folder."""
    data = tmp_path / "data"
    monkeypatch.setenv("POD_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    for name in ("POD_WAREHOUSE_DIR", "POD_LANDING_DIR", "POD_PSEUDONYM_KEY", "POD_ENV", "POD_VALUE_SET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POD_REFERENCE_DATE", "2026-11-25")
    return data
