"""The code location loads, and its graph is what we meant: a rename shows up as a diff here.

Regenerate the snapshot after an intended change with:
    POD_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/test_definitions.py
"""

import json
import os
from pathlib import Path

import dagster as dg

from pod_pipeline.analysis.definitions import HAS_TIME_TO_RELAPSE
from pod_pipeline.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
EXPECTED_GROUPS = {"ingestion", "dbt_seeds", "dbt_staging", "dbt_intermediate", "dbt_marts", "quality",
                   "analysis", "delivery"}


def graph() -> dict:
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    return {
        "assets": sorted(f"{graph.get(key).group_name}: {key.to_user_string()}"
                         for key in graph.materializable_asset_keys),
        "checks": sorted(f"{key.asset_key.to_user_string()} :: {key.name}" for key in graph.asset_check_keys),
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        "schedules": sorted(f"{s.name}: {s.cron_schedule} {s.execution_timezone}"
                            for s in repository.schedule_defs),
        "sensors": sorted(s.name for s in repository.sensor_defs),
    }


def test_definitions_load_with_every_group() -> None:
    dg.Definitions.validate_loadable(defs)
    groups = {line.split(":")[0] for line in graph()["assets"]}
    assert groups == EXPECTED_GROUPS


def test_graph_matches_the_snapshot() -> None:
    current = graph()
    if os.environ.get("POD_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_marts_of_the_contract_are_assets() -> None:
    contract = {"participants", "participant_timepoints", "outcome_scores", "outcome_summary", "carer_timepoints",
                "network_meetings", "network_meeting_summary", "completeness", "participant_flow",
                "service_use_costs", "cost_effectiveness", "cost_effectiveness_summary",
                "cost_effectiveness_acceptability", "missing_assessments", "quarantine"}
    keys = {line.split(": ", 1)[1] for line in graph()["assets"]}
    assert {f"marts/{name}" for name in contract} <= keys


def test_relapse_analysis_joins_the_graph_once_its_mart_is_built() -> None:
    keys = {line.split(": ", 1)[1] for line in graph()["assets"]}
    assert ("marts/relapse_summary" in keys) == HAS_TIME_TO_RELAPSE
    assert ("marts/time_to_relapse" in keys) == HAS_TIME_TO_RELAPSE


def test_loading_the_definitions_leaves_the_heavy_libraries_to_the_steps_that_use_them() -> None:
    """Every process loading the definitions and the runner (the UI, each `pod run`, each test)
    would pay for them; a run imports them in the background where it waits (preload.py)."""
    import subprocess
    import sys

    heavy = ("scipy", "statsmodels", "matplotlib", "great_expectations", "dagster_postgres")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, json, pod_pipeline.definitions, pod_pipeline.app.runner; "
                               f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"],
        capture_output=True, text=True, check=True).stdout
    assert json.loads(loaded) == []
