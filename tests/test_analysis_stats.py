"""Outcome summary against scipy and pandas recomputed straight from the fixture marts."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from synthetic_marts import write_synthetic_marts

from pod_pipeline.analysis import stats

CONTRACT_COLUMNS = [
    "arm", "parameter", "timepoint", "n", "mean", "sd", "median", "q1", "q3", "n_paired",
    "mean_change", "sd_change", "change_ci95_low", "change_ci95_high", "p_value_paired_t",
    "p_value_wilcoxon", "effect_size_dz", "n_meaningful_improvement",
]


@pytest.fixture(scope="module")
def marts() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    write_synthetic_marts(con, participants=90, seed=3)
    return con


@pytest.fixture(scope="module")
def summary(marts: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return stats.summarise_outcomes(marts).set_index(["arm", "parameter", "timepoint"])


def _service_user_groups(marts: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    scores = marts.execute("select * from marts.outcome_scores").df()
    return scores[scores["is_analysis_record"]]


def test_contract_columns_and_grain(summary: pd.DataFrame) -> None:
    frame = summary.reset_index()
    assert set(CONTRACT_COLUMNS) <= set(frame.columns)
    assert not frame.duplicated(["arm", "parameter", "timepoint"]).any()
    assert {"cws_wellbeing_score", "cws_support_score", "csq8_total", "honos_social"} <= set(
        frame["parameter"]
    )


def test_levels_match_pandas_on_analysis_records_only(
    marts: duckdb.DuckDBPyConnection, summary: pd.DataFrame
) -> None:
    scores = _service_user_groups(marts)
    excluded = marts.execute(
        "select count(*) from marts.outcome_scores where not is_analysis_record"
    ).fetchone()[0]
    assert excluded > 0, "the fixture must hold records that are not analysis records"
    checked = 0
    for (arm, parameter, timepoint), group in scores.groupby(["arm", "parameter", "timepoint"]):
        row = summary.loc[(arm, parameter, timepoint)]
        values = group["value"].dropna().to_numpy()
        assert row["n"] == len(values)
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        assert (row["q1"], row["median"], row["q3"]) == pytest.approx((q1, median, q3))
        low, high = sps.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                   scale=sps.sem(values))
        assert (row["mean_ci95_low"], row["mean_ci95_high"]) == pytest.approx((low, high))
        checked += 1
    assert checked == 2 * 27


def test_the_summary_is_the_same_to_the_last_bit_whatever_order_its_records_are_stored_in(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    """A float sum depends on the order of its terms: each group's values and changes are sorted
    before any figure is computed from them, so a delivery that stores the same rows in another
    order gives the same summary, bit for bit."""
    stored = marts.cursor()  # a connection of its own: no other test's result is pending on it
    reordered = duckdb.connect()
    reordered.execute("create schema marts")
    for relation in stats.INPUTS:
        rows = stored.sql(f"select * from {relation}").to_arrow_table()  # noqa: F841 (read by name below)
        reordered.execute(f"create table {relation} as select * from rows order by hash(rows) desc")
    before = stored.execute("select value from marts.outcome_scores limit 5").fetchall()
    after = reordered.execute("select value from marts.outcome_scores limit 5").fetchall()
    assert before != after, "the rows must be stored in another order"
    assert stats.summarise_outcomes(reordered).equals(stats.summarise_outcomes(stored))


def test_paired_statistics_match_scipy(
    marts: duckdb.DuckDBPyConnection, summary: pd.DataFrame
) -> None:
    scores = _service_user_groups(marts)
    paired = scores[~scores["is_baseline"] & scores["baseline_value"].notna()
                    & scores["value"].notna()]
    checked = 0
    for (arm, parameter, timepoint), group in paired.groupby(["arm", "parameter", "timepoint"]):
        row = summary.loc[(arm, parameter, timepoint)]
        after, before = group["value"].to_numpy(), group["baseline_value"].to_numpy()
        # The mart holds decimals (3 places): exact differences keep Wilcoxon's ties as ties.
        change = np.round(after - before, 3)
        ttest = sps.ttest_rel(after, before)
        low, high = sps.t.interval(0.95, len(change) - 1, loc=change.mean(),
                                   scale=sps.sem(change))
        assert row["n_paired"] == len(change)
        assert row["mean_change"] == pytest.approx(change.mean(), rel=1e-12)
        assert row["sd_change"] == pytest.approx(change.std(ddof=1), rel=1e-9)
        assert (row["change_ci95_low"], row["change_ci95_high"]) == pytest.approx((low, high))
        assert row["p_value_paired_t"] == pytest.approx(ttest.pvalue, rel=1e-9)
        assert row["p_value_wilcoxon"] == pytest.approx(sps.wilcoxon(change).pvalue, rel=1e-9)
        assert row["effect_size_dz"] == pytest.approx(change.mean() / change.std(ddof=1))
        checked += 1
    assert checked == 2 * 15


def test_meaningful_improvement_counted_only_where_a_threshold_exists(
    marts: duckdb.DuckDBPyConnection, summary: pd.DataFrame
) -> None:
    scores = _service_user_groups(marts)
    improved = scores[scores["is_meaningful_improvement"].fillna(False).astype(bool)]
    wemwbs = summary.loc[("POD", "wemwbs_total", "month_6"), "n_meaningful_improvement"]
    expected = improved.query("arm == 'POD' and parameter == 'wemwbs_total' "
                              "and timepoint == 'month_6'")
    assert wemwbs == len(expected) > 0
    assert pd.isna(summary.loc[("POD", "wsas_total", "month_6"), "n_meaningful_improvement"])
    assert pd.isna(summary.loc[("POD", "wemwbs_total", "baseline"), "n_meaningful_improvement"])


def test_parameter_without_baseline_has_a_note_not_a_crash(summary: pd.DataFrame) -> None:
    csq8 = summary.xs("csq8_total", level="parameter")
    assert len(csq8) == 4 and (csq8["n"] > 0).all()
    assert (csq8["n_paired"] == 0).all() and csq8["mean_change"].isna().all()
    assert (csq8["note"] == stats.NOTE_NO_BASELINE).all()


def test_carers_are_paired_by_carer(
    marts: duckdb.DuckDBPyConnection, summary: pd.DataFrame
) -> None:
    carers = marts.execute(
        "select c.*, p.arm from marts.carer_timepoints c join marts.participants p "
        "using (participant_id)"
    ).df()
    keys = ["participant_id", "carer_id"]
    baseline = carers[carers["timepoint"] == "baseline"][[*keys, "cws_wellbeing_score"]]
    month_3 = carers[(carers["timepoint"] == "month_3") & (carers["arm"] == "TAU")]
    pairs = month_3.merge(baseline, on=keys, suffixes=("", "_baseline")).dropna(
        subset=["cws_wellbeing_score", "cws_wellbeing_score_baseline"]
    )
    change = (pairs["cws_wellbeing_score"] - pairs["cws_wellbeing_score_baseline"]).round(1)
    row = summary.loc[("TAU", "cws_wellbeing_score", "month_3")]
    assert row["respondent"] == "carer"
    assert row["n_paired"] == len(change) > 10
    assert row["mean_change"] == pytest.approx(change.mean())
    assert row["p_value_wilcoxon"] == pytest.approx(sps.wilcoxon(change).pvalue)


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        ([], [], ["mean_change", "sd_change", "p_value_paired_t", "p_value_wilcoxon"]),
        ([2.0], ["mean_change"], ["sd_change", "change_ci95_low", "p_value_paired_t"]),
        ([1.0, 1.0, 1.0], ["sd_change", "p_value_wilcoxon"], ["p_value_paired_t",
                                                              "effect_size_dz"]),
        ([0.0, 0.0, 0.0], ["mean_change"], ["p_value_wilcoxon", "p_value_paired_t"]),
    ],
    ids=["no_pairs", "one_pair", "constant_change", "all_zero"],
)
def test_paired_statistics_edge_cases(
    changes: list[float], present: list[str], absent: list[str]
) -> None:
    result = stats.paired_statistics(np.array(changes))
    assert all(result[key] is not None for key in present)
    assert all(result[key] is None for key in absent)


def test_paired_statistics_by_hand() -> None:
    result = stats.paired_statistics(np.array([1.0, 2.0, 3.0, 4.0]))
    sd = np.sqrt(5 / 3)
    assert result["mean_change"] == 2.5
    assert result["sd_change"] == pytest.approx(sd)
    assert result["effect_size_dz"] == pytest.approx(2.5 / sd)
    half_width = sps.t.ppf(0.975, 3) * sd / 2
    assert result["change_ci95_low"] == pytest.approx(2.5 - half_width)
    assert result["p_value_wilcoxon"] == pytest.approx(0.125)


def test_wilcoxon_p_is_scipys_to_the_last_bit() -> None:
    """The vectorised permutation test gives scipy's own p-value, in every branch scipy takes:
    exact (no ties), permutation (n <= 13 with zeros or ties) and asymptotic (larger, tied)."""
    rng = np.random.default_rng(20261204)
    samples = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.0, -2.0, 3.0]),
               np.array([0.5, -0.5, 0.5, 1.5, 2.5, 0.0, 0.0])]
    samples += [rng.integers(-4, 5, size=n) * 0.5 for n in rng.integers(2, 20, size=30)]
    branches = set()
    for changes in samples:
        if not np.any(changes != 0):
            continue
        nonzero = changes[changes != 0]
        tied = len(nonzero) < len(changes) or len(np.unique(np.abs(nonzero))) < len(nonzero)
        branches.add("permutation" if tied and len(changes) <= 13 else "scipy")
        assert stats.wilcoxon_p(changes) == float(sps.wilcoxon(changes).pvalue), changes
    assert branches == {"permutation", "scipy"}
