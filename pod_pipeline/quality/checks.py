"""Asset checks backed by the GX suites in expectations/: a DuckDB profile, a GX verdict, a result.

Every check is blocking: a `critical` expectation that fails gives severity ERROR and stops the
assets downstream of the checked one in the same run; `warning` expectations give WARN, which
Dagster shows without blocking. expectations/README.md says what each failure means and what to do.
"""

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from pod_pipeline.ingest import drift
from pod_pipeline.ingest.assets import RAW_KEYS
from pod_pipeline.ingest.specs import SPECS
from pod_pipeline.markdown import markdown_table
from pod_pipeline.quality import identifier_scan, profiles
from pod_pipeline.quality.suites import Validation, check_result, validate, validate_together
from pod_pipeline.resources import Warehouse
from pod_pipeline.sql import table_exists
from pod_pipeline.transform.assets import pod_dbt_models

POOL = "duckdb_writer"
SCORE_MARTS = ("participant_timepoints", "outcome_scores", "carer_timepoints")
DRIFT_FILES = drift.FILES
# Every mart dbt builds. The Python marts (outcome_summary, cost_effectiveness_summary and
# _acceptability) are arm-level aggregates of these: what they could leak, these would hold.
DBT_MARTS = tuple(sorted(spec.key.path[-1] for spec in pod_dbt_models.specs
                         if spec.group_name == "dbt_marts"))


