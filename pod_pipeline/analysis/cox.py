"""statsmodels' Cox model with its survival-time structure, score residuals and robust covariance by
array operations, for the relapse analysis (survival.py)."""

import numpy as np
import pandas as pd
from statsmodels.base.model import LikelihoodModel
from statsmodels.duration.hazard_regression import PHReg, PHSurvivalTime
from statsmodels.tools.validation import string_like


class OneStratumSurvivalTime(PHSurvivalTime):
    """statsmodels' PHSurvivalTime for one stratum without entry times or offset, built with
    array operations: statsmodels' own loops in Python over every subject (a list per subject,
    two `searchsorted` calls each) took 7.2 s of the 11.4 s analysis at 1,000,000 participants.

    Every attribute the model reads is what statsmodels builds, element for element and in the
    same order (tests/test_analysis_survival.py compares them): subjects censored before the
    first failure dropped, the rest in `np.argsort` order of time, and per distinct failure time
    the subjects failing at it, those entering the risk set at it, and those leaving it.
    """

    def __init__(self, time: np.ndarray, status: np.ndarray, exog: np.ndarray) -> None:
        n = len(time)
        entry = np.zeros(n)
        self._check(time, status, np.zeros(n, dtype=np.int32), entry)
        self.nstrat_orig = self.nstrat = 1
        self.stratum_names = [np.int32(0)]
        # Entry times are 0, so nobody enters after the last failure; those censored before the
        # first failure are in no risk set.
        kept = np.flatnonzero(time >= time[status == 1].min())
        rows = kept[np.argsort(time[kept])]
        self.stratum_rows = [rows.astype(np.int32)]
        self.offset_s = None
        self.n_obs = len(rows)
        self.time_s, self.exog_s = [time[rows]], [exog[rows, :]]
        self.status_s, self.entry_s = [status[rows]], [entry[rows]]
        sorted_time = self.time_s[0]
        failed = np.flatnonzero(self.status_s[0] == 1)
        failure_times = np.unique(sorted_time[failed])
        self.ufailt = [failure_times]
        self.ufailt_ix = [_grouped(failed, np.searchsorted(failure_times, sorted_time[failed]),
                                   len(failure_times))]
        # Each kept subject enters at the last failure time at or before its own time (time is
        # sorted, so the groups are runs) and, entering at 0, leaves at the first failure time.
        everyone = np.arange(len(rows))
        self.risk_enter = [_grouped(everyone, np.searchsorted(failure_times, sorted_time, "right") - 1,
                                    len(failure_times))]
        self.risk_exit = [_grouped(everyone, np.searchsorted(failure_times, self.entry_s[0]),
                                   len(failure_times))]


def _grouped(members: np.ndarray, group: np.ndarray, groups: int) -> list[np.ndarray]:
    """`members` split by `group` (non-decreasing, each in 0..groups-1), as int32 arrays."""
    bounds = np.cumsum(np.bincount(group, minlength=groups))[:-1]
    return [np.asarray(part, dtype=np.int32) for part in np.split(members, bounds)]


