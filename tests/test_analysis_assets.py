"""The analysis assets materialised in Dagster against a temporary warehouse of fixture marts."""

import re
from pathlib import Path

import dagster as dg
import pytest
from synthetic_marts import write_synthetic_marts

from pod_pipeline.analysis import analysis_assets
from pod_pipeline.resources import Warehouse

UPSTREAM = [
    dg.AssetSpec(key) for key in (
        ["marts", "outcome_scores"], ["marts", "carer_timepoints"], ["marts", "participants"],
        ["marts", "cost_effectiveness"], ["marts", "participant_flow"], ["marts", "completeness"],
        ["raw", "load_ledger"], ["marts", "time_to_relapse"],
    )
]
CE_SUMMARY_COLUMNS = {
    "arm", "n", "mean_cost", "mean_cost_ci95_low", "mean_cost_ci95_high", "mean_qaly",
    "mean_qaly_ci95_low", "mean_qaly_ci95_high", "incremental_cost", "incremental_qaly", "icer",
    "inmb_20k", "inmb_30k", "prob_cost_effective_20k", "prob_cost_effective_30k", "value_set",
    "price_year", "replicates", "seed", "resampling_unit",
}
FIGURES = {"outcome_trajectories", "participant_flow", "completeness_heatmap",
           "cost_effectiveness_plane", "acceptability_curve", "kaplan_meier"}


def _materialise(arms: tuple[str, ...]) -> tuple[dg.ExecuteInProcessResult, Warehouse]:
    warehouse = Warehouse()
    with warehouse.connect() as con:
        write_synthetic_marts(con, participants=120, arms=arms, seed=8)
    result = dg.materialize([*analysis_assets, *UPSTREAM], resources={"warehouse": warehouse},
                            selection=dg.AssetSelection.groups("analysis"))
    assert result.success
    return result, warehouse


def _metadata(result: dg.ExecuteInProcessResult, *key: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(list(key))]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def test_two_arms_end_to_end(pod_env: Path) -> None:
    result, warehouse = _materialise(("POD", "TAU"))
    assert warehouse.settings.warehouse_dir.is_relative_to(pod_env)
    with warehouse.connect() as con:
        columns = {row[0] for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'cost_effectiveness_summary'"
        ).fetchall()}
        arms = [row[0] for row in con.execute(
            "select arm from marts.cost_effectiveness_summary order by arm").fetchall()]
        curve = con.execute("select count(*), min(threshold), max(threshold) "
                            "from marts.cost_effectiveness_acceptability").fetchone()
        summary_rows = con.execute("select count(*) from marts.outcome_summary").fetchone()[0]
    assert columns >= CE_SUMMARY_COLUMNS
    assert arms == ["POD", "TAU", "incremental"]
    assert curve == (51, 0, 50_000)
    assert _metadata(result, "marts", "outcome_summary")["dagster/row_count"] == summary_rows
    assert _metadata(result, "marts", "outcome_summary")["parameters_without_baseline"] == (
        "csq8_total"
    )

    figures = warehouse.settings.warehouse_dir / "figures"
    assert {path.stem for path in figures.glob("*.png")} == FIGURES
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in figures.glob("*.png"))
    preview = _metadata(result, "analysis", "figures")["preview"]
    assert preview.count("](data:image/png;base64,") == len(FIGURES)

    internal = Path(_metadata(result, "analysis", "study_report")["path"])
    external = Path(_metadata(result, "analysis", "study_report_external")["path"])
    assert internal.parent == external.parent == warehouse.settings.warehouse_dir / "reports"
    assert result.run_id[:8] in internal.name
    for path in (internal, external):
        document = path.read_text()
        sources = re.findall(r'(?:src|href)="([^"]*)"', document)
        assert len(sources) == len(FIGURES)
        assert all(source.startswith("data:image/png;base64,") for source in sources)
        assert "<script" not in document and "<link" not in document
        assert "2026-07-01T120000" in document and "uk_2026" in document
        assert "2024/25" in document and "2026-11-25" in document
    assert "Disclosure control" in external.read_text()
    with warehouse.connect() as con:
        relapse = con.execute("select * from marts.relapse_summary").df().set_index("arm")
        followed = con.execute("select count(*) filter (where is_followed_in_epr), "
                               "count(*) filter (where not is_followed_in_epr) from marts.time_to_relapse").fetchone()
    assert relapse.index.tolist() == ["POD", "TAU", "effect"]
    assert relapse.loc["effect", "variance"] == "model" and relapse.loc["effect", "hazard_ratio"] > 0
    relapse_metadata = _metadata(result, "marts", "relapse_summary")
    assert (relapse_metadata["n_followed"], relapse_metadata["n_not_followed_in_epr"]) == followed
    assert relapse_metadata["events_POD"] == relapse.loc["POD", "events"]
    assert "data:image/png;base64," in relapse_metadata["figure"]
    assert "<h2>Time to relapse</h2>" in internal.read_text()
    assert "Numbers at risk" in external.read_text()
    assert "Disclosure control" not in internal.read_text()
    assert _metadata(result, "analysis", "study_report_external")["cells_suppressed"] > 0


