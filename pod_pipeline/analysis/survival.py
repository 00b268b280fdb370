"""Time to relapse: Kaplan–Meier by arm and a Cox model for arm, from statsmodels' duration models.

Kaplan–Meier survival with Greenwood's variance (statsmodels' `SurvfuncRight`) and a log-log 95%
interval, S^exp(±1.96·se(S) / (S·|ln S|)), as R's `survfit(conf.type = "log-log")` gives it; no
interval where S is 1 or 0, and no estimate past an arm's longest follow-up. The median is the
first time S ≤ 0.5 (null when not reached). The hazard ratio is POD versus TAU from a Cox model
(`PHReg`, Efron ties). Its variance is cluster-robust (sandwich over cluster score sums, no
small-sample factor, as R's `coxph(cluster = )`) when the followed participants fall in at least
two clusters and some cluster holds more than one of them; a participant without a cluster is a
cluster of one. With fewer than `FEW_CLUSTERS` clusters the note says that the robust interval is
likely too narrow. Otherwise the variance is the model's. The robust variance's score residuals
are statsmodels' own, computed in one pass by `CoxModel` (9 s at 1,000,000 participants where
statsmodels' loop took 107 s).

statsmodels and scipy are imported where they are used (and `cox.py` with statsmodels), not with
this module: every process loading the Dagster definitions imports this module, and a run imports
them while dbt runs (transform/assets.py).
"""

import functools
import math
import warnings
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from pod_pipeline.analysis.economics import COMPARATOR, INTERVENTION

EFFECT = "effect"
LANDMARKS = (182, 365, 730)
AT_RISK_TIMES = (0, 182, 365, 548, 730)
FEW_CLUSTERS = 20
# |log HR| beyond this means the partial likelihood had no maximum (one arm's events alone).
MAX_LOG_HR = 15.0


@functools.cache
def z95() -> float:
    """The standard normal's 97.5th percentile (scipy's, to the last bit)."""
    from scipy import stats

    return float(stats.norm.ppf(0.975))


# Every relation the SQL below reads: the analysis is computed again when one changes (memo.py).
INPUTS = ("marts.time_to_relapse",)
INPUT_SQL = """
select
    participant_id, arm, cluster_id,
    coalesce(is_followed_in_epr, false) and time_days is not null and is_relapse is not null
        as is_followed,
    cast(time_days as double) as time_days,
    cast(is_relapse as integer) as is_relapse
from marts.time_to_relapse
order by participant_id
"""


@dataclass(frozen=True)
class Curve:
    """One arm's Kaplan–Meier estimate at each event time, and how long the longest follow-up is."""

    time: np.ndarray
    n_risk: np.ndarray
    events: np.ndarray
    survival: np.ndarray
    se: np.ndarray
    followed_to: float

    def at(self, day: float) -> tuple[float, float, float]:
        """Survival at `day` with its log-log 95% interval (NaN past the longest follow-up)."""
        if not day <= self.followed_to:
            return math.nan, math.nan, math.nan
        index = int(np.searchsorted(self.time, day, side="right")) - 1
        if index < 0:
            return 1.0, math.nan, math.nan
        low, high = loglog_interval(self.survival[index], self.se[index])
        return float(self.survival[index]), low, high

    def median(self) -> float:
        """First time the survival is at or below one half; NaN when it never is."""
        # A tolerance: 1 − 1/2 computed as a product of fractions may land a hair above 0.5.
        reached = np.flatnonzero(self.survival <= 0.5 + 1e-12)
        return float(self.time[reached[0]]) if len(reached) else math.nan


@dataclass(frozen=True)
class RelapseAnalysis:
    """The summary table (per arm, plus `effect`), each arm's curve, and the numbers at risk."""

    summary: pd.DataFrame
    curve: pd.DataFrame
    at_risk: pd.DataFrame
    not_followed: dict[str, int]


def loglog_interval(survival: float, se: float) -> tuple[float, float]:
    """95% interval of S on the log(−log S) scale: S^exp(±z·se/(S·|ln S|)); none at S = 0 or 1."""
    if not 0 < survival < 1 or not np.isfinite(se):
        return math.nan, math.nan
    width = z95() * se / (survival * abs(math.log(survival)))
    return float(survival ** math.exp(width)), float(survival ** math.exp(-width))


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> Curve:
    """Kaplan–Meier with Greenwood's standard error at each event time (statsmodels)."""
    time, event = np.asarray(time, float), np.asarray(event, float)
    if len(time) == 0:
        empty = np.empty(0)
        return Curve(empty, empty, empty, empty, empty, math.nan)
    from statsmodels.duration.survfunc import SurvfuncRight

    fit = SurvfuncRight(time, event)
    return Curve(np.asarray(fit.surv_times, float), np.asarray(fit.n_risk, float),
                 np.asarray(fit.n_events, float), np.asarray(fit.surv_prob, float),
                 np.asarray(fit.surv_prob_se, float), float(time.max()))


