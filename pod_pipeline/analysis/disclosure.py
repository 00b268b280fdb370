"""Disclosure control for the report that leaves the study team: small counts and what reveals them.

Primary suppression hides every published count from 1 to `threshold - 1`. Secondary suppression
then hides further cells wherever a hidden count could be recovered by subtraction: each
*relation* is a set of cells that add up (parts and their published total, in any order, since
one unknown in a sum is always recoverable). A relation may include a count that is not published
but follows from the others (participants without a pair = n − n_paired); such a count is
sensitive when small. While some relation has exactly one unknown cell and that cell is suppressed
or small, a further published count of the relation is suppressed (the smallest non-zero one).
Statistics beside a hidden count are hidden where they describe fewer than `threshold` people or
would give the count back.
"""

from collections.abc import Hashable, Iterable
from dataclasses import fields, replace

import pandas as pd

from pod_pipeline.analysis.tables import StudyTables

SUPPRESSED = "*"
LEVEL_STATISTICS = ["mean", "sd", "mean_ci95_low", "mean_ci95_high", "median", "q1", "q3"]
CHANGE_STATISTICS = ["mean_change", "sd_change", "change_ci95_low", "change_ci95_high",
                     "p_value_paired_t", "p_value_wilcoxon", "effect_size_dz"]
# Beside a hidden count of 8 or more, what would give it back: n follows from the sd and the
# width of the t interval, n_paired also from a p-value beside the mean change and its interval.
# The spread and the tests go; the estimates and their intervals stay.
REVEALING_STATISTICS = {
    "n": ["sd"],
    "n_paired": ["sd_change", "effect_size_dz", "p_value_paired_t", "p_value_wilcoxon"],
}
ARM_STATISTICS = ["mean_cost", "mean_cost_ci95_low", "mean_cost_ci95_high",
                  "mean_qaly", "mean_qaly_ci95_low", "mean_qaly_ci95_high"]

# An arm's Kaplan–Meier figures describe its followed participants and step at each relapse; the
# hazard ratio and its interval describe both arms.
SURVIVAL_STATISTICS = ["median_days", *[f"km_{day}{suffix}" for day in (182, 365, 730)
                                        for suffix in ("", "_ci95_low", "_ci95_high")]]
EFFECT_STATISTICS = ["hazard_ratio", "hr_ci95_low", "hr_ci95_high", "p_value"]

Cell = tuple[Hashable, str]


def note(threshold: int) -> str:
    """The sentence a suppressed report carries."""
    return (
        f"Disclosure control: counts from 1 to {threshold - 1} are shown as {SUPPRESSED}. So are "
        "further cells that would let a hidden count be worked out by subtraction, from a "
        "published total or from the other counts in the same row, and so is any count from 1 to "
        f"{threshold - 1} that would follow from subtracting one published count from another "
        f"(for example consented minus assessed). Statistics on fewer than {threshold} people, "
        "and standard deviations, effect sizes or p-values that would give a hidden count back, "
        "are hidden too. Zeros are shown. Each table is protected on its own."
    )


def is_small(value: float, threshold: int) -> bool:
    """Whether a count is sensitive: from 1 to threshold − 1 (zeros and missing are not)."""
    return bool(pd.notna(value) and 1 <= value < threshold)


