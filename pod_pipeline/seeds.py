"""The dbt seeds (dbt_project/seeds), read where Python needs the same reference data as the SQL:
one rule, one home. Ingestion, the quality checks and the analysis read them here, never a copy."""

import csv
import functools
from collections.abc import Mapping

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


def site_protocol(site: str, overrides: Mapping[str, str]) -> str:
    """The protocol a site follows: the setting's override (POD_SITE_PROTOCOLS), else seed
    site_protocols, else the default protocol. The dbt models apply the same order."""
    if site in overrides:
        return overrides[site]
    for row in rows("site_protocols"):
        if row["site"] == site:
            return row["protocol"]
    return next(row["protocol"] for row in rows("protocols") if row["is_default"] == "true")