def numbers_at_risk(time: np.ndarray, days: tuple[int, ...] = AT_RISK_TIMES) -> list[int]:
    """How many are still followed (time ≥ day) at each day."""
    return [int(np.sum(np.asarray(time) >= day)) for day in days]


def curve_rows(arm: str, curve: Curve, time: np.ndarray) -> pd.DataFrame:
    """The step function to draw: day 0, each event time, and the longest follow-up."""
    times = np.r_[0.0, curve.time]
    survival = np.r_[1.0, curve.survival]
    events = np.r_[0.0, curve.events]
    se = np.r_[np.nan, curve.se]
    if len(time) and (not len(curve.time) or curve.followed_to > curve.time[-1]):
        times, survival = np.r_[times, curve.followed_to], np.r_[survival, survival[-1]]
        events, se = np.r_[events, 0.0], np.r_[se, se[-1]]
    intervals = [loglog_interval(s, e) for s, e in zip(survival, se, strict=True)]
    return pd.DataFrame({
        "arm": arm, "time_days": times, "n_risk": [int(np.sum(time >= day)) for day in times],
        "events": events, "survival": survival,
        "survival_ci95_low": [low for low, _ in intervals],
        "survival_ci95_high": [high for _, high in intervals],
    })


def cox_arm(
    time: np.ndarray, event: np.ndarray, is_pod: np.ndarray, unit: np.ndarray | None
) -> dict[str, object]:
    """Hazard ratio POD versus TAU with its 95% interval and Wald p, robust over `unit` if given."""
    from scipy import stats
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    from pod_pipeline.analysis.cox import CoxModel

    model = CoxModel(np.asarray(time, float), np.asarray(is_pod, float)[:, None],
                     status=np.asarray(event, float), ties="efron")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = model.fit(groups=unit) if unit is not None else model.fit()
    converged = not any(issubclass(warning.category, ConvergenceWarning) for warning in caught)
    beta, se = float(fit.params[0]), float(fit.bse[0])
    if not (converged and np.isfinite(beta) and np.isfinite(se)) or abs(beta) > MAX_LOG_HR:
        return {"note": "the Cox likelihood has no maximum (events in one arm only at the times "
                        "the other is at risk): no hazard ratio"}
    return {
        "hazard_ratio": math.exp(beta),
        "hr_ci95_low": math.exp(beta - z95() * se),
        "hr_ci95_high": math.exp(beta + z95() * se),
        "p_value": float(2 * stats.norm.sf(abs(beta / se))),
    }


def cluster_units(participants: pd.Series, clusters: pd.Series) -> tuple[np.ndarray | None, int]:
    """Cluster labels for the robust variance (a participant without one is their own), or None.

    None when there is nothing to be robust to: fewer than two clusters, or every cluster of one.
    """
    units = clusters.astype(object).where(clusters.notna(), "participant:" + participants.astype(str))
    named = clusters.dropna()
    if named.nunique() == 0 or units.nunique() < 2 or not named.duplicated().any():
        return None, int(named.nunique())
    return units.astype(str).to_numpy(), int(named.nunique())


def effect_row(followed: pd.DataFrame) -> dict[str, object]:
    """The `effect` row: Cox hazard ratio for arm, or nulls and the reason it cannot be had."""
    events = {arm: int(followed.loc[followed["arm"] == arm, "is_relapse"].sum())
              for arm in (INTERVENTION, COMPARATOR)}
    row: dict[str, object] = {"arm": EFFECT, "n": len(followed), "events": sum(events.values()),
                              "variance": None}
    empty = [arm for arm in (INTERVENTION, COMPARATOR) if not (followed["arm"] == arm).any()]
    if empty:
        return row | {"note": f"no participant followed in the EPR in arm(s) {', '.join(empty)}: "
                              "no hazard ratio"}
    if min(events.values()) == 0:
        none = [arm for arm, count in events.items() if count == 0]
        return row | {"note": f"no relapse in arm(s) {', '.join(none)}: no hazard ratio"}
    unit, clusters = cluster_units(followed["participant_id"], followed["cluster_id"])
    row["n_clusters"] = clusters
    row["variance"] = "cluster_robust" if unit is not None else "model"
    row |= cox_arm(followed["time_days"].to_numpy(), followed["is_relapse"].to_numpy(),
                   (followed["arm"] == INTERVENTION).to_numpy(), unit)
    if unit is not None and clusters < FEW_CLUSTERS and "hazard_ratio" in row:
        row["note"] = (f"{clusters} clusters: a cluster-robust interval from fewer than "
                       f"{FEW_CLUSTERS} clusters is likely too narrow")
    return row