def small_counts(cells: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Primary suppression: the mask of counts from 1 to threshold − 1."""
    return cells.map(lambda value: is_small(value, threshold)).astype(bool)


def suppression_mask(
    cells: pd.DataFrame,
    relations: Iterable[list[Cell]],
    threshold: int,
    derived: dict[Cell, float] | None = None,
    prefer_to_keep: Iterable[str] = (),
) -> pd.DataFrame:
    """Mask of `cells` (counts; NaN = not a count) to suppress: primary, then secondary.

    Among the cells that could protect a relation, the secondary choice is the smallest non-zero
    count, except that columns in `prefer_to_keep` are chosen only when nothing else can be.
    """
    derived = derived or {}
    keep = set(prefer_to_keep)
    value = cells.stack(future_stack=True).to_dict() | derived
    primary = small_counts(cells, threshold).stack(future_stack=True)
    hidden = set(primary[primary].index)
    relations = [[cell for cell in relation if pd.notna(value[cell])] for relation in relations]
    changed = True
    while changed:
        changed = False
        for relation in relations:
            unknown = [cell for cell in relation if cell in hidden or cell in derived]
            if len(unknown) != 1:
                continue
            (cell,) = unknown
            if cell in derived and not is_small(value[cell], threshold):
                continue
            candidates = [c for c in relation if c not in hidden and c not in derived]
            if candidates:
                hidden.add(min(candidates, key=lambda c: (c[1] in keep, value[c] == 0, value[c])))
                changed = True
    return pd.DataFrame(
        [[(row, column) in hidden for column in cells.columns] for row in cells.index],
        index=cells.index, columns=cells.columns,
    )


def column_relations(frame: pd.DataFrame, columns: list[str]) -> list[list[Cell]]:
    """One relation per column over all rows (parts and their total row)."""
    return [[(row, column) for row in frame.index] for column in columns]


def group_relations(frame: pd.DataFrame, by: list[str], column: str) -> list[list[Cell]]:
    """One relation per group of rows in a column (the group's parts and its total row)."""
    return [[(row, column) for row in rows] for rows in frame.groupby(by).groups.values()]


def nested_relations(
    frame: pd.DataFrame, pairs: list[tuple[str, str, str]]
) -> tuple[list[list[Cell]], dict[Cell, float]]:
    """Relations total = subset + remainder for (total, subset, remainder name) column pairs."""
    relations: list[list[Cell]] = []
    derived: dict[Cell, float] = {}
    for total, subset, remainder in pairs:
        for row in frame.index:
            if pd.isna(frame.at[row, total]) or pd.isna(frame.at[row, subset]):
                continue
            derived[(row, remainder)] = frame.at[row, total] - frame.at[row, subset]
            relations.append([(row, total), (row, subset), (row, remainder)])
    return relations, derived


def apply_mask(frame: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
    """The frame with masked cells replaced by the suppression marker."""
    shown = frame.astype(object)
    for column in mask.columns:
        shown.loc[mask[column].to_numpy(), column] = SUPPRESSED
    return shown


def blank_statistics(
    frame: pd.DataFrame, mask: pd.DataFrame, statistics: dict[str, list[str]]
) -> pd.DataFrame:
    """Replace the statistics that belong to each masked count with the marker."""
    shown = frame.astype(object)
    for count, columns in statistics.items():
        shown.loc[mask[count].to_numpy(), columns] = SUPPRESSED
    return shown


def protect(tables: StudyTables, threshold: int) -> tuple[StudyTables, int]:
    """The tables with disclosure control applied, and the number of count cells suppressed."""
    flow, flow_hidden = _protect_flow(tables.flow, threshold)
    outcomes, outcome_hidden = _protect_outcomes(tables.outcomes, threshold)
    completeness, completeness_hidden = _protect_completeness(tables.completeness, threshold)
    ce, ce_hidden = _protect_cost_effectiveness(tables.cost_effectiveness, threshold)
    relapse, curve, relapse_hidden = _protect_relapse(tables.relapse, tables.relapse_curve, threshold)
    at_risk, at_risk_hidden = _protect_at_risk(tables.relapse_at_risk, threshold)
    protected = replace(
        tables, flow=flow, outcomes=outcomes, completeness=completeness, cost_effectiveness=ce,
        relapse=relapse, relapse_curve=curve, relapse_at_risk=at_risk,
    )
    hidden = flow_hidden + outcome_hidden + completeness_hidden + ce_hidden + relapse_hidden + at_risk_hidden
    return protected, hidden


def unchanged_kept(protected: StudyTables, original: StudyTables) -> StudyTables:
    """The protected tables, each replaced by its original where protection changed no value.

    Protection turns a table's count columns to text-capable ones whether or not it hides a cell,
    so a table it left as it was still differs in type. A figure drawn from the original is then
    the team's own drawing (figures.render draws it once for both reports). Equal as objects means
    equal: protection only ever puts the marker or a blank where a value was.
    """
    kept = {}
    for field in fields(StudyTables):
        shown, table = getattr(protected, field.name), getattr(original, field.name)
        if (list(shown.columns) == list(table.columns) and shown.index.equals(table.index)
                and shown.astype(object).equals(table.astype(object))):
            kept[field.name] = table
    return replace(protected, **kept)


def _protect_flow(flow: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, int]:
    # Arms (rows once transposed) add up to the total; every stage is a subset of consented.
    by_arm = flow.T
    relations, derived = nested_relations(
        by_arm, [("consented", stage, f"not_{stage}") for stage in by_arm.columns[1:]]
    )
    if "total" in by_arm.index:
        relations += column_relations(by_arm, list(by_arm.columns))
    mask = suppression_mask(by_arm, relations, threshold, derived).T
    return apply_mask(flow, mask), int(mask.to_numpy().sum())


def _protect_outcomes(outcomes: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, int]:
    counts = outcomes[["n", "n_paired", "n_meaningful_improvement"]].astype(float)
    relations, derived = nested_relations(counts, [
        ("n", "n_paired", "without_pair"),
        ("n_paired", "n_meaningful_improvement", "not_improved"),
    ])
    # Hiding a paired n costs the change analysis its tests: hide n where either would do.
    mask = suppression_mask(counts, relations, threshold, derived, prefer_to_keep=["n_paired"])
    small = small_counts(counts, threshold)
    shown = blank_statistics(outcomes, small, {"n": LEVEL_STATISTICS,
                                               "n_paired": CHANGE_STATISTICS})
    shown = blank_statistics(shown, mask & ~small, REVEALING_STATISTICS)
    return apply_mask(shown, mask), int(mask.to_numpy().sum())


def _protect_completeness(
    completeness: pd.DataFrame, threshold: int
) -> tuple[pd.DataFrame, int]:
    # Sites add up to the all-sites row; scored is a subset of expected.
    counts = completeness[["expected", "scored"]].astype(float)
    relations, derived = nested_relations(counts, [("expected", "scored", "unscored")])
    for column in counts.columns:
        relations += group_relations(completeness, ["timepoint", "instrument"], column)
    mask = suppression_mask(counts, relations, threshold, derived)
    # The share scored times the expected count gives the scored count back, and vice versa.
    shown = blank_statistics(
        completeness, mask, {"expected": ["pct_scored"], "scored": ["pct_scored"]}
    )
    return apply_mask(shown, mask), int(mask.to_numpy().sum())


def _protect_cost_effectiveness(
    summary: pd.DataFrame, threshold: int
) -> tuple[pd.DataFrame, int]:
    # The arms' complete cases add up to the incremental row's n.
    counts = summary[["n"]].astype(float)
    mask = suppression_mask(counts, [[(row, "n") for row in summary.index]], threshold)
    shown = blank_statistics(summary, small_counts(counts, threshold), {"n": ARM_STATISTICS})
    return apply_mask(shown, mask), int(mask.to_numpy().sum())


def _protect_relapse(
    summary: pd.DataFrame, curve: pd.DataFrame, threshold: int
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """relapse_summary: the arms add up to the effect row; relapses and not followed are counts too.

    An arm whose own counts are small loses its Kaplan–Meier figures, and its curve is not drawn
    (each step of a curve is a relapse); the effect row loses the hazard ratio when its counts are.
    """
    if summary.empty:
        return summary, curve, 0
    columns = ["n", "events", "n_not_followed"]
    counts = summary[columns].astype(float)
    relations, derived = nested_relations(counts, [("n", "events", "not_relapsed")])
    relations += column_relations(counts, columns) if (summary["arm"] == "effect").any() else []
    mask = suppression_mask(counts, relations, threshold, derived)
    small = small_counts(counts[["n", "events"]], threshold).any(axis=1)
    is_effect = (summary["arm"] == "effect").to_numpy()
    shown = summary.astype(object)
    shown.loc[small.to_numpy() & ~is_effect, SURVIVAL_STATISTICS] = SUPPRESSED
    shown.loc[small.to_numpy() & is_effect, EFFECT_STATISTICS] = SUPPRESSED
    hidden_arms = set(summary.loc[small.to_numpy() & ~is_effect, "arm"])
    return (apply_mask(shown, mask), curve[~curve["arm"].isin(hidden_arms)].reset_index(drop=True),
            int(mask.to_numpy().sum()))


def _protect_at_risk(at_risk: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, int]:
    """Numbers at risk per arm × day are counts; so is the difference between two neighbours (the
    participants who relapsed or stopped being followed in between)."""
    if at_risk.empty:
        return at_risk, 0
    ordered = at_risk.sort_values(["arm", "time_days"]).reset_index(drop=True)
    counts = ordered[["n_at_risk"]].astype(float)
    relations: list[list[Cell]] = []
    derived: dict[Cell, float] = {}
    for rows in ordered.groupby("arm").indices.values():
        for before, after in zip(rows[:-1], rows[1:], strict=True):
            derived[(before, "left")] = counts.at[before, "n_at_risk"] - counts.at[after, "n_at_risk"]
            relations.append([(before, "n_at_risk"), (after, "n_at_risk"), (before, "left")])
    mask = suppression_mask(counts, relations, threshold, derived)
    return apply_mask(ordered, mask), int(mask.to_numpy().sum())
