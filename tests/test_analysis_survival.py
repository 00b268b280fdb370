"""Time to relapse: Kaplan–Meier and Cox against hand-worked small cases and an independent fit."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from pod_pipeline.analysis import cox, survival

# Eight participants: days to relapse (event 1) or to the end of follow-up (event 0).
TIMES = np.array([2, 3, 3, 5, 6, 8, 9, 12], dtype=float)
EVENTS = np.array([1, 1, 0, 1, 0, 1, 0, 1])


def _participants(arms: list[str], times, events, clusters=None, followed=None) -> pd.DataFrame:
    n = len(arms)
    return pd.DataFrame({
        "participant_id": [f"P{i:04d}" for i in range(n)],
        "arm": arms,
        "cluster_id": pd.Series(clusters if clusters is not None else [None] * n, dtype=object),
        "is_followed": followed if followed is not None else [True] * n,
        "time_days": np.asarray(times, dtype=float),
        "is_relapse": np.asarray(events, dtype=int),
    })


def test_kaplan_meier_by_hand() -> None:
    # S(t) = Π over event times ≤ t of (1 − d/n), n = still followed just before t:
    #   t=2:  n=8, d=1  S = 7/8                 = 0.875
    #   t=3:  n=7, d=1  S = 0.875 × 6/7         = 0.75   (the one censored at 3 counts at risk)
    #   t=5:  n=5, d=1  S = 0.75 × 4/5          = 0.6
    #   t=8:  n=3, d=1  S = 0.6 × 2/3           = 0.4
    #   t=12: n=1, d=1  S = 0                   (censoring at 6 and 9 makes no step)
    curve = survival.kaplan_meier(TIMES, EVENTS)
    assert curve.time.tolist() == [2, 3, 5, 8, 12]
    assert curve.n_risk.tolist() == [8, 7, 5, 3, 1]
    assert curve.survival == pytest.approx([0.875, 0.75, 0.6, 0.4, 0.0])
    assert curve.at(4)[0] == pytest.approx(0.75)  # a step function: S(4) = S(3)
    assert curve.at(1) == (1.0, *[pytest.approx(math.nan, nan_ok=True)] * 2)
    # Median: the first time S ≤ 0.5 → day 8 (S = 0.4).
    assert curve.median() == 8
    # Past the longest follow-up (12) there is no estimate.
    assert all(math.isnan(value) for value in curve.at(13))


def test_log_log_interval_by_hand() -> None:
    # Greenwood at t=5: Var S = S² Σ d/(n(n−d)) = 0.36 × (1/(8·7) + 1/(7·6) + 1/(5·4))
    #                         = 0.36 × 0.0916667 = 0.033;  se = 0.181659
    # log-log: se of log(−log S) = se/(S·|ln S|) = 0.181659/(0.6 × 0.510826) = 0.592710
    #   low  = S^exp(+1.959964 × 0.592710) = 0.6^3.19527 = 0.195496
    #   high = S^exp(−1.959964 × 0.592710) = 0.6^0.312962 = 0.852254
    # (R: survfit(Surv(t, e) ~ 1, conf.type = "log-log") gives 0.1955 and 0.8523.)
    estimate, low, high = survival.kaplan_meier(TIMES, EVENTS).at(5)
    assert estimate == pytest.approx(0.6)
    assert low == pytest.approx(0.195496, abs=1e-6)
    assert high == pytest.approx(0.852254, abs=1e-6)
    assert survival.kaplan_meier(TIMES, EVENTS).se[2] == pytest.approx(math.sqrt(0.36 * 0.0916667), abs=1e-6)


def test_median_exactly_one_half_and_not_reached() -> None:
    # Four relapses on days 1–4: S = 0.75, 0.5, 0.25, 0 → S ≤ 0.5 first on day 2.
    assert survival.kaplan_meier(np.array([1, 2, 3, 4.0]), np.array([1, 1, 1, 1])).median() == 2
    # One relapse of five, the rest followed without one: S stays at 0.8.
    assert math.isnan(survival.kaplan_meier(np.array([1, 2, 3, 4, 5.0]), np.array([1, 0, 0, 0, 0])).median())


def _breslow_fit(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Independent Cox fit (no tied times, so Breslow = Efron): log HR and its model se."""
    def negative_log_likelihood(beta: float) -> float:
        return -sum(beta * x[i] - math.log(np.exp(beta * x[time >= time[i]]).sum())
                    for i in np.flatnonzero(event))

    beta = optimize.minimize_scalar(negative_log_likelihood, bounds=(-5, 5), method="bounded",
                                    options={"xatol": 1e-10}).x
    # Observed information: Σ over events of p(1 − p), p = POD's exp-weighted share of the risk set.
    information = 0.0
    for i in np.flatnonzero(event):
        weights = np.exp(beta * x[time >= time[i]])
        p = (weights * x[time >= time[i]]).sum() / weights.sum()
        information += p * (1 - p)
    return beta, 1 / math.sqrt(information)


