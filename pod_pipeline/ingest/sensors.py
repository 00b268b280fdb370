"""The new-batch sensor: one refresh run per newly sealed landing batch."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from pod_pipeline.ingest import landing
from pod_pipeline.ingest.batch_manifest import MANIFEST
from pod_pipeline.resources import Warehouse

REFRESH_JOB = "refresh"  # defined by the code location (pod_pipeline/automation.py)


def batch_key(batch_dir: Path) -> str:
    """site/export_id@<manifest hash>: a batch sealed again with another manifest arrives anew."""
    digest = hashlib.sha256((batch_dir / MANIFEST).read_bytes()).hexdigest()[:16]
    return f"{batch_dir.parent.name}/{batch_dir.name}@{digest}"


@dg.sensor(
    job_name=REFRESH_JOB, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_batch_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse) -> dg.SensorResult:
    """One refresh run per newly sealed landing batch; unsealed ones (no manifest.json yet) wait."""
    found = landing.discover(warehouse.settings.landing_dir)
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    new = [(batch, batch_key(batch)) for batch in found.sealed if batch_key(batch) not in seen]
    if not new:
        waiting = f"{len(found.sealed)} sealed seen, {len(found.unsealed)} unsealed waiting"
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new sealed batch ({waiting})"))
    # The run key makes Dagster refuse a second run for the same batch even if the cursor is lost.
    requests = [
        dg.RunRequest(
            run_key=key,
            tags={"pod/batch": f"{batch.parent.name}/{batch.name}", "pod/trigger": "new_batch"},
        )
        for batch, key in new
    ]
    return dg.SensorResult(
        run_requests=requests, cursor=json.dumps(sorted(seen | {k for _, k in new}))
    )
