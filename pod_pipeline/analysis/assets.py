"""Dagster assets of the analysis: outcome and cost-effectiveness summaries, figures and reports."""

import base64
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from pod_pipeline import __version__
from pod_pipeline.analysis import disclosure, economics, figures, memo, report, stats, survival, tables
from pod_pipeline.markdown import markdown_table
from pod_pipeline.resources import Warehouse

GROUP = "analysis"
# Every asset here opens the working database, which one process at a time may hold.
POOL = "duckdb_writer"
OUTCOME_SUMMARY = dg.AssetKey(["marts", "outcome_summary"])
CE_SUMMARY = dg.AssetKey(["marts", "cost_effectiveness_summary"])
CE_ACCEPTABILITY = dg.AssetKey(["marts", "cost_effectiveness_acceptability"])
CE_REPLICATES = dg.AssetKey(["analysis", "cost_effectiveness_replicates"])
RELAPSE_SUMMARY = dg.AssetKey(["marts", "relapse_summary"])
RELAPSE_CURVE = dg.AssetKey(["analysis", "relapse_curve"])
RELAPSE_AT_RISK = dg.AssetKey(["analysis", "relapse_at_risk"])
TIME_TO_RELAPSE = dg.AssetKey(["marts", "time_to_relapse"])
FIGURES = dg.AssetKey(["analysis", "figures"])
FIGURE_SOURCES = [
    OUTCOME_SUMMARY, CE_SUMMARY, CE_ACCEPTABILITY, CE_REPLICATES, RELAPSE_SUMMARY, RELAPSE_CURVE, RELAPSE_AT_RISK,
    dg.AssetKey(["marts", "participant_flow"]), dg.AssetKey(["marts", "completeness"]),
]
REPORT_SOURCES = [*FIGURE_SOURCES, dg.AssetKey(["raw", "load_ledger"])]
CE_INPUT = [dg.AssetKey(["marts", "cost_effectiveness"])]


Results = dict[str, dict[str, Any]]


def _unless_unchanged(con: Any, config: memo.AnalysisConfig, analysis: str, inputs: Sequence[str],
                      settings: Mapping[str, Any], outputs: Sequence[str],
                      compute: Callable[[], Results]) -> tuple[Results, bool]:
    """An analysis's metadata by asset, computed (`compute` writes its tables and returns it)
    unless its inputs are those of its last result (analysis/memo.py); and whether they were."""
    key = memo.inputs_key(con, inputs, settings)
    kept = None if config.recompute else memo.recorded(con, analysis, key, outputs)
    if kept is not None:
        return kept, True
    memo.forget(con, analysis)
    results = compute()
    memo.record(con, analysis, key, outputs, results)
    return results, False


def _reported(metadata: Mapping[str, Any], started: float, unchanged: bool) -> dict[str, Any]:
    return {**metadata, "seconds": round(time.perf_counter() - started, 2),
            # True: the inputs were those of the last result, which was kept (analysis/memo.py).
            "inputs_unchanged": unchanged}


def _preview(frame: pd.DataFrame, limit: int) -> dg.MetadataValue:
    """A markdown preview of a small frame for the asset's page."""
    columns = [str(column) for column in frame.columns]
    return dg.MetadataValue.md(markdown_table(columns, frame.to_numpy().tolist(), limit))