def mart(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def _table(frame: pd.DataFrame, limit: int = 60) -> dg.MetadataValue:
    """A profile as a markdown table (small by construction: one row per group)."""
    rows = frame.to_numpy().tolist()
    return dg.MetadataValue.md(markdown_table(list(frame.columns), rows, limit))


def _docs_dir(warehouse: Warehouse) -> Path:
    return warehouse.settings.warehouse_dir / "gx_docs"


def _verdict(context: dg.AssetCheckExecutionContext, warehouse: Warehouse, suite: str,
             profile: pd.DataFrame, metadata: Mapping[str, Any],
             parameters: Mapping[str, Any] | None = None,
             name: str | None = None) -> dg.AssetCheckResult:
    """Validate the profile with the suite (Data Docs in <warehouse>/gx_docs) as a check result."""
    validation = validate(context.run.run_id, _docs_dir(warehouse), suite, profile, parameters, name)
    return check_result(validation, metadata)


@dg.asset_check(
    asset=mart("completeness"), name="completeness_of_due_assessments", blocking=True, pool=POOL,
    description="Share of due assessments scored per site × arm × timepoint × instrument: below "
                "settings.completeness_warn_below warns, below completeness_error_below blocks "
                "(groups with at least completeness_min_due due assessments).",
)
def completeness_of_due_assessments(context: dg.AssetCheckExecutionContext,
                                    warehouse: Warehouse) -> dg.AssetCheckResult:
    settings = warehouse.settings
    with warehouse.connect(read_only=True) as con:
        profile = profiles.completeness(con)
    # A group with one or two due assessments says little about a site: it can warn, not block.
    judged = profile["expected"] >= settings.completeness_min_due
    profile["share_scored_judged"] = profile["share_scored"].where(judged)
    thresholds = {"completeness_warn_below": settings.completeness_warn_below,
                  "completeness_error_below": settings.completeness_error_below}
    shares = profile["share_scored"]
    return _verdict(context, warehouse, "completeness_of_due_assessments", profile, {
        **thresholds,
        "groups": len(profile),
        "groups_below_warn": int((shares < settings.completeness_warn_below).sum()),
        "groups_below_error": int((profile["share_scored_judged"] < settings.completeness_error_below).sum()),
        "completeness_min_due": settings.completeness_min_due,
        "assessments_due": int(profile["expected"].sum()),
        "assessments_scored": int(profile["scored"].sum()),
        "completeness": _table(profile),  # worst groups first
    }, parameters=thresholds)


@dg.asset_check(
    asset=mart("participants"), name="baseline_present", blocking=True, pool=POOL,
    description="Every participant whose baseline window has closed has a baseline (warning, "
                "with the study ids to chase).",
)
def baseline_present(context: dg.AssetCheckExecutionContext,
                     warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        profile = profiles.baseline(con)
        missing = profiles.participants_without_baseline(con)
    return _verdict(context, warehouse, "baseline_present", profile, {
        "baseline_due": int(profile["baseline_due"].sum()),
        "participants_without_baseline": int(profile["participants_without_baseline"].sum()),
        "by_site": _table(profile),
        "sample_without_baseline": dg.MetadataValue.md(
            markdown_table(["site", "participant_id"], missing)),
    })


@dg.asset_check(
    asset=mart("participant_timepoints"), name="visit_window_compliance", blocking=True,
    pool=POOL,
    description="Share of visits inside their timepoint's window per site × timepoint (warning).",
)
def visit_window_compliance(context: dg.AssetCheckExecutionContext,
                            warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        profile = profiles.visit_windows(con)
    return _verdict(context, warehouse, "visit_window_compliance", profile, {
        "visits": int(profile["visits"].sum()),
        "visits_in_window": int(profile["in_window"].sum()),
        "compliance": _table(profile),
    })


# The marts' profiles and validations for each (run, suite) validated across marts: the first of
# the suite's checks in a run computes every mart's, the others take theirs. All these marts are
# built by the one dbt step every such check runs after, so nothing they hold changes in between.
_together: dict[tuple[str, str], dict[str, tuple[pd.DataFrame, Validation]]] = {}


# Profiles of some marts, on one connection to the working database.
ProfilesOf = Callable[[duckdb.DuckDBPyConnection, list[str]], dict[str, pd.DataFrame]]


def _validated_with_the_other_marts(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, suite: str, table: str,
    tables: tuple[str, ...], profiles_of: ProfilesOf, read_only: bool = True,
) -> tuple[pd.DataFrame, Validation]:
    """marts.<table>'s profile and its validation, done once in this run for all of `tables`
    (`read_only` False: `profiles_of` also writes to the working database).

    A mart missing when the first check ran is profiled and validated on its own, as a check
    that is not shared would be.
    """
    run_id, docs_dir = context.run.run_id, _docs_dir(warehouse)
    key = (run_id, suite)
    if key not in _together:
        for stale in [k for k in _together if k[0] != run_id]:
            del _together[stale]  # one run at a time per process
        with warehouse.connect(read_only=read_only) as con:
            profiles = profiles_of(con, [name for name in tables if table_exists(con, "marts", name)])
        validations = validate_together(run_id, docs_dir, suite, profiles, "mart") if profiles else {}
        _together[key] = {name: (profiles[name], validations[name]) for name in profiles}
    if table in _together[key]:
        return _together[key][table]
    with warehouse.connect(read_only=read_only) as con:
        profile = profiles_of(con, [table])[table]
    alone = validate_together(run_id, docs_dir, suite, {table: profile}, "mart", f"{suite}_{table}")
    return profile, alone[table]


# Marts profiled at once: DuckDB runs each query without holding the GIL, so on two cores two
# marts' scans overlap (the identifier scans' 215 small queries at study scale: 0.9 s -> 0.55 s).
PROFILED_AT_ONCE = 2


def _on_cursors(profile_of: Callable[[duckdb.DuckDBPyConnection, str], pd.DataFrame]) -> ProfilesOf:
    """Each table's profile, PROFILED_AT_ONCE at a time, each on a cursor of its own (a cursor is
    a connection of its own to the same database, with its own temporary tables)."""
    def profiles(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, pd.DataFrame]:
        def profile(table: str) -> pd.DataFrame:
            cursor = con.cursor()
            try:
                return profile_of(cursor, table)
            finally:
                cursor.close()

        with ThreadPoolExecutor(PROFILED_AT_ONCE) as pool:
            return dict(zip(tables, pool.map(profile, tables), strict=True))

    return profiles


def _identifier_profiles(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, pd.DataFrame]:
    """Each mart's identifier scan, of every row or of the rows the last build rebuilt
    (identifier_scan.scopes); what was found clean is kept for the next run's scan."""
    births = identifier_scan.births_digest(con)
    scopes = identifier_scan.scopes(con, tables, births)
    profiles = _on_cursors(lambda cursor, table: identifier_scan.identifiers(cursor, table, scopes[table]))(
        con, tables)
    identifier_scan.record_clean(con, profiles, births)
    return profiles


def _scores_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=mart(table), name="scores_within_instrument_ranges", blocking=True, pool=POOL,
        description="Every score within its scale's range and on its scale's values, as "
                    "seeds/instrument_scales.csv (and score_conversions.csv) define them.",
    )
    def _check(context: dg.AssetCheckExecutionContext,
               warehouse: Warehouse) -> dg.AssetCheckResult:
        suite = "scores_within_instrument_ranges"
        profile, validation = _validated_with_the_other_marts(
            context, warehouse, suite, table, SCORE_MARTS, _on_cursors(profiles.scores))
        failing = int(profile["n_out_of_range"].sum() + profile["n_not_allowed"].sum())
        sample = []
        if failing:
            with warehouse.connect(read_only=True) as con:
                sample = profiles.failing_scores(con, table)
        return check_result(validation, {
            "scores_checked": int(profile["n"].sum()),
            "scores_out_of_range": int(profile["n_out_of_range"].sum()),
            "scores_not_allowed": int(profile["n_not_allowed"].sum()),
            "by_scale": _table(profile),
            "sample_failing": dg.MetadataValue.md(markdown_table(
                ["participant_id", "timepoint", "scale", "value", "problem"], sample)),
        })

    _check.__name__ = f"scores_within_instrument_ranges_{table}"
    return _check


def _identifiers_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=mart(table), name="no_direct_identifiers", blocking=True, pool=POOL,
        description="No column holds an NHS number or a participant's date of birth (counts "
                    "per column, never a value).",
    )
    def _check(context: dg.AssetCheckExecutionContext,
               warehouse: Warehouse) -> dg.AssetCheckResult:
        profile, validation = _validated_with_the_other_marts(
            context, warehouse, "no_direct_identifiers", table, DBT_MARTS, _identifier_profiles,
            read_only=False)
        hits = profile[(profile["nhs_numbers"] > 0) | (profile["dates_of_birth"] > 0)]
        return check_result(validation, {
            "columns_scanned": len(profile),
            "rows_scanned": profile.attrs["rows_scanned"],
            "rows_scanned_are": profile.attrs["scope"],
            "rows_with_nhs_number": int(profile["nhs_numbers"].sum()),
            "rows_with_date_of_birth": int(profile["dates_of_birth"].sum()),
            "columns_with_identifiers": _table(hits),
        })

    _check.__name__ = f"no_direct_identifiers_{table}"
    return _check


def _export_drift_check(file: str) -> dg.AssetChecksDefinition:
    table = SPECS[file].table

    @dg.asset_check(
        asset=RAW_KEYS[file], name="export_drift", blocking=True, pool=POOL,
        description=f"Each site's newest {file} against its previous export: participants or "
                    f"records dropped beyond tolerance, or a mass change, block; many changed "
                    f"records warn (counts only).",
    )
    def _check(context: dg.AssetCheckExecutionContext,
               warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect(read_only=True) as con:
            profile = drift.current(con, file)
            single = drift.single_export_sites(con, file)
        return _verdict(context, warehouse, "export_drift", profile, {
            "sites_compared": len(profile),
            "sites_with_one_export": single,
            "records_dropped": int(profile["records_dropped"].sum()),
            "records_changed": int(profile["records_changed"].sum()),
            "participants_dropped": int(profile["participants_dropped"].sum()),
            "by_site": _table(profile),
        }, name=f"export_drift_{table}")

    _check.__name__ = f"export_drift_{table}"
    return _check


scores_checks = [_scores_check(table) for table in SCORE_MARTS]
identifier_checks = [_identifiers_check(table) for table in DBT_MARTS]
export_drift_checks = [_export_drift_check(file) for file in DRIFT_FILES]

quality_checks = [
    completeness_of_due_assessments,
    baseline_present,
    visit_window_compliance,
    *scores_checks,
    *identifier_checks,
    *export_drift_checks,
]