def test_cox_hazard_ratio_matches_an_independent_partial_likelihood_fit() -> None:
    time = np.array([5, 8, 12, 15, 20, 22, 30, 35, 40, 44, 50, 60], dtype=float)
    event = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0])
    pod = np.array([1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    beta, se = _breslow_fit(time, event, pod)
    frame = _participants(np.where(pod == 1, "POD", "TAU").tolist(), time, event)
    row = survival.effect_row(frame)
    assert row["variance"] == "model"
    assert row["hazard_ratio"] == pytest.approx(math.exp(beta), rel=1e-5)
    assert row["hr_ci95_low"] == pytest.approx(math.exp(beta - 1.959964 * se), rel=1e-4)
    assert row["hr_ci95_high"] == pytest.approx(math.exp(beta + 1.959964 * se), rel=1e-4)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(beta / se)), rel=1e-4)
    assert (row["n"], row["events"]) == (12, 8)


def test_cox_hazard_ratio_is_the_rate_ratio_for_exponential_times() -> None:
    # Constant hazards 1/400 (POD) and 1/200 (TAU) a day, follow-up to 730: HR ≈ rate ratio 0.5.
    rng = np.random.default_rng(20261204)
    arms = np.repeat(["POD", "TAU"], 1500)
    latent = rng.exponential(np.where(arms == "POD", 400.0, 200.0))
    time, event = np.minimum(np.ceil(latent), 730), (latent <= 730).astype(int)
    frame = _participants(arms.tolist(), time, event)
    row = survival.effect_row(frame)
    rates = frame.groupby("arm").apply(lambda g: g["is_relapse"].sum() / g["time_days"].sum())
    assert row["hazard_ratio"] == pytest.approx(rates["POD"] / rates["TAU"], rel=0.05)
    assert row["hazard_ratio"] == pytest.approx(0.5, abs=0.08)
    assert row["hr_ci95_low"] < row["hazard_ratio"] < row["hr_ci95_high"]


def test_cluster_robust_interval_matches_an_independent_sandwich() -> None:
    # Lin–Wei score residual of participant i (no tied times):
    #   U_i = δ_i (x_i − x̄(t_i)) − Σ_{events j, t_j ≤ t_i} exp(βx_i) / S0(t_j) · (x_i − x̄(t_j)),
    # x̄(t) the exp(βx)-weighted mean of x over the risk set at t, S0(t) its sum of weights;
    # robust variance = I⁻¹ (Σ_clusters (Σ_{i in cluster} U_i)²) I⁻¹, I the observed information.
    time = np.array([5, 8, 12, 15, 20, 22, 30, 35, 40, 44, 50, 60], dtype=float)
    event = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0])
    pod = np.array([1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    clusters = ["A", "A", "B", "B", "C", "C", "A", "D", "D", "B", "C", "D"]
    beta, se = _breslow_fit(time, event, pod)
    weight = np.exp(beta * pod)

    def mean_at(day: float) -> tuple[float, float]:
        at_risk = time >= day
        return (weight[at_risk] * pod[at_risk]).sum() / weight[at_risk].sum(), weight[at_risk].sum()

    residuals = np.zeros(len(time))
    for i in range(len(time)):
        residuals[i] = event[i] * (pod[i] - mean_at(time[i])[0])
        for j in np.flatnonzero(event.astype(bool) & (time <= time[i])):
            x_bar, s0 = mean_at(time[j])
            residuals[i] -= weight[i] / s0 * (pod[i] - x_bar)
    per_cluster = pd.Series(residuals).groupby(clusters).sum()
    robust_se = se**2 * math.sqrt((per_cluster**2).sum())
    frame = _participants(np.where(pod == 1, "POD", "TAU").tolist(), time, event, clusters)
    row = survival.effect_row(frame)
    assert row["variance"] == "cluster_robust" and row["n_clusters"] == 4
    assert row["hr_ci95_high"] == pytest.approx(math.exp(beta + 1.959964 * robust_se), rel=1e-4)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(beta / robust_se)), rel=1e-3)