def _arm_row(arm: str, n: int, curve: Curve, not_followed: int) -> dict[str, object]:
    row: dict[str, object] = {"arm": arm, "n": n, "events": int(curve.events.sum()),
                              "n_not_followed": not_followed, "median_days": curve.median()}
    for day in LANDMARKS:
        row[f"km_{day}"], row[f"km_{day}_ci95_low"], row[f"km_{day}_ci95_high"] = curve.at(day)
    if row["n"] == 0:
        row["note"] = "no participant followed in the EPR"
    elif row["events"] == 0:
        row["note"] = "no relapse: survival 1 throughout, median not reached"
    return row


def analyse(participants: pd.DataFrame) -> RelapseAnalysis:
    """relapse_summary, the curves and the numbers at risk from marts.time_to_relapse's rows."""
    unknown = set(participants["arm"].dropna().unique()) - {INTERVENTION, COMPARATOR}
    if unknown:
        raise ValueError(f"marts.time_to_relapse has arms {sorted(unknown)}: expected POD, TAU")
    arms = [arm for arm in (INTERVENTION, COMPARATOR) if (participants["arm"] == arm).any()]
    followed = participants[participants["is_followed"].astype(bool)]
    rows, curves, at_risk = [], [], []
    not_followed: dict[str, int] = {}
    for arm in arms:
        mine = followed[followed["arm"] == arm]
        not_followed[arm] = int((participants["arm"] == arm).sum()) - len(mine)
        curve = kaplan_meier(mine["time_days"].to_numpy(), mine["is_relapse"].to_numpy())
        rows.append(_arm_row(arm, len(mine), curve, not_followed[arm]))
        curves.append(curve_rows(arm, curve, mine["time_days"].to_numpy()))
        at_risk.append(pd.DataFrame({"arm": arm, "time_days": AT_RISK_TIMES,
                                     "n_at_risk": numbers_at_risk(mine["time_days"].to_numpy())}))
    if len(arms) == 2:
        effect = effect_row(followed)
        effect["n_not_followed"] = sum(not_followed.values())
        rows.append(effect)
    else:
        reason = (f"marts.time_to_relapse has the arm(s) {', '.join(arms) or 'none'} only: no "
                  f"{INTERVENTION} versus {COMPARATOR} hazard ratio")
        for row in rows:
            row["note"] = row.get("note") or reason
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS).astype(SUMMARY_TYPES)
    curve_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    at_risk_frame = pd.concat(at_risk, ignore_index=True) if at_risk else pd.DataFrame(columns=AT_RISK_COLUMNS)
    return RelapseAnalysis(
        summary,
        curve_frame.reindex(columns=CURVE_COLUMNS).astype(CURVE_TYPES),
        at_risk_frame.reindex(columns=AT_RISK_COLUMNS).astype({"arm": "string", "time_days": "int64",
                                                               "n_at_risk": "int64"}),
        not_followed,
    )


def load_participants(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """marts.time_to_relapse's columns the analysis needs, with whether each row is followed."""
    return con.execute(INPUT_SQL).df()


KM_COLUMNS = [f"km_{day}{suffix}" for day in LANDMARKS for suffix in ("", "_ci95_low", "_ci95_high")]
SUMMARY_COLUMNS = [
    "arm", "n", "events", "n_not_followed", "median_days", *KM_COLUMNS,
    "hazard_ratio", "hr_ci95_low", "hr_ci95_high", "p_value", "variance", "n_clusters", "note",
]
SUMMARY_TYPES = {
    "arm": "string", "n": "int64", "events": "int64", "n_not_followed": "int64",
    "median_days": "float64", **dict.fromkeys(KM_COLUMNS, "float64"),
    "hazard_ratio": "float64", "hr_ci95_low": "float64", "hr_ci95_high": "float64", "p_value": "float64",
    "variance": "string", "n_clusters": "Int64", "note": "string",
}
CURVE_COLUMNS = ["arm", "time_days", "n_risk", "events", "survival", "survival_ci95_low", "survival_ci95_high"]
CURVE_TYPES = {"arm": "string", "time_days": "float64", "n_risk": "int64", "events": "int64",
               "survival": "float64", "survival_ci95_low": "float64", "survival_ci95_high": "float64"}
AT_RISK_COLUMNS = ["arm", "time_days", "n_at_risk"]
