"""Disclosure control: small counts suppressed, and no suppressed count left recoverable."""

from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_marts import write_synthetic_marts

from pod_pipeline.analysis import disclosure, economics, stats, survival, tables
from pod_pipeline.settings import Settings

THRESHOLD = Settings.from_env({}).suppress_counts_below
SMALL = range(1, THRESHOLD)


def _hidden(mask: pd.DataFrame) -> set[tuple]:
    return {(row, column) for row in mask.index for column in mask.columns
            if mask.at[row, column]}


def test_default_threshold_suppresses_one_to_seven() -> None:
    assert THRESHOLD == 8
    cells = pd.DataFrame({"n": [0, 1, 7, 8, np.nan]})
    assert disclosure.suppression_mask(cells, [], THRESHOLD)["n"].tolist() == [
        False, True, True, False, False
    ]


def test_a_suppressed_part_of_a_published_total_takes_a_second_cell_with_it() -> None:
    withdrawn = pd.DataFrame({"n": [3, 20, 23]}, index=["POD", "TAU", "total"])
    relations = disclosure.column_relations(withdrawn, ["n"])
    mask = disclosure.suppression_mask(withdrawn, relations, THRESHOLD)
    assert _hidden(mask) == {("POD", "n"), ("TAU", "n")}


def test_the_second_cell_is_not_a_zero_when_a_count_can_be_hidden() -> None:
    cells = pd.DataFrame({"a": [3], "b": [0], "c": [15], "total": [18]})
    mask = disclosure.suppression_mask(cells, [[(0, c) for c in cells.columns]], THRESHOLD)
    assert _hidden(mask) == {(0, "a"), (0, "c")}


def test_a_small_difference_between_published_counts_is_protected() -> None:
    counts = pd.DataFrame({"n": [50.0], "n_paired": [45.0]})
    relations, derived = disclosure.nested_relations(counts, [("n", "n_paired", "unpaired")])
    assert derived == {(0, "unpaired"): 5.0}
    smallest = disclosure.suppression_mask(counts, relations, THRESHOLD, derived)
    assert _hidden(smallest) == {(0, "n_paired")}
    preferred = disclosure.suppression_mask(counts, relations, THRESHOLD, derived,
                                            prefer_to_keep=["n_paired"])
    assert _hidden(preferred) == {(0, "n")}


def test_a_hidden_subset_of_a_total_is_safe_while_its_remainder_is_unpublished() -> None:
    counts = pd.DataFrame({"n": [50.0], "n_paired": [5.0]})
    relations, derived = disclosure.nested_relations(counts, [("n", "n_paired", "unpaired")])
    assert _hidden(disclosure.suppression_mask(counts, relations, THRESHOLD, derived)) == {
        (0, "n_paired")
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=3), min_size=2, max_size=6))
def test_crosstab_with_margins_never_leaves_one_unknown(rows: list[list[int]]) -> None:
    table = pd.DataFrame(rows, columns=["a", "b", "c"], dtype=float)
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    relations = ([[(row, column) for column in table.columns] for row in table.index]
                 + [[(row, column) for row in table.index] for column in table.columns])
    hidden = _hidden(disclosure.suppression_mask(table, relations, THRESHOLD))
    small = {(row, column) for row in table.index for column in table.columns
             if table.at[row, column] in SMALL}
    assert small <= hidden
    for relation in relations:
        assert len(set(relation) & hidden) != 1, relation


@pytest.fixture(scope="module")
def study() -> tables.StudyTables:
    con = duckdb.connect()
    write_synthetic_marts(con, participants=60, seed=2)
    result = economics.analyse(economics.load_inputs(con), 1000, 1)
    return tables.StudyTables(
        flow=tables.flow_table(con.execute("select * from marts.participant_flow").df()),
        outcomes=stats.summarise_outcomes(con),
        completeness=tables.completeness_table(
            con.execute("select * from marts.completeness").df()
        ),
        cost_effectiveness=result.summary,
        acceptability=result.acceptability,
        replicates=result.replicates,
        **_relapse(con),
    )


