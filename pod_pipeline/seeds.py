"""The dbt seeds (dbt_project/seeds), read where Python needs the same reference data as the SQL:
one rule, one home. Ingestion, the quality checks and the analysis read them here, never a copy."""

import csv
import functools

from pod_pipeline.settings import SEEDS_DIR
from pod_pipeline.sql import lit


@functools.cache
def rows(name: str) -> tuple[dict[str, str], ...]:
    """The rows of seed `name` as text, in file order."""
    with (SEEDS_DIR / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


def sql(name: str) -> str:
    """DuckDB SQL reading seed `name` as text columns (for checks that join a profile to it)."""
    return f"read_csv({lit(str(SEEDS_DIR / f'{name}.csv'))}, header = true, all_varchar = true)"
