"""Cost-effectiveness: per-arm mean cost and QALY, POD versus TAU, from a seeded bootstrap.

Complete cases only (complete QALY and complete cost). The bootstrap resamples within each arm;
when `cluster_id` is present it resamples clusters (participants without a cluster count as their
own), working on cluster sums so that a million participants in a few hundred clusters cost almost
nothing. Without clusters it resamples participants in vectorised chunks on a few threads; each
block of replicates has its own seed derived from (seed, arm, block), so results depend on the seed
alone, not on the thread count.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

INTERVENTION, COMPARATOR = "POD", "TAU"
INCREMENTAL = "incremental"
NAMED_THRESHOLDS = {"20k": 20_000, "30k": 30_000}
CEAC_THRESHOLDS = np.arange(0, 50_001, 1_000)
BLOCK_REPLICATES = 100
CHUNK_ELEMENTS = 2**20
WORKERS = min(4, os.cpu_count() or 1)

# Every relation the SQL below reads: the analysis is computed again when one changes (memo.py).
INPUTS = ("marts.cost_effectiveness",)
UNITS_SQL = """
select
    arm,
    coalesce('cluster:' || cluster_id, 'participant:' || participant_id) as unit,
    count(*) as size,
    -- Summed as the decimals they are, so a unit's sums do not depend on the order of its rows.
    cast(sum(total_cost) as double) as cost,
    cast(sum(qaly) as double) as qaly,
    bool_or(cluster_id is not null) as is_cluster
from marts.cost_effectiveness
where coalesce(has_complete_qaly and has_complete_cost, false)
group by all
order by arm, unit
"""

ARMS_SQL = """
select
    arm,
    count(*) filter (where not coalesce(has_complete_qaly and has_complete_cost, false))
        as n_excluded_incomplete
from marts.cost_effectiveness
group by arm
order by arm
"""

BASIS_SQL = "select distinct value_set, price_year from marts.cost_effectiveness"


@dataclass(frozen=True)
class ArmUnits:
    """One arm's complete cases, summed per resampling unit (cluster or participant)."""

    arm: str
    size: np.ndarray
    cost: np.ndarray
    qaly: np.ndarray
    n_excluded_incomplete: int = 0

    @property
    def n(self) -> int:
        return int(self.size.sum())


@dataclass(frozen=True)
class CostInputs:
    """Both arms' units, the resampling unit, and the value set and price year they carry."""

    arms: list[ArmUnits]
    resampling_unit: str
    value_set: str | None
    price_year: str | None


@dataclass(frozen=True)
class CostEffectiveness:
    """The bootstrap's results: summary rows, acceptability curve, replicates and provenance."""

    summary: pd.DataFrame
    acceptability: pd.DataFrame
    replicates: pd.DataFrame
    single_arm_reason: str | None


def load_inputs(con: duckdb.DuckDBPyConnection) -> CostInputs:
    """Per-arm unit sums from marts.cost_effectiveness, the resampling unit and cost basis."""
    columns = con.execute(UNITS_SQL).fetchnumpy()
    excluded = dict(con.execute(ARMS_SQL).fetchall())
    arm_of_unit = np.asarray(columns["arm"], dtype=object)
    arms = [
        ArmUnits(
            arm=arm,
            size=np.asarray(columns["size"][arm_of_unit == arm], dtype=float),
            cost=np.asarray(columns["cost"][arm_of_unit == arm], dtype=float),
            qaly=np.asarray(columns["qaly"][arm_of_unit == arm], dtype=float),
            n_excluded_incomplete=int(excluded[arm]),
        )
        for arm in sorted(excluded)
    ]
    unknown = {arm.arm for arm in arms} - {INTERVENTION, COMPARATOR}
    if unknown:
        raise ValueError(f"marts.cost_effectiveness has arms {sorted(unknown)}: expected POD, TAU")
    basis = con.execute(BASIS_SQL).fetchall()
    if len(basis) > 1:
        raise ValueError(f"marts.cost_effectiveness mixes value sets or price years: {basis}")
    value_set, price_year = basis[0] if basis else (None, None)
    clustered = bool(np.any(columns["is_cluster"]))
    return CostInputs(arms, "cluster" if clustered else "participant", value_set, price_year)


