"""Shared fixtures: every test that builds anything gets its own data folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import scheduling


@pytest.fixture
def pod_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the whole pipeline (warehouse, Dagster instance) at a temporary folder."""
    data = tmp_path / "data"
    monkeypatch.setenv("POD_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    for name in ("POD_WAREHOUSE_DIR", "POD_LANDING_DIR", "POD_PSEUDONYM_KEY", "POD_ENV", "POD_VALUE_SET",
                 "POD_SITE_PROTOCOLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POD_REFERENCE_DATE", "2026-11-25")
    return data


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory):
    """One `pod run` of the bundled sample (reference date 2026-11-25) in a data folder of its
    own, shared by every test that reads a plain single run: its RunSummary (with every check's
    verdict) and its data folder, as `(summary, data)`."""
    from pod_pipeline.app.runner import execute
    from pod_pipeline.settings import SAMPLE_LANDING_DIR

    data = tmp_path_factory.mktemp("sample-run") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POD_DATA_DIR", str(data))
        patch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
        patch.setenv("POD_LANDING_DIR", str(SAMPLE_LANDING_DIR))
        patch.setenv("POD_REFERENCE_DATE", "2026-11-25")
        for name in ("POD_WAREHOUSE_DIR", "POD_PSEUDONYM_KEY", "POD_ENV", "POD_VALUE_SET", "POD_SITE_PROTOCOLS"):
            patch.delenv(name, raising=False)
        summary = execute(quiet=True)
    assert summary.success, summary.errors
    return summary, data


@pytest.fixture(scope="session")
def sample_work_db(sample_run) -> Path:
    """The working database of the shared sample run (`sample_run`)."""
    return sample_run[1] / "warehouse" / "pod_work.duckdb"


@pytest.fixture(scope="session")
def story(tmp_path_factory: pytest.TempPathFactory):
    """The shared story of full pipeline runs (tests/scenario.py), told once per test session."""
    import scenario

    return scenario.tell(tmp_path_factory.mktemp("story"))


@pytest.fixture(autouse=True, scope="session")
def no_shared_deployment() -> Iterator[None]:
    """A developer's shared deployment is never the tests': PostgreSQL is reached only by the tests
    that start a server of their own (tests/postgres_server.py) and name it themselves."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("POD_DAGSTER_POSTGRES_URL", "POD_PUBLISH_POSTGRES_URL"):
            patch.delenv(name, raising=False)
        yield


# Tests that share expensive fixtures share an xdist worker (`--dist loadgroup`): those reading a
# session fixture's pipeline runs one worker per story, and a module's tests that share a
# module-scoped fixture (the messy zone's two runs, a dbt build, a PostgreSQL server) one worker per
# module, so that no fixture is built once per worker.
SHARED_RUNS = {"story": "story", "sample_run": "sample_run", "sample_work_db": "sample_run"}


def _worker_group(item: pytest.Item) -> str | None:
    runs = sorted({SHARED_RUNS[name] for name in getattr(item, "fixturenames", ()) if name in SHARED_RUNS})
    if runs:
        return "+".join(runs)
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(d.scope == "module" for defs in definitions.values() for d in defs):
        return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under xdist each worker collects; the slow tier's longest scopes are split between the
    # workers beforehand, one group per worker's share (tests/scheduling.py).
    workers = getattr(config, "workerinput", {}).get("workercount", 0)
    shares = scheduling.shares(scheduling.MEASURED_SECONDS, workers) if workers > 1 else {}
    for item in items:
        group = _worker_group(item)
        share = shares.get(scheduling.scope_key(item.nodeid, group))
        if share is not None:
            group = scheduling.SHARE_GROUP.format(share)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