def test_single_arm_end_to_end(pod_env: Path) -> None:
    result, warehouse = _materialise(("POD",))
    with warehouse.connect() as con:
        arms = con.execute("select arm from marts.cost_effectiveness_summary").fetchall()
        curve = con.execute("select * from marts.cost_effectiveness_acceptability").df()
    assert arms == [("POD",)]
    assert curve.empty and list(curve.columns) == ["threshold", "prob_cost_effective"]
    reason = _metadata(result, "marts", "cost_effectiveness_summary")["incremental_analysis"]
    assert "POD" in reason and "no POD versus TAU" in reason
    figures = warehouse.settings.warehouse_dir / "figures"
    assert {path.stem for path in figures.glob("*.png")} == FIGURES - {
        "cost_effectiveness_plane", "acceptability_curve"
    }
    report = Path(_metadata(result, "analysis", "study_report")["path"]).read_text()
    assert reason in report
    relapse_reason = _metadata(result, "marts", "relapse_summary")["notes"]
    assert "no POD versus TAU hazard ratio" in relapse_reason and relapse_reason in report


SUMMARIES = dg.AssetSelection.assets(["marts", "outcome_summary"], ["marts", "cost_effectiveness_summary"],
                                     ["marts", "relapse_summary"]).required_multi_asset_neighbors()
OUTPUTS = ("marts.outcome_summary", "marts.cost_effectiveness_summary", "marts.cost_effectiveness_acceptability",
           "analysis.cost_effectiveness_replicates", "marts.relapse_summary", "analysis.relapse_curve",
           "analysis.relapse_at_risk")


def _summaries(warehouse: Warehouse, recompute: bool = False) -> tuple[dict, dict]:
    """Materialise the three cohort-level analyses: whether each asset's inputs were unchanged,
    and every table they wrote."""
    config = {"ops": {op: {"config": {"recompute": True}} for op in (
        "marts__outcome_summary", "cost_effectiveness", "relapse_summary")}} if recompute else None
    result = dg.materialize([*analysis_assets, *UPSTREAM], resources={"warehouse": warehouse},
                            selection=SUMMARIES, run_config=config)
    assert result.success
    unchanged = {e.materialization.asset_key.to_user_string(): e.materialization.metadata["inputs_unchanged"].value
                 for e in result.get_asset_materialization_events()}
    with warehouse.connect(read_only=True) as con:
        written = {table: sorted(con.execute(f"select * from {table}").fetchall(), key=repr) for table in OUTPUTS}
    return unchanged, written


def test_an_analysis_whose_inputs_are_unchanged_keeps_its_last_result(pod_env: Path) -> None:
    """The outcome summary, the bootstrap and the relapse analysis are computed again only when a
    mart they read, their settings or the code changed, when a table they wrote was changed, or
    when a forced run asks; a kept result is the one computing it again gives."""
    warehouse = Warehouse()
    with warehouse.connect() as con:
        write_synthetic_marts(con, participants=60, arms=("POD", "TAU"), seed=3)
    first, tables = _summaries(warehouse)
    assert len(first) == 7 and not any(first.values())
    again, kept = _summaries(warehouse)
    assert all(again.values()) and kept == tables
    forced, recomputed = _summaries(warehouse, recompute=True)
    assert not any(forced.values()) and recomputed == tables
    # One input changed: the analyses reading it are computed again, the others kept.
    with warehouse.connect() as con:
        con.execute("update marts.time_to_relapse set time_days = time_days + 1 "
                    "where participant_id = (select min(participant_id) from marts.time_to_relapse)")
        con.execute("update marts.outcome_summary set mean = -1")  # an output changed behind its back
    changed, _ = _summaries(warehouse)
    assert {key for key, kept_it in changed.items() if not kept_it} == {
        "marts/outcome_summary", "marts/relapse_summary", "analysis/relapse_curve", "analysis/relapse_at_risk"}
    with warehouse.connect(read_only=True) as con:
        assert con.execute("select count(*) from marts.outcome_summary where mean = -1").fetchone()[0] == 0
    # A setting the bootstrap takes.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POD_BOOTSTRAP_SEED", "99")
        reseeded, _ = _summaries(Warehouse())
    assert reseeded["marts/cost_effectiveness_summary"] is False and reseeded["marts/outcome_summary"] is True


def test_each_analysis_declares_every_relation_its_sql_reads() -> None:
    """The inputs an analysis is keyed by are the relations its module's SQL reads."""
    from pod_pipeline.analysis import economics, stats, survival

    for module in (stats, economics, survival):
        source = Path(module.__file__).read_text()
        named = set(re.findall(r"\b(?:from|join|unpivot)\s+((?:marts|analysis|raw|audit|restricted)\.\w+)", source))
        assert named == set(module.INPUTS), module.__name__