def bootstrap_means(arm: ArmUnits, replicates: int, seed: int, arm_index: int) -> np.ndarray:
    """(replicates × 2) bootstrap mean cost and mean QALY of one arm, resampling its units."""
    out = np.full((replicates, 2), np.nan)
    if arm.n == 0:
        return out
    starts = range(0, replicates, BLOCK_REPLICATES)

    def run(block: int) -> None:
        start = starts[block]
        stop = min(start + BLOCK_REPLICATES, replicates)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(arm_index, block)))
        out[start:stop] = _resample(arm, stop - start, rng)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(run, range(len(starts))))
    return out


def _resample(arm: ArmUnits, count: int, rng: np.random.Generator) -> np.ndarray:
    units = len(arm.size)
    per_chunk = max(1, CHUNK_ELEMENTS // units)
    equal_sizes = bool(np.all(arm.size == arm.size[0]))
    # Cost and QALY packed as one complex number: one gather per draw instead of two, which
    # halves the time of the bootstrap without clusters (the memory-bound part).
    packed = arm.cost + 1j * arm.qaly
    out = np.empty((count, 2))
    for start in range(0, count, per_chunk):
        stop = min(start + per_chunk, count)
        index = rng.integers(0, units, size=(stop - start, units), dtype=np.int32)
        # Mean of the resampled participants: sums over the drawn units / participants drawn.
        size = arm.n if equal_sizes else np.take(arm.size, index).sum(axis=1)
        sums = np.take(packed, index).sum(axis=1) / size
        out[start:stop, 0], out[start:stop, 1] = sums.real, sums.imag
    return out


def _interval(draws: np.ndarray) -> tuple[float, float]:
    if np.all(np.isnan(draws)):
        return np.nan, np.nan
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def _arm_row(arm: ArmUnits, draws: np.ndarray) -> dict[str, object]:
    mean_cost = arm.cost.sum() / arm.n if arm.n else np.nan
    mean_qaly = arm.qaly.sum() / arm.n if arm.n else np.nan
    cost_low, cost_high = _interval(draws[:, 0])
    qaly_low, qaly_high = _interval(draws[:, 1])
    return {
        "arm": arm.arm, "n": arm.n, "n_excluded_incomplete": arm.n_excluded_incomplete,
        "n_resampling_units": len(arm.size),
        "mean_cost": mean_cost, "mean_cost_ci95_low": cost_low, "mean_cost_ci95_high": cost_high,
        "mean_qaly": mean_qaly, "mean_qaly_ci95_low": qaly_low, "mean_qaly_ci95_high": qaly_high,
    }


def incremental_row(
    rows: dict[str, dict], draw_cost: np.ndarray, draw_qaly: np.ndarray
) -> dict[str, object]:
    """POD − TAU: incremental cost and QALY, ICER, INMB and probability cost-effective."""
    pod, tau = rows[INTERVENTION], rows[COMPARATOR]
    d_cost = float(pod["mean_cost"] - tau["mean_cost"])
    d_qaly = float(pod["mean_qaly"] - tau["mean_qaly"])
    row: dict[str, object] = {
        "arm": INCREMENTAL,
        "n": pod["n"] + tau["n"],
        "n_excluded_incomplete": pod["n_excluded_incomplete"] + tau["n_excluded_incomplete"],
        "n_resampling_units": pod["n_resampling_units"] + tau["n_resampling_units"],
        "incremental_cost": d_cost,
        "incremental_qaly": d_qaly,
        "icer": d_cost / d_qaly if d_qaly != 0 else np.nan,
        "icer_quadrant": quadrant(d_cost, d_qaly),
    }
    row["incremental_cost_ci95_low"], row["incremental_cost_ci95_high"] = _interval(draw_cost)
    row["incremental_qaly_ci95_low"], row["incremental_qaly_ci95_high"] = _interval(draw_qaly)
    for label, threshold in NAMED_THRESHOLDS.items():
        row[f"inmb_{label}"] = threshold * d_qaly - d_cost
        low, high = _interval(threshold * draw_qaly - draw_cost)
        row[f"inmb_{label}_ci95_low"], row[f"inmb_{label}_ci95_high"] = low, high
        row[f"prob_cost_effective_{label}"] = probability_cost_effective(
            draw_cost, draw_qaly, np.array([threshold])
        )[0]
    return row


def quadrant(d_cost: float, d_qaly: float) -> str:
    """Where POD − TAU falls on the plane; a negative ICER alone does not say which way."""
    if d_qaly > 0 and d_cost <= 0:
        return "dominant: less costly, more effective"
    if d_qaly > 0:
        return "more costly, more effective"
    if d_qaly < 0 and d_cost >= 0:
        return "dominated: more costly, less effective"
    if d_qaly < 0:
        return "less costly, less effective"
    return "no QALY difference"


def probability_cost_effective(
    draw_cost: np.ndarray, draw_qaly: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Share of replicates whose net monetary benefit at each threshold is above zero."""
    net_benefit = thresholds[:, None] * draw_qaly[None, :] - draw_cost[None, :]
    return (net_benefit > 0).mean(axis=1)


def single_arm_reason(arms: list[ArmUnits]) -> str | None:
    """Why there is no incremental analysis, or None when both arms have complete cases."""
    names = [arm.arm for arm in arms]
    if names != [INTERVENTION, COMPARATOR]:
        return (
            f"marts.cost_effectiveness has the arm(s) {', '.join(names) or 'none'} only: "
            f"no {INTERVENTION} versus {COMPARATOR} comparison (incremental row and "
            "acceptability curve omitted)"
        )
    empty = [arm.arm for arm in arms if arm.n == 0]
    if empty:
        return f"no complete cases (QALY and cost) in arm(s) {', '.join(empty)}: no comparison"
    return None


def analyse(inputs: CostInputs, replicates: int, seed: int) -> CostEffectiveness:
    """Bootstrap each arm, then summarise per arm and, with two arms, POD − TAU."""
    arms = inputs.arms
    draws = {
        arm.arm: bootstrap_means(arm, replicates, seed, arm_index=index)
        for index, arm in enumerate(arms)
    }
    rows = {arm.arm: _arm_row(arm, draws[arm.arm]) for arm in arms}
    reason = single_arm_reason(arms)
    acceptability = pd.DataFrame({"threshold": pd.Series(dtype="int64"),
                                  "prob_cost_effective": pd.Series(dtype="float64")})
    if reason is None:
        # Replicate by replicate, POD − TAU: the arms are resampled independently.
        draw_cost, draw_qaly = (draws[INTERVENTION] - draws[COMPARATOR]).T
        rows[INCREMENTAL] = incremental_row(rows, draw_cost, draw_qaly)
        acceptability = pd.DataFrame({
            "threshold": CEAC_THRESHOLDS,
            "prob_cost_effective": probability_cost_effective(
                draw_cost, draw_qaly, CEAC_THRESHOLDS.astype(float)
            ),
        })
    summary = pd.DataFrame(list(rows.values())).reindex(columns=SUMMARY_COLUMNS).assign(
        value_set=inputs.value_set, price_year=inputs.price_year,
        replicates=replicates, seed=seed, resampling_unit=inputs.resampling_unit, note=reason,
    )
    floats = dict.fromkeys(SUMMARY_COLUMNS[4:], "float64")
    summary = summary.astype(floats | SUMMARY_TYPES)
    stacked = np.vstack([np.empty((0, 2)), *draws.values()])
    replicate_frame = pd.DataFrame({
        "replicate": np.tile(np.arange(1, replicates + 1), len(draws)),
        "arm": pd.Series(np.repeat(list(draws), replicates), dtype="string"),
        "mean_cost": stacked[:, 0],
        "mean_qaly": stacked[:, 1],
    })
    return CostEffectiveness(summary, acceptability, replicate_frame, reason)


SUMMARY_COLUMNS = [
    "arm", "n", "n_excluded_incomplete", "n_resampling_units",
    "mean_cost", "mean_cost_ci95_low", "mean_cost_ci95_high",
    "mean_qaly", "mean_qaly_ci95_low", "mean_qaly_ci95_high",
    "incremental_cost", "incremental_cost_ci95_low", "incremental_cost_ci95_high",
    "incremental_qaly", "incremental_qaly_ci95_low", "incremental_qaly_ci95_high",
    "icer", "icer_quadrant", "inmb_20k", "inmb_20k_ci95_low", "inmb_20k_ci95_high",
    "inmb_30k", "inmb_30k_ci95_low", "inmb_30k_ci95_high",
    "prob_cost_effective_20k", "prob_cost_effective_30k",
]
SUMMARY_TYPES = {
    "arm": "string", "n": "int64", "n_excluded_incomplete": "int64", "n_resampling_units": "int64",
    "value_set": "string", "price_year": "string", "replicates": "int64", "seed": "int64",
    "resampling_unit": "string", "note": "string", "icer_quadrant": "string",
}