@dg.asset(
    key=OUTCOME_SUMMARY,
    group_name=GROUP,
    pool=POOL,
    kinds={"python", "duckdb"},
    deps=[dg.AssetKey(["marts", name])
          for name in ("outcome_scores", "carer_timepoints", "participants")],
)
def outcome_summary(config: memo.AnalysisConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Outcome summary: one row per arm × parameter × timepoint, levels and paired change."""
    started = time.perf_counter()
    with warehouse.connect() as con:
        def compute() -> Results:
            summary = stats.summarise_outcomes(con)
            tables.replace_table(con, "marts.outcome_summary", summary)
            return {"outcome_summary": _outcome_metadata(summary)}

        results, unchanged = _unless_unchanged(con, config, "outcome_summary", stats.INPUTS, {},
                                               ["marts.outcome_summary"], compute)
    return dg.MaterializeResult(metadata=_reported(results["outcome_summary"], started, unchanged))


def _outcome_metadata(summary: pd.DataFrame) -> dict[str, Any]:
    without_baseline = summary.loc[summary["note"] == stats.NOTE_NO_BASELINE, "parameter"]
    follow_up = summary[summary["timepoint"] != "baseline"]
    preview = follow_up[["parameter", "timepoint", "arm", "n", "mean", "n_paired", "mean_change",
                         "p_value_paired_t", "p_value_wilcoxon", "effect_size_dz"]]
    return {
        "dagster/row_count": len(summary),
        "parameters": dg.MetadataValue.text(", ".join(sorted(summary["parameter"].unique()))),
        "arms": dg.MetadataValue.text(", ".join(sorted(summary["arm"].unique()))),
        "parameters_without_baseline": dg.MetadataValue.text(
            ", ".join(sorted(without_baseline.unique())) or "none"
        ),
        "records_summarised": int(summary["n"].sum()),
        "paired_changes_tested": int(follow_up["n_paired"].sum()),
        "preview": _preview(preview, limit=40),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(CE_SUMMARY, description="Cost-effectiveness summary: one row per arm, plus "
                     "`incremental` (POD − TAU) when two arms exist.", kinds={"python", "duckdb"},
                     deps=CE_INPUT),
        dg.AssetSpec(CE_ACCEPTABILITY, description="Acceptability curve: one row per "
                     "willingness-to-pay threshold, £0 to £50,000 in £1,000 steps (two arms only).",
                     kinds={"python", "duckdb"}, deps=CE_INPUT),
        dg.AssetSpec(CE_REPLICATES, description="Bootstrap replicates: one row per replicate × "
                     "arm (mean cost and QALY), for the plane and for audit.", kinds={"duckdb"},
                     deps=CE_INPUT),
    ],
    group_name=GROUP,
    pool=POOL,
)
def cost_effectiveness(config: memo.AnalysisConfig, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
    """Cost-effectiveness from a seeded bootstrap: summary per arm, acceptability, replicates."""
    settings = warehouse.settings
    started = time.perf_counter()
    outputs = ["marts.cost_effectiveness_summary", "marts.cost_effectiveness_acceptability",
               "analysis.cost_effectiveness_replicates"]
    with warehouse.connect() as con:
        def compute() -> Results:
            inputs = economics.load_inputs(con)
            result = economics.analyse(inputs, settings.bootstrap_replicates, settings.bootstrap_seed)
            # The three tables come from one bootstrap: replace them together or not at all.
            con.execute("begin transaction")
            tables.replace_table(con, "marts.cost_effectiveness_summary", result.summary)
            tables.replace_table(con, "marts.cost_effectiveness_acceptability", result.acceptability)
            tables.replace_table(con, "analysis.cost_effectiveness_replicates", result.replicates)
            con.execute("commit")
            return _cost_effectiveness_metadata(settings, inputs, result)

        results, unchanged = _unless_unchanged(
            con, config, "cost_effectiveness", economics.INPUTS,
            {name: getattr(settings, name) for name in ("bootstrap_replicates", "bootstrap_seed", "value_set",
                                                         "price_year")}, outputs, compute)
    for key in (CE_SUMMARY, CE_ACCEPTABILITY, CE_REPLICATES):
        yield dg.MaterializeResult(asset_key=key, metadata=_reported(results[key.path[-1]], started, unchanged))


def _cost_effectiveness_metadata(settings: Any, inputs: economics.CostInputs,
                                 result: economics.CostEffectiveness) -> Results:
    bootstrap = {
        "replicates": settings.bootstrap_replicates,
        "seed": settings.bootstrap_seed,
        "resampling_unit": inputs.resampling_unit,
        "complete_cases_used": sum(arm.n for arm in inputs.arms),
        "excluded_incomplete": sum(arm.n_excluded_incomplete for arm in inputs.arms),
        "value_set": str(inputs.value_set),
        "price_year": str(inputs.price_year),
    }
    if inputs.value_set != settings.value_set or inputs.price_year != settings.price_year:
        bootstrap["warning"] = (
            f"marts.cost_effectiveness uses {inputs.value_set} / {inputs.price_year}; the settings "
            f"say {settings.value_set} / {settings.price_year}: is the mart stale?"
        )
    reason = {"incremental_analysis": result.single_arm_reason or "POD − TAU"}
    return {
        CE_SUMMARY.path[-1]: {
            "dagster/row_count": len(result.summary), **bootstrap, **reason,
            "preview": _preview(result.summary.set_index("arm").T.reset_index(names="column"), 40),
        },
        CE_ACCEPTABILITY.path[-1]: {
            "dagster/row_count": len(result.acceptability), **reason,
            "preview": _preview(result.acceptability.iloc[::5], limit=11),
        },
        CE_REPLICATES.path[-1]: {"dagster/row_count": len(result.replicates), "seed": settings.bootstrap_seed},
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RELAPSE_SUMMARY, description="Time to relapse: one row per arm (Kaplan–Meier n, "
                     "events, median, survival at 182/365/730 days with log-log 95% CI), plus `effect` "
                     "(Cox hazard ratio POD vs TAU) when two arms exist.", kinds={"python", "duckdb"},
                     deps=[TIME_TO_RELAPSE]),
        dg.AssetSpec(RELAPSE_CURVE, description="Kaplan–Meier step function: one row per arm × day 0, "
                     "event day and longest follow-up, for the figure.", kinds={"duckdb"},
                     deps=[TIME_TO_RELAPSE]),
        dg.AssetSpec(RELAPSE_AT_RISK, description="Numbers at risk: one row per arm × day (0, 182, 365, "
                     "548, 730), for the figure.", kinds={"duckdb"}, deps=[TIME_TO_RELAPSE]),
    ],
    group_name=GROUP,
    pool=POOL,
)
def relapse_summary(config: memo.AnalysisConfig, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
    """Kaplan–Meier by arm and Cox hazard ratio for arm, from marts.time_to_relapse (statsmodels)."""
    started = time.perf_counter()
    outputs = ["marts.relapse_summary", "analysis.relapse_curve", "analysis.relapse_at_risk"]
    with warehouse.connect() as con:
        def compute() -> Results:
            result = survival.analyse(survival.load_participants(con))
            con.execute("begin transaction")
            tables.replace_table(con, "marts.relapse_summary", result.summary)
            tables.replace_table(con, "analysis.relapse_curve", result.curve)
            tables.replace_table(con, "analysis.relapse_at_risk", result.at_risk)
            con.execute("commit")
            return _relapse_metadata(result)

        results, unchanged = _unless_unchanged(con, config, "relapse_summary", survival.INPUTS, {}, outputs,
                                               compute)
    for key in (RELAPSE_SUMMARY, RELAPSE_CURVE, RELAPSE_AT_RISK):
        yield dg.MaterializeResult(asset_key=key, metadata=_reported(results[key.path[-1]], started, unchanged))


def _relapse_metadata(result: survival.RelapseAnalysis) -> Results:
    summary = result.summary.set_index("arm")
    arms = [arm for arm in summary.index if arm != survival.EFFECT]
    effect = summary.loc[survival.EFFECT] if survival.EFFECT in summary.index else None
    hazard_ratio = "no POD versus TAU comparison"
    if effect is not None and pd.notna(effect["hazard_ratio"]):
        hazard_ratio = (f"{effect['hazard_ratio']:.3f} ({effect['hr_ci95_low']:.3f} to "
                        f"{effect['hr_ci95_high']:.3f}), p = {effect['p_value']:.3g}, {effect['variance']}")
    figure = figures.png_bytes(figures.kaplan_meier(result.curve, result.at_risk), dpi=45)
    thumbnail = base64.b64encode(figure).decode("ascii")
    return {
        RELAPSE_SUMMARY.path[-1]: {
            "dagster/row_count": len(result.summary),
            "n_followed": int(summary.loc[arms, "n"].sum()),
            "n_not_followed_in_epr": int(sum(result.not_followed.values())),
            **{f"events_{arm}": int(summary.at[arm, "events"]) for arm in arms},
            "hazard_ratio": dg.MetadataValue.text(hazard_ratio),
            "notes": dg.MetadataValue.text("; ".join(result.summary["note"].dropna().unique()) or "none"),
            "preview": _preview(result.summary.set_index("arm").T.reset_index(names="column"), 40),
            "figure": dg.MetadataValue.md(f"![kaplan_meier](data:image/png;base64,{thumbnail})"),
        },
        RELAPSE_CURVE.path[-1]: {"dagster/row_count": len(result.curve)},
        RELAPSE_AT_RISK.path[-1]: {
            "dagster/row_count": len(result.at_risk), "preview": _preview(result.at_risk, 20),
        },
    }


@dg.asset(key=FIGURES, group_name=GROUP, pool=POOL, kinds={"python"}, deps=FIGURE_SOURCES)
def study_figures(warehouse: Warehouse) -> dg.MaterializeResult:
    """The study's figures: one PNG per figure in <warehouse>/figures/, drawn again each run
    where its tables changed (figures.render)."""
    folder = warehouse.settings.warehouse_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    with warehouse.connect(read_only=True) as con:
        study = tables.load_tables(con)
    drawn = figures.render(study, _figure_cache(warehouse))
    for stale in folder.glob("*.png"):
        if stale.stem not in drawn:
            stale.unlink()
    metadata: dict[str, object] = {"figures": len(drawn)}
    thumbnails = []
    for name, png in drawn.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        metadata[name] = dg.MetadataValue.path(str(path))
        thumbnail = base64.b64encode(figures.thumbnail(png, 45 / 110)).decode("ascii")
        thumbnails.append(f"**{name}**\n\n![{name}](data:image/png;base64,{thumbnail})")
    metadata["preview"] = dg.MetadataValue.md("\n\n".join(thumbnails))
    return dg.MaterializeResult(metadata=metadata)


def _figure_cache(warehouse: Warehouse) -> Path:
    """Drawn figures by what they were drawn from, for both reports (figures.render)."""
    return warehouse.settings.warehouse_dir / "figure_cache"


def _write_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, external: bool
) -> dg.MaterializeResult:
    settings = warehouse.settings
    threshold = settings.suppress_counts_below
    with warehouse.connect(read_only=True) as con:
        study = tables.load_tables(con)
        batches = tables.landing_batches(con, with_row_counts=not external)
    suppressed = 0
    if external:
        protected, suppressed = disclosure.protect(study, threshold)
        images = figures.render(disclosure.unchanged_kept(protected, study), _figure_cache(warehouse))
        study = protected
        notes = [disclosure.note(threshold)]
    else:
        images = {path.stem: path.read_bytes()
                  for path in (settings.warehouse_dir / "figures").glob("*.png")}
        notes = ["For the study team only: small counts are not suppressed. Send the external "
                 "version (study_report_external_…) to anyone outside the team."]
    # What the cost-effectiveness numbers were computed with (the settings before any exist).
    ce = study.cost_effectiveness.head(1).to_dict("records") or [{
        "value_set": settings.value_set, "price_year": settings.price_year,
        "replicates": settings.bootstrap_replicates, "seed": settings.bootstrap_seed,
        "resampling_unit": "participant",
    }]
    now = dt.datetime.now(dt.UTC)
    provenance = {
        "generated at (UTC)": now.strftime("%Y-%m-%d %H:%M"),
        "Dagster run": context.run_id,
        "pipeline version": __version__,
        "reference date": settings.reference_date.isoformat(),
        "EQ-5D-5L value set": ce[0]["value_set"],
        "unit-cost price year": ce[0]["price_year"],
        "bootstrap": f"{ce[0]['replicates']} replicates, seed {ce[0]['seed']}, "
                     f"resampling {ce[0]['resampling_unit']}s",
        "disclosure control": f"counts 1 to {threshold - 1} suppressed" if external else "none",
    }
    title = "POD trial study report" + (" (external)" if external else " (study team only)")
    document = report.render_html(title, study, images, provenance, batches, notes)
    folder = settings.warehouse_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "study_report_external" if external else "study_report"
    path = folder / f"{stem}_{now.date().isoformat()}_{context.run_id[:8]}.html"
    path.write_text(document, encoding="utf-8")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "size_kib": round(len(document.encode()) / 1024, 1),
        "figures_embedded": len(images),
        "landing_batches": len(batches),
        "cells_suppressed": suppressed,
        "disclosure_threshold": threshold if external else 0,
    })


@dg.asset(
    key=["analysis", "study_report"], group_name=GROUP, pool=POOL, kinds={"html"},
    deps=[*REPORT_SOURCES, FIGURES],
)
def study_report(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Study report for the team: one self-contained HTML file per run in <warehouse>/reports/."""
    return _write_report(context, warehouse, external=False)


@dg.asset(
    key=["analysis", "study_report_external"], group_name=GROUP, pool=POOL, kinds={"html"},
    deps=REPORT_SOURCES,
)
def study_report_external(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Study report to leave the team: as the team's, with small counts suppressed (per run)."""
    return _write_report(context, warehouse, external=True)
