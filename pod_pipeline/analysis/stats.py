"""Outcome summary: each scored parameter per arm × timepoint, and its paired change from baseline.

Levels (n, mean, sd, quartiles) are exact aggregates computed in DuckDB; the paired statistics are
computed with scipy on one group's vector of changes at a time. The records are built once, as a
temporary table; the changes are read from it in one pass, as a list per group (at 1,000,000
participants 11 million doubles, 88 MB), instead of a query per group.
"""

import warnings

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from pod_pipeline.analysis.tables import BASELINE, sort_timepoints

# The carer questionnaire's scores are contract columns of marts.carer_timepoints.
CARER_PARAMETERS = ("cws_wellbeing_score", "cws_support_score")
GROUP = ["respondent", "arm", "parameter", "timepoint"]
PAIRED_COLUMNS = ["mean_change", "sd_change", "change_ci95_low", "change_ci95_high",
                  "p_value_paired_t", "p_value_wilcoxon", "effect_size_dz"]

NOTE_NO_BASELINE = "no baseline measurement for this parameter: no paired change"
NOTE_NO_PAIRS = "no participant with both a baseline and this timepoint"
NOTE_ONE_PAIR = "a single paired case: no interval, tests or effect size"
NOTE_NO_VARIATION = "every paired change is equal: no t-test or effect size"

# Every relation the SQL below reads: the analysis is computed again when one changes (memo.py).
INPUTS = ("marts.outcome_scores", "marts.carer_timepoints", "marts.participants")
RECORDS_SQL = f"""
create or replace temp table analysis_records as
with carer_long as (
    unpivot marts.carer_timepoints
    on {", ".join(CARER_PARAMETERS)}
    into name parameter value value
)
select
    'service_user' as respondent, arm, parameter, timepoint,
    cast(value as double) as value,
    cast(case when not is_baseline then change_from_baseline end as double) as change,
    is_meaningful_improvement
from marts.outcome_scores
where is_analysis_record
union all
select
    'carer' as respondent, participants.arm, carer.parameter, carer.timepoint,
    cast(carer.value as double) as value,
    cast(case when carer.timepoint <> '{BASELINE}' then carer.value - baseline.value end
        as double) as change,
    cast(null as boolean) as is_meaningful_improvement
from carer_long as carer
inner join marts.participants as participants using (participant_id)
left join carer_long as baseline
    on baseline.participant_id = carer.participant_id
    and baseline.carer_id = carer.carer_id
    and baseline.parameter = carer.parameter
    and baseline.timepoint = '{BASELINE}'
"""

LEVELS_SQL = """
select
    respondent, arm, parameter, timepoint,
    count(value) as n,
    -- Ordered aggregates: a parallel float sum depends on the order rows arrive in, and the same
    -- data must give the same figures to the last bit in every delivery.
    avg(value order by value) as mean,
    stddev_samp(value order by value) as sd,
    quantile_cont(value, [0.25, 0.5, 0.75]) as quartiles,
    count(change) as n_paired,
    -- null, not 0, where the parameter has no meaningful-improvement threshold
    case when count(is_meaningful_improvement) filter (where change is not null) > 0
        then count(*) filter (where change is not null and is_meaningful_improvement)
    end as n_meaningful_improvement
from analysis_records
group by all
"""

# Each group's changes as one list, in one pass (no sort of every change by group in SQL): each
# list is sorted by value in numpy before its statistics, so they arrive in one order every run
# and float sums repeat to the last bit.
CHANGES_SQL = """
select respondent, arm, parameter, timepoint, list(change) as changes
from analysis_records
where change is not null
group by all
"""


def paired_statistics(changes: np.ndarray) -> dict[str, float | None]:
    """Mean change, its 95% t interval, paired t and Wilcoxon signed-rank p, and Cohen's dz."""
    result: dict[str, float | None] = dict.fromkeys(PAIRED_COLUMNS)
    if len(changes) == 0:
        return result
    result["mean_change"] = float(np.mean(changes))
    if len(changes) < 2:
        return result
    sd = float(np.std(changes, ddof=1))
    result["sd_change"] = sd
    # A one-sample t-test on the changes is the paired t-test (scipy's ttest_rel computes it so).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ttest = stats.ttest_1samp(changes, 0.0)
        interval = ttest.confidence_interval(0.95)
        if np.any(changes != 0):
            result["p_value_wilcoxon"] = wilcoxon_p(changes)
    result["change_ci95_low"] = float(interval.low)
    result["change_ci95_high"] = float(interval.high)
    if sd > 0:
        result["p_value_paired_t"] = float(ttest.pvalue)
        result["effect_size_dz"] = result["mean_change"] / sd
    return result


# scipy's wilcoxon (method "auto") answers a sample of at most this many changes that has zeros or
# ties with an exact permutation test over all 2**n sign flips.
PERMUTATION_MAX_N = 13