def _clustered(with_clusters: bool) -> pd.DataFrame:
    # 12 clusters of 40, arm by cluster, a shared frailty per cluster: times within a cluster
    # are correlated, so the model variance (independent participants) is too small.
    rng = np.random.default_rng(7)
    cluster = np.repeat(np.arange(12), 40)
    arms = np.where(cluster % 2 == 0, "POD", "TAU")
    frailty = np.exp(rng.normal(0, 0.8, 12))[cluster]
    latent = rng.exponential(300.0 / frailty / np.where(arms == "POD", 0.7, 1.0))
    clusters = [f"C{c:02d}" for c in cluster] if with_clusters else None
    return _participants(arms.tolist(), np.minimum(np.ceil(latent), 730), (latent <= 730).astype(int),
                         clusters)


def test_cluster_robust_variance_when_clusters_exist() -> None:
    robust, model = survival.effect_row(_clustered(True)), survival.effect_row(_clustered(False))
    assert (robust["variance"], model["variance"]) == ("cluster_robust", "model")
    assert robust["n_clusters"] == 12
    assert robust["hazard_ratio"] == pytest.approx(model["hazard_ratio"])  # the estimate is the same
    width = {name: math.log(row["hr_ci95_high"] / row["hr_ci95_low"])
             for name, row in (("robust", robust), ("model", model))}
    assert width["robust"] > 1.5 * width["model"]
    assert "12 clusters" in robust["note"]


def test_score_residuals_are_statsmodels_own_computed_in_one_pass() -> None:
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(5, 200))
        # Whole days (many ties, failures on day 0) or continuous times; binary or normal covariates.
        time = rng.integers(0, 30, n).astype(float) if trial % 2 else rng.exponential(10, n).round(2)
        event = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(float)
        event[0] = 1.0
        exog = rng.integers(0, 2, (n, 1)).astype(float) if trial % 3 else rng.normal(size=(n, 2))
        params = rng.normal(size=exog.shape[1]) * 0.5
        theirs = PHReg(time, exog, status=event, ties="efron").score_residuals(params)
        ours = cox.CoxModel(time, exog, status=event, ties="efron").score_residuals(params)
        undefined = np.isnan(theirs)  # censored before the first failure: in no risk set
        np.testing.assert_allclose(ours[~undefined], theirs[~undefined], rtol=1e-9, atol=1e-12)
        assert (ours[undefined] == 0).all()