def _relapse(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    relapse = survival.analyse(survival.load_participants(con))
    return {"relapse": relapse.summary, "relapse_curve": relapse.curve, "relapse_at_risk": relapse.at_risk}


def _published(value: object) -> bool:
    return not isinstance(value, str) and pd.notna(value)


def test_report_tables_publish_no_small_count_and_no_small_difference(
    study: tables.StudyTables,
) -> None:
    protected, suppressed = disclosure.protect(study, THRESHOLD)
    assert suppressed > 0
    flow = protected.flow
    for column in flow.columns:
        for stage in flow.index:
            assert not (_published(flow.at[stage, column]) and flow.at[stage, column] in SMALL)
            if _published(flow.at[stage, column]) and _published(flow.at["consented", column]):
                assert flow.at["consented", column] - flow.at[stage, column] not in SMALL
    for stage in flow.index:
        assert sum(value == disclosure.SUPPRESSED for value in flow.loc[stage]) != 1
    outcomes = protected.outcomes
    for count in ("n", "n_paired", "n_meaningful_improvement"):
        assert not outcomes[count].map(lambda v: _published(v) and v in SMALL).any()
    for total, part in (("n", "n_paired"), ("n_paired", "n_meaningful_improvement")):
        both = outcomes[outcomes[total].map(_published) & outcomes[part].map(_published)]
        assert not (both[total] - both[part]).isin(SMALL).any()
    completeness = protected.completeness
    both = completeness[completeness["expected"].map(_published)
                        & completeness["scored"].map(_published)]
    assert not (both["expected"] - both["scored"]).isin(SMALL).any()
    for _, group in completeness.groupby(["timepoint", "instrument"]):
        for column in ("expected", "scored"):
            assert (group[column] == disclosure.SUPPRESSED).sum() != 1


def test_statistics_of_small_or_hidden_counts_are_hidden(study: tables.StudyTables) -> None:
    outcomes = study.outcomes.copy()
    outcomes.loc[0, "n"] = 5
    outcomes.loc[1, ["n", "n_paired"]] = [60, 55]
    protected, _ = disclosure.protect(replace(study, outcomes=outcomes), THRESHOLD)
    first, second = protected.outcomes.iloc[0], protected.outcomes.iloc[1]
    assert first["n"] == first["mean"] == first["median"] == disclosure.SUPPRESSED
    assert second["n"] == disclosure.SUPPRESSED and second["n_paired"] == 55
    assert second["sd"] == disclosure.SUPPRESSED
    assert second["mean"] == outcomes.loc[1, "mean"]
    assert second["mean_ci95_low"] == outcomes.loc[1, "mean_ci95_low"]
    assert all(protected.completeness.loc[
        protected.completeness["scored"] == disclosure.SUPPRESSED, "pct_scored"
    ] == disclosure.SUPPRESSED)


def test_numbers_at_risk_are_counts_and_so_are_their_differences() -> None:
    at_risk = pd.DataFrame({"arm": ["POD"] * 5 + ["TAU"] * 5, "time_days": [0, 182, 365, 548, 730] * 2,
                            "n_at_risk": [60, 40, 35, 20, 5, 60, 50, 30, 12, 0]})
    protected, suppressed = disclosure.protect(replace(_empty_study(), relapse_at_risk=at_risk), THRESHOLD)
    shown = protected.relapse_at_risk.set_index(["arm", "time_days"])["n_at_risk"]
    # POD: 5 is small; 40 − 35 = 5 left between days 182 and 365, so one of the two goes (35).
    assert shown[("POD", 730)] == shown[("POD", 365)] == disclosure.SUPPRESSED
    assert shown[("POD", 0)] == 60 and shown[("POD", 182)] == 40 and shown[("POD", 548)] == 20
    # TAU: no small count, no small difference; the zero stays.
    assert shown.loc["TAU"].tolist() == [60, 50, 30, 12, 0]
    assert suppressed == 2
    published = shown[shown.map(_published)]
    assert not published.isin(SMALL).any()


def test_a_small_arm_loses_its_curve_and_its_total_a_partner() -> None:
    arms = ["POD"] * 5 + ["TAU"] * 40
    frame = pd.DataFrame({
        "participant_id": [f"P{i}" for i in range(45)], "arm": arms, "cluster_id": None,
        "is_followed": True, "time_days": np.arange(45, dtype=float) * 10 + 5,
        "is_relapse": np.arange(45) % 2,
    })
    relapse = survival.analyse(frame)
    study = replace(_empty_study(), relapse=relapse.summary, relapse_curve=relapse.curve,
                    relapse_at_risk=relapse.at_risk)
    protected, _ = disclosure.protect(study, THRESHOLD)
    summary = protected.relapse.set_index("arm")
    assert summary.loc["POD", "n"] == summary.loc["POD", "events"] == disclosure.SUPPRESSED
    # n: POD + TAU = effect, so a second cell of the column goes with POD's.
    assert (summary["n"] == disclosure.SUPPRESSED).sum() == 2
    assert summary.loc["POD", "km_182"] == summary.loc["POD", "median_days"] == disclosure.SUPPRESSED
    assert summary.loc["TAU", "km_182"] == relapse.summary.set_index("arm").loc["TAU", "km_182"]
    assert set(protected.relapse_curve["arm"]) == {"TAU"}
    # No POD participant is still at risk when TAU relapses: the Cox likelihood has no maximum.
    assert "no maximum" in relapse.summary.set_index("arm").loc["effect", "note"]


def _empty_study() -> tables.StudyTables:
    flow = pd.DataFrame({"POD": [10]}, index=["consented"])
    outcomes = pd.DataFrame(columns=stats.OUTCOME_SUMMARY_COLUMNS)
    completeness = pd.DataFrame(columns=["timepoint", "instrument", "site", "expected", "scored", "pct_scored"])
    ce = pd.DataFrame(columns=economics.SUMMARY_COLUMNS)
    return tables.StudyTables(flow, outcomes, completeness, ce, pd.DataFrame(), pd.DataFrame())


def test_a_table_protection_left_as_it_was_is_drawn_from_the_original() -> None:
    at_risk = pd.DataFrame({"arm": ["POD"] * 3 + ["TAU"] * 3, "time_days": [0, 182, 365] * 2,
                            "n_at_risk": [60, 40, 20, 60, 50, 30]})
    hidden = at_risk.assign(n_at_risk=[60, 40, 5, 60, 50, 30])
    for table, kept in ((at_risk, True), (hidden, False)):
        study = replace(_empty_study(), relapse_at_risk=table)
        protected, suppressed = disclosure.protect(study, THRESHOLD)
        assert protected.relapse_at_risk["n_at_risk"].dtype == object  # a text-capable column either way
        drawn = disclosure.unchanged_kept(protected, study)
        assert (drawn.relapse_at_risk is table) == kept == (suppressed == 0)
        if not kept:
            assert drawn.relapse_at_risk is protected.relapse_at_risk