class CoxModel(PHReg):
    """statsmodels' PHReg (one stratum, no entry times, no offset), with its survival-time
    structure built by array operations (OneStratumSurvivalTime) and its score residuals for
    the robust variance computed in one pass instead of a loop over failure times that rebuilds
    the risk set as a Python set each time (94 s of 107 at 1,000,000 participants).

    The residuals are statsmodels' own definition: for subject j, the sum over failure times t_i
    with t_i ≤ time_j of (x_j − a_i)(d_ij − e_j·ΔΛ_i), where a_i is the hazard-weighted mean of x
    over the risk set, ΔΛ_i = (failures at t_i) / Σ_risk e and e = exp(x·β); by cumulative sums
    over the failure times that is δ_j(x_j − a_m) − e_j(x_j·C0_m − C1_m), m the last failure time
    ≤ time_j. One difference, on purpose: a subject censored before the first failure is in no
    risk set, so its residual is 0 (as in R's coxph), where statsmodels gives NaN, which would
    make the whole robust variance NaN.
    """

    def __init__(self, endog: np.ndarray, exog: np.ndarray, status: np.ndarray, ties: str = "breslow") -> None:
        # PHReg.__init__ (statsmodels 0.15.0, pinned) with one stratum, no entry times and no
        # offset, and the survival-time structure built by OneStratumSurvivalTime.
        LikelihoodModel.__init__(self, endog, exog, status=status, entry=None, strata=None, offset=None,
                                 missing="drop")
        self.status = np.asarray(self.status)
        has_failures = bool((self.status == 1).any())
        self.surv = (OneStratumSurvivalTime(self.endog, self.status, self.exog) if has_failures
                     else PHSurvivalTime(self.endog, self.status, self.exog))
        self.nobs = len(self.endog)
        self.groups = None
        self.missing = "drop"
        self.df_resid = float(self.exog.shape[0] - np.linalg.matrix_rank(self.exog))
        self.df_model = float(np.linalg.matrix_rank(self.exog))
        self.ties = string_like(ties, "ties", options=("efron", "breslow"))

    def robust_covariance(self, params: np.ndarray) -> np.ndarray:
        """statsmodels' sandwich estimator, with each group's score residuals summed by array
        operations instead of a loop over subjects (1.2 s at 1,000,000 participants): the groups
        in order of first appearance and each group's sum in subject order, as statsmodels' loop
        adds them, so the result is the same to the last bit."""
        if self.groups is None:
            raise ValueError("`groups` must be specified to calculate the robust covariance matrix")
        hess = self.hessian(params)
        score_obs = self.score_residuals(params)
        codes, groups = pd.factorize(np.asarray(self.groups))
        grads = np.zeros((len(groups), score_obs.shape[1]))
        np.add.at(grads, codes, score_obs)
        mat = grads[None, :, :]
        mat = (mat.T * mat).sum(1)
        hess_inv = np.linalg.inv(hess)
        return np.dot(hess_inv, np.dot(mat, hess_inv))

    def score_residuals(self, params: np.ndarray) -> np.ndarray:
        surv = self.surv
        if surv.nstrat != 1 or surv.offset_s is not None or np.any(surv.entry_s[0] != 0):
            raise ValueError("CoxModel: one stratum, no entry times and no offset")
        rows, time, exog = surv.stratum_rows[0], surv.time_s[0], surv.exog_s[0]
        failure_times = surv.ufailt[0]
        linpred = exog @ params
        hazard = np.exp(linpred - linpred.max())
        # Σ over the risk set {time ≥ t_i} of e and of e·x, at each failure time (time is sorted).
        first_at_risk = np.searchsorted(time, failure_times, side="left")
        at_risk_sum = np.r_[np.cumsum(hazard[::-1])[::-1], 0.0][first_at_risk]
        at_risk_x = np.vstack([np.cumsum((hazard[:, None] * exog)[::-1], axis=0)[::-1],
                               np.zeros((1, exog.shape[1]))])[first_at_risk]
        averages = at_risk_x / at_risk_sum[:, None]
        failed = surv.status_s[0] == 1
        deaths = np.bincount(np.searchsorted(failure_times, time[failed]), minlength=len(failure_times))
        increment = deaths / at_risk_sum
        c0 = np.cumsum(increment)
        c1 = np.cumsum(averages * increment[:, None], axis=0)
        last = np.searchsorted(failure_times, time, side="right") - 1  # ≥ 0: kept rows are at risk
        residuals = -hazard[:, None] * (exog * c0[last][:, None] - c1[last])
        residuals[failed] += exog[failed] - averages[last[failed]]
        out = np.zeros(self.exog.shape, dtype=np.float64)
        out[rows] = residuals
        return out
