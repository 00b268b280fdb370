"""Cost-effectiveness bootstrap: hand calculations, seeds, clusters and the single-arm case."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from synthetic_marts import write_synthetic_marts

from pod_pipeline.analysis import economics

CE_COLUMNS = [
    "participant_id", "arm", "site", "cluster_id", "age_at_consent", "gender", "utility_baseline",
    "utility_month_3", "utility_month_6", "qaly", "cost_baseline_period", "cost_month_3_period",
    "cost_month_6_period", "total_cost", "has_complete_qaly", "has_complete_cost", "value_set",
    "price_year",
]


Row = tuple[str, str | None, float | None, float | None]


def _marts(rows: list[Row]) -> duckdb.DuckDBPyConnection:
    """marts.cost_effectiveness from (arm, cluster_id, total_cost, qaly) rows."""
    frame = pd.DataFrame(
        [{"participant_id": f"P{index:03d}", "arm": arm, "site": "S1", "cluster_id": cluster,
          "total_cost": cost, "qaly": qaly, "has_complete_qaly": qaly is not None,
          "has_complete_cost": cost is not None, "value_set": "uk_2026", "price_year": "2024/25"}
         for index, (arm, cluster, cost, qaly) in enumerate(rows)]
    ).reindex(columns=CE_COLUMNS)
    frame["cluster_id"] = frame["cluster_id"].astype("string")
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.cost_effectiveness as select * from frame")
    return con


TINY = [("POD", None, 100.0, 0.30), ("POD", None, 300.0, 0.50),
        ("TAU", None, 100.0, 0.20), ("TAU", None, 100.0, 0.30),
        ("TAU", None, None, 0.25), ("POD", None, 500.0, None)]


def _analyse(con: duckdb.DuckDBPyConnection, seed: int = 11,
             replicates: int = 1000) -> economics.CostEffectiveness:
    return economics.analyse(economics.load_inputs(con), replicates, seed)


def test_point_estimates_by_hand() -> None:
    result = _analyse(_marts(TINY))
    rows = result.summary.set_index("arm")
    assert rows.loc["POD", ["n", "n_excluded_incomplete"]].tolist() == [2, 1]
    assert rows.loc["POD", "mean_cost"] == 200 and rows.loc["TAU", "mean_cost"] == 100
    assert rows.loc["POD", "mean_qaly"] == pytest.approx(0.40)
    assert rows.loc["TAU", "mean_qaly"] == pytest.approx(0.25)
    incremental = rows.loc["incremental"]
    assert incremental["incremental_cost"] == pytest.approx(100)
    assert incremental["incremental_qaly"] == pytest.approx(0.15)
    assert incremental["icer"] == pytest.approx(100 / 0.15)
    assert incremental["icer_quadrant"] == "more costly, more effective"
    assert incremental["inmb_20k"] == pytest.approx(20_000 * 0.15 - 100)
    assert incremental["inmb_30k"] == pytest.approx(30_000 * 0.15 - 100)
    assert rows["value_set"].eq("uk_2026").all() and rows["price_year"].eq("2024/25").all()
    assert pd.isna(incremental["note"])


def test_quadrant_names_what_a_negative_icer_hides() -> None:
    assert economics.quadrant(100.0, -0.1).startswith("dominated")
    assert economics.quadrant(-100.0, 0.1).startswith("dominant")
    assert economics.quadrant(-100.0, -0.1) == "less costly, less effective"


def test_probability_and_intervals_from_the_replicates_by_hand() -> None:
    result = _analyse(_marts(TINY))
    wide = result.replicates.pivot(index="replicate", columns="arm")
    d_cost = wide[("mean_cost", "POD")] - wide[("mean_cost", "TAU")]
    d_qaly = wide[("mean_qaly", "POD")] - wide[("mean_qaly", "TAU")]
    incremental = result.summary.set_index("arm").loc["incremental"]
    assert incremental["prob_cost_effective_20k"] == ((20_000 * d_qaly - d_cost) > 0).mean()
    assert incremental["prob_cost_effective_30k"] == ((30_000 * d_qaly - d_cost) > 0).mean()
    assert incremental["incremental_cost_ci95_low"] == pytest.approx(np.percentile(d_cost, 2.5))
    assert incremental["inmb_20k_ci95_high"] == pytest.approx(
        np.percentile(20_000 * d_qaly - d_cost, 97.5)
    )
    curve = result.acceptability.set_index("threshold")["prob_cost_effective"]
    assert list(curve.index) == list(range(0, 50_001, 1_000))
    assert curve[20_000] == incremental["prob_cost_effective_20k"]
    assert curve[0] == (-d_cost > 0).mean()


def test_bootstrap_reproducible_for_a_seed_and_different_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    con = duckdb.connect()
    write_synthetic_marts(con, participants=400, seed=5)
    first = _analyse(con, seed=42)
    monkeypatch.setattr(economics, "WORKERS", 1)
    again = _analyse(con, seed=42)
    other = _analyse(con, seed=43)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    pd.testing.assert_frame_equal(first.replicates, again.replicates)
    assert not np.allclose(first.replicates["mean_cost"], other.replicates["mean_cost"])
    assert first.summary["mean_cost"].equals(other.summary["mean_cost"])


def test_participant_bootstrap_centres_on_the_observed_mean() -> None:
    con = duckdb.connect()
    write_synthetic_marts(con, participants=3000, seed=9)
    result = _analyse(con)
    pod = result.summary.set_index("arm").loc["POD"]
    draws = result.replicates.query("arm == 'POD'")["mean_cost"]
    assert pod["n_resampling_units"] == pod["n"]
    assert draws.mean() == pytest.approx(pod["mean_cost"], rel=0.01)
    assert pod["mean_cost_ci95_low"] < pod["mean_cost"] < pod["mean_cost_ci95_high"]


def test_clusters_are_resampled_when_cluster_id_is_present() -> None:
    # Two clusters per arm, everyone in a cluster alike: resampling clusters can only produce
    # the means of cluster combinations (unequal sizes weight by participants).
    rows = ([("POD", "A", 0.0, 0.2)] * 10 + [("POD", "B", 1000.0, 0.4)] * 30
            + [("TAU", "C", 200.0, 0.3)] * 20 + [("TAU", "D", 400.0, 0.3)] * 20)
    clustered = _analyse(_marts(rows))
    pod = clustered.replicates.query("arm == 'POD'")["mean_cost"].round(6)
    assert set(pod) <= {0.0, 750.0, 1000.0}
    assert clustered.summary["resampling_unit"].eq("cluster").all()
    assert clustered.summary.set_index("arm").loc["POD", "n_resampling_units"] == 2

    individual = _analyse(_marts([(arm, None, cost, qaly) for arm, _, cost, qaly in rows]))
    assert individual.summary["resampling_unit"].eq("participant").all()
    assert individual.replicates.query("arm == 'POD'")["mean_cost"].nunique() > 10


def test_cluster_bootstrap_is_wider_than_participant_bootstrap_with_cluster_effects() -> None:
    con = duckdb.connect()
    write_synthetic_marts(con, participants=2000, clusters=20, seed=4)
    clustered = _analyse(con).summary.set_index("arm")
    con.execute("update marts.cost_effectiveness set cluster_id = null")
    individual = _analyse(con).summary.set_index("arm")
    width = "incremental_cost_ci95_high", "incremental_cost_ci95_low"
    assert (clustered.loc["incremental", width[0]] - clustered.loc["incremental", width[1]]
            > 1.5 * (individual.loc["incremental", width[0]]
                     - individual.loc["incremental", width[1]]))


def test_single_arm_has_no_incremental_row_and_no_curve() -> None:
    result = _analyse(_marts([row for row in TINY if row[0] == "POD"]))
    assert result.summary["arm"].tolist() == ["POD"]
    assert result.acceptability.empty
    assert list(result.acceptability.columns) == ["threshold", "prob_cost_effective"]
    assert "POD" in result.single_arm_reason and "no POD versus TAU" in result.single_arm_reason
    assert result.summary["note"].eq(result.single_arm_reason).all()
    assert result.summary.loc[0, "mean_cost"] == 200


def test_arm_without_complete_cases_gives_a_reason() -> None:
    result = _analyse(_marts([*TINY[:2], ("TAU", None, None, 0.2)]))
    assert "TAU" in result.single_arm_reason
    assert "incremental" not in set(result.summary["arm"])


def test_unexpected_arm_is_refused() -> None:
    with pytest.raises(ValueError, match="expected POD, TAU"):
        economics.load_inputs(_marts([("CONTROL", None, 1.0, 0.1)]))
