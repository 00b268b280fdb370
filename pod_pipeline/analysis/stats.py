"""Outcome summary: each scored parameter per arm × timepoint, and its paired change from baseline.

The analysis records are read in one pass, grouped in DuckDB: per group, the list of its values
and the list of its paired changes (at 1,000,000 participants 22 million and 11 million doubles,
about 260 MB), and its count of meaningful improvements. Each list is sorted in numpy before
anything is computed from it, so the figures are computed over the values in one order every run
and float sums repeat to the last bit: the levels (n, mean, sd, quartiles as DuckDB's
quantile_cont, linear between order statistics) with numpy, the paired statistics with scipy.
(DuckDB's ordered aggregates gave the same figures, but sorted every group again, over a copy of
the records kept as a temporary table: at 1,000,000 participants about 8 of the 12 seconds.)
"""

import warnings
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pod_pipeline.analysis.tables import BASELINE, sort_timepoints
from pod_pipeline.sql import lit

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
# The carers' records: each carer's row beside their baseline row, then one record per score that
# is there (a carer's row and its baseline joined once for both scores, not once per score: at
# 1,000,000 participants 0.9 s against 2.0-2.7 s). A carer at baseline, or with no baseline score,
# has no paired change.
_CARER_SCORES = "\nunion all\n".join(f"""
select
    'carer' as respondent, arm, {lit(score)} as parameter, timepoint,
    cast({score} as double) as value,
    cast(case when timepoint <> '{BASELINE}' then {score} - baseline_{score} end as double) as change,
    cast(null as boolean) as is_meaningful_improvement
from carer_rows
where {score} is not null""" for score in CARER_PARAMETERS)
RECORDS_SQL = f"""
with carer_rows as (
    select
        carer.timepoint, participants.arm,
        {", ".join(f"carer.{score}, baseline.{score} as baseline_{score}" for score in CARER_PARAMETERS)}
    from marts.carer_timepoints as carer
    inner join marts.participants as participants using (participant_id)
    left join marts.carer_timepoints as baseline
        on baseline.participant_id = carer.participant_id
        and baseline.carer_id = carer.carer_id
        and baseline.timepoint = '{BASELINE}'
)
select
    'service_user' as respondent, arm, parameter, timepoint,
    cast(value as double) as value,
    cast(case when not is_baseline then change_from_baseline end as double) as change,
    is_meaningful_improvement
from marts.outcome_scores
where is_analysis_record
union all{_CARER_SCORES}
"""

# One row per group of analysis records: its values and its paired changes, each as a list in no
# particular order (sorted in numpy), and how many of its paired changes are a meaningful
# improvement: null, not 0, where the parameter has no meaningful-improvement threshold.
GROUPS_SQL = f"""
with analysis_records as ({RECORDS_SQL})
select
    respondent, arm, parameter, timepoint,
    coalesce(list(value) filter (where value is not null), []) as "values",
    coalesce(list(change) filter (where change is not null), []) as changes,
    case when count(is_meaningful_improvement) filter (where change is not null) > 0
        then count(*) filter (where change is not null and is_meaningful_improvement)
    end as n_meaningful_improvement
from analysis_records
group by all
"""


def paired_statistics(changes: np.ndarray) -> dict[str, float | None]:
    """Mean change, its 95% t interval, paired t and Wilcoxon signed-rank p, and Cohen's dz."""
    from scipy import stats  # here, not with the module: see survival.py
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
    from scipy import stats
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
    from scipy import stats
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
    table = con.sql(GROUPS_SQL).to_arrow_table()
    # numpy sorts on one core and lets go of the GIL while it does: the two columns side by side.
    with ThreadPoolExecutor(2) as pool:
        values, changes = pool.map(_sorted_lists, (table.column("values"), table.column("changes")))
    levels = pd.DataFrame({name: pd.Series(table.column(name).to_pylist(), dtype="string") for name in GROUP})
    levels["n"] = np.array([len(v) for v in values], dtype=np.int64)
    levels["mean"] = [float(np.mean(v)) if len(v) else np.nan for v in values]
    levels["sd"] = [float(np.std(v, ddof=1)) if len(v) > 1 else np.nan for v in values]
    quartiles = pd.DataFrame([np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else [np.nan] * 3 for v in values],
                             columns=["q1", "median", "q3"], dtype=float)
    levels = pd.concat([levels, quartiles], axis=1)
    levels["n_paired"] = np.array([len(c) for c in changes], dtype=np.int64)
    levels["n_meaningful_improvement"] = pd.array(table.column("n_meaningful_improvement").to_pylist(),
                                                  dtype="Int64")
    levels["mean_ci95_low"], levels["mean_ci95_high"] = mean_interval(
        levels["n"], levels["mean"], levels["sd"]
    )
    paired = [paired_statistics(group) for group in changes]
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


def _sorted_lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Each row's list of doubles as a numpy array, sorted by value."""
    lists = column.combine_chunks()
    flat = lists.flatten().to_numpy(zero_copy_only=False)
    offsets = lists.offsets.to_numpy()
    return [np.sort(flat[offsets[i]:offsets[i + 1]]) for i in range(len(lists))]


OUTCOME_SUMMARY_COLUMNS = [
    "respondent", "arm", "parameter", "timepoint",
    "n", "mean", "sd", "mean_ci95_low", "mean_ci95_high", "median", "q1", "q3",
    "n_paired", "mean_change", "sd_change", "change_ci95_low", "change_ci95_high",
    "p_value_paired_t", "p_value_wilcoxon", "effect_size_dz", "n_meaningful_improvement", "note",
]
