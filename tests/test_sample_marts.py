"""The bundled sample's marts are exactly what they were: refactoring and speed work change no row.

The snapshot holds, per mart, its row count and a SHA-256 of its sorted rows (run timestamps and
ids left out; floating-point values to 12 significant digits, see `test_reliability.mart_contents`).
Regenerate it only after an intended change of the marts, with:
    POD_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/test_sample_marts.py
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
from test_reliability import mart_contents

pytestmark = pytest.mark.slow

SNAPSHOT = Path(__file__).parent / "snapshots" / "sample_marts.json"


def marts_digest(work_db: Path) -> dict[str, dict]:
    return {table: {"rows": len(rows), "sha256": hashlib.sha256(repr(rows).encode()).hexdigest()}
            for table, rows in mart_contents(work_db).items()}


def test_the_sample_marts_are_what_they_were(sample_work_db: Path) -> None:
    digest = marts_digest(sample_work_db)
    if os.environ.get("POD_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(digest, indent=2, sort_keys=True) + "\n")
    assert digest == json.loads(SNAPSHOT.read_text())