def _random_cox_data(rng: np.random.Generator, trial: int, smallest: int = 2,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(rng.integers(smallest, 250))
    # Whole days (many ties, failures on day 0) or continuous times; binary or normal covariates.
    time = rng.integers(0, 30, n).astype(float) if trial % 2 else rng.exponential(10, n).round(2)
    event = (rng.random(n) < rng.uniform(0.05, 0.9)).astype(float)
    event[rng.integers(0, n)] = 1.0
    exog = rng.integers(0, 2, (n, 1)).astype(float) if trial % 3 else rng.normal(size=(n, 2))
    return time, event, exog


def test_the_survival_time_structure_is_statsmodels_own_built_by_array_operations() -> None:
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(3)
    for trial in range(80):
        time, event, exog = _random_cox_data(rng, trial)
        theirs = PHReg(time, exog, status=event, ties="efron")
        ours = cox.CoxModel(time, exog, status=event, ties="efron")
        assert isinstance(ours.surv, cox.OneStratumSurvivalTime)
        assert sorted(vars(ours.surv)) == sorted(vars(theirs.surv))
        assert (ours.surv.nstrat, ours.surv.n_obs) == (theirs.surv.nstrat, theirs.surv.n_obs)
        for name in ("stratum_rows", "time_s", "exog_s", "status_s", "entry_s", "ufailt"):
            for mine, statsmodels_own in zip(getattr(ours.surv, name), getattr(theirs.surv, name), strict=True):
                assert mine.dtype == statsmodels_own.dtype and np.array_equal(mine, statsmodels_own), (trial, name)
        for name in ("ufailt_ix", "risk_enter", "risk_exit"):
            groups = zip(getattr(ours.surv, name)[0], getattr(theirs.surv, name)[0], strict=True)
            assert all(mine.dtype == own.dtype and np.array_equal(mine, own) for mine, own in groups), (trial, name)
        assert (ours.nobs, ours.df_model, ours.df_resid, ours.ties) == (
            theirs.nobs, theirs.df_model, theirs.df_resid, theirs.ties)


def test_the_robust_covariance_is_statsmodels_own_to_the_last_bit() -> None:
    from statsmodels.duration.hazard_regression import PHReg

    assert cox.CoxModel.robust_covariance is not PHReg.robust_covariance  # ours, compared with theirs
    rng = np.random.default_rng(5)
    for trial in range(40):
        time, event, exog = _random_cox_data(rng, trial, smallest=20)
        exog[:2] = [[0.0], [1.0]] if exog.shape[1] == 1 else exog[:2]  # never one covariate value
        model = cox.CoxModel(time, exog, status=event, ties="efron")
        model.groups = rng.integers(0, max(2, len(time) // 5), len(time)).astype(str)
        params = rng.normal(size=exog.shape[1]) * 0.3
        # statsmodels' own loop over the subjects, on the same score residuals.
        assert np.array_equal(model.robust_covariance(params), PHReg.robust_covariance(model, params)), trial


def test_a_participant_censored_before_the_first_relapse_changes_nothing() -> None:
    # In no risk set at any relapse: nothing in the partial likelihood, a score residual of 0.
    # (statsmodels' own residual is NaN there, which made the whole robust variance NaN.)
    frame = _clustered(True)
    early = frame.iloc[[0]].assign(participant_id="EARLY", time_days=0.0, is_relapse=0)
    assert frame.loc[frame["is_relapse"] == 1, "time_days"].min() > 0
    with_early = survival.effect_row(pd.concat([frame, early], ignore_index=True))
    without = survival.effect_row(frame)
    assert with_early["variance"] == "cluster_robust" and math.isfinite(with_early["hr_ci95_low"])
    for name in ("hazard_ratio", "hr_ci95_low", "hr_ci95_high", "p_value"):
        assert with_early[name] == pytest.approx(without[name], rel=1e-12), name


def test_clusters_of_one_are_not_clusters() -> None:
    frame = _clustered(False)
    frame["cluster_id"] = [f"C{i}" for i in range(len(frame))]
    assert survival.effect_row(frame)["variance"] == "model"
    units, count = survival.cluster_units(pd.Series(["P1", "P2", "P3"]), pd.Series(["A", "A", None]))
    assert units.tolist() == ["A", "A", "participant:P3"] and count == 1


def test_relapse_summary_rows_and_not_followed_counted() -> None:
    arms = ["POD"] * 8 + ["TAU"] * 8 + ["TAU"]
    frame = _participants(arms, [*TIMES, *(TIMES + 1), 0], [*EVENTS, *EVENTS, 0],
                          followed=[True] * 16 + [False])
    result = survival.analyse(frame)
    summary = result.summary.set_index("arm")
    assert summary.index.tolist() == ["POD", "TAU", "effect"]
    assert summary.loc["POD", ["n", "events", "n_not_followed", "median_days"]].tolist() == [8, 5, 0, 8]
    assert summary.loc["TAU", ["n", "events", "n_not_followed", "median_days"]].tolist() == [8, 5, 1, 9]
    assert summary.loc["effect", ["n", "events", "n_not_followed"]].tolist() == [16, 10, 1]
    assert summary.loc["effect", "variance"] == "model"
    assert summary["km_182"].isna().all()  # follow-up ends on day 12 or 13
    assert result.at_risk.query("arm == 'POD'")["n_at_risk"].tolist() == [8, 0, 0, 0, 0]
    curve = result.curve[result.curve["arm"] == "POD"]
    assert curve["time_days"].tolist() == [0, 2, 3, 5, 8, 12]
    assert curve["n_risk"].tolist() == [8, 8, 7, 5, 3, 1]


def test_single_arm_no_events_and_nobody_followed_degrade_to_nulls_with_a_reason() -> None:
    single = survival.analyse(_participants(["POD"] * 8, TIMES, EVENTS)).summary
    assert single["arm"].tolist() == ["POD"]
    assert "no POD versus TAU hazard ratio" in single.loc[0, "note"]

    quiet = _participants(["POD"] * 8 + ["TAU"] * 8, [*TIMES, *TIMES], [*EVENTS, *[0] * 8])
    summary = survival.analyse(quiet).summary.set_index("arm")
    assert summary.loc["TAU", "events"] == 0 and math.isnan(summary.loc["TAU", "median_days"])
    assert "no relapse" in summary.loc["TAU", "note"]
    assert pd.isna(summary.loc["effect", "hazard_ratio"])
    assert summary.loc["effect", "note"] == "no relapse in arm(s) TAU: no hazard ratio"

    nobody = _participants(["POD", "TAU"], [0, 0], [0, 0], followed=[False, False])
    summary = survival.analyse(nobody).summary.set_index("arm")
    assert summary["n"].tolist() == [0, 0, 0] and summary["n_not_followed"].tolist() == [1, 1, 2]
    assert summary.loc["POD", "note"] == "no participant followed in the EPR"
    assert "no participant followed in the EPR in arm(s) POD, TAU" in summary.loc["effect", "note"]


def test_unknown_arm_is_refused() -> None:
    with pytest.raises(ValueError, match="expected POD, TAU"):
        survival.analyse(_participants(["POD", "XYZ"], [1, 2], [1, 1]))