def wilcoxon_p(changes: np.ndarray) -> float:
    """The Wilcoxon signed-rank p-value exactly as `scipy.stats.wilcoxon(changes)` gives it.

    For a small sample with zeros or ties scipy runs a permutation test calling its statistic once
    per sign flip (up to 8,192 calls, about half a second a group); the same test is run here with
    the statistic computed for every flip at once. Any other sample goes to scipy unchanged.
    """
    nonzero = changes[changes != 0]
    has_zeros_or_ties = len(nonzero) < len(changes) or len(np.unique(np.abs(nonzero))) < len(nonzero)
    if len(changes) > PERMUTATION_MAX_N or not has_zeros_or_ties:
        return float(stats.wilcoxon(changes).pvalue)
    # Ranks of |change| (zeros dropped, ties averaged) are the same under every sign flip; the
    # statistic is the sum of the ranks of the positive changes, as in scipy.
    ranks = np.zeros(len(changes))
    ranks[changes != 0] = stats.rankdata(np.abs(nonzero), method="average")

    def r_plus(flipped: np.ndarray, axis: int) -> np.ndarray:
        return np.sum((np.moveaxis(flipped, axis, -1) > 0) * ranks, axis=-1)

    return float(stats.permutation_test((changes,), r_plus, permutation_type="samples",
                                        vectorized=True, alternative="two-sided").pvalue)


def mean_interval(n: pd.Series, mean: pd.Series, sd: pd.Series) -> tuple[pd.Series, pd.Series]:
    """95% t interval of a mean from n, mean and sd (missing below n = 2)."""
    n = n.astype(float).where(n >= 2)
    half_width = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return mean - half_width, mean + half_width


def _note(row: pd.Series, parameters_with_baseline: set[tuple[str, str]]) -> str | None:
    if row["timepoint"] == BASELINE:
        return None
    if (row["respondent"], row["parameter"]) not in parameters_with_baseline:
        return NOTE_NO_BASELINE
    if row["n_paired"] == 0:
        return NOTE_NO_PAIRS
    if row["n_paired"] == 1:
        return NOTE_ONE_PAIR
    if row["sd_change"] == 0:
        return NOTE_NO_VARIATION
    return None


def summarise_outcomes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Outcome summary, one row per respondent's parameter × arm × timepoint (analysis records)."""
    con.execute(RECORDS_SQL)
    levels = con.execute(LEVELS_SQL).df()
    quartiles = pd.DataFrame(
        [q if q is not None else [np.nan] * 3 for q in levels.pop("quartiles")],
        columns=["q1", "median", "q3"], dtype=float,
    )
    levels = pd.concat([levels, quartiles], axis=1)
    levels["mean_ci95_low"], levels["mean_ci95_high"] = mean_interval(
        levels["n"], levels["mean"], levels["sd"]
    )
    changes = _changes_by_group(con)
    paired = [
        paired_statistics(changes.get(key, np.empty(0)))
        for key in levels[GROUP].itertuples(index=False, name=None)
    ]
    con.execute("drop table analysis_records")
    paired_frame = pd.DataFrame(paired, index=levels.index, columns=PAIRED_COLUMNS, dtype=float)
    summary = pd.concat([levels, paired_frame], axis=1)
    with_baseline = set(
        summary.loc[summary["timepoint"] == BASELINE, ["respondent", "parameter"]]
        .itertuples(index=False, name=None)
    )
    summary["note"] = pd.Series(
        [_note(row, with_baseline) for _, row in summary.iterrows()], index=summary.index,
        dtype="string",
    )
    summary = sort_timepoints(summary, ["respondent", "parameter", "arm"])
    return summary[OUTCOME_SUMMARY_COLUMNS].astype(dict.fromkeys(GROUP, "string")).reset_index(
        drop=True
    )


def _changes_by_group(con: duckdb.DuckDBPyConnection) -> dict[tuple, np.ndarray]:
    """(respondent, arm, parameter, timepoint) -> its paired changes, sorted by value."""
    table = con.sql(CHANGES_SQL).to_arrow_table()
    lists = table.column("changes").combine_chunks()
    values = lists.flatten().to_numpy(zero_copy_only=False)
    offsets = lists.offsets.to_numpy()
    keys = zip(*(table.column(name).to_pylist() for name in GROUP), strict=True)
    return {key: np.sort(values[offsets[i]:offsets[i + 1]]) for i, key in enumerate(keys)}


OUTCOME_SUMMARY_COLUMNS = [
    "respondent", "arm", "parameter", "timepoint",
    "n", "mean", "sd", "mean_ci95_low", "mean_ci95_high", "median", "q1", "q3",
    "n_paired", "mean_change", "sd_change", "change_ci95_low", "change_ci95_high",
    "p_value_paired_t", "p_value_wilcoxon", "effect_size_dz", "n_meaningful_improvement", "note",
]
