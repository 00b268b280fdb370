"""HoNOS ratings from the EPR: baseline and month 6 (and the later timepoints where the site's
protocol expects HoNOS), placed by date, linked by NHS number."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pod_devtools.synth.nhs import format_numbers
from pod_devtools.synth.people import People
from pod_devtools.synth.questionnaires import TUNED, WEMWBS_GAIN, expected, timepoints
from pod_pipeline import seeds

ITEMS = tuple(f"honos_{i:02d}" for i in range(1, 13))
ITEM_8 = ITEMS.index("honos_08")
NOT_KNOWN = 9
PROBLEM_TYPES = tuple("ABCDEFGHIJ")
# Free text as clinicians type it, with a comma, quotes and a line break among them.
RATER_ROLES = (
    "Psychiatrist",
    "Consultant Psychiatrist",
    "Nurse",
    "Community Psychiatric Nurse",
    "Social Worker",
    "Psychologist",
    "Occupational Therapist",
    "Nurse, Band 6",
    'Care coordinator ("CC")',
    "Consultant Psychiatrist\n(locum)",
)
RATER_SHARES = np.array([20, 14, 22, 14, 8, 6, 4, 5, 4, 3], dtype=float)


@dataclass
class Honos:
    """One row per rating, in assessment order."""

    person: np.ndarray
    date: np.ndarray
    uk_date: np.ndarray  # written DD/MM/YYYY rather than YYYY-MM-DD
    nhs_text: np.ndarray  # as the EPR writes it
    rater: np.ndarray
    items: np.ndarray  # int8 [rows, 12], 0-4 or 9; -1 empty
    problem: np.ndarray  # index into PROBLEM_TYPES, -1 when honos_08 is 0
    assessment_id: np.ndarray


def make_honos(people: People, rng: np.random.Generator, protocol: str = "pod_evaluation") -> Honos:
    """Ratings near baseline and month 6; some twice in a window (some tied), a few outside;
    one near each later timepoint at which the protocol expects HoNOS (seed expected_instruments)."""
    linked = np.flatnonzero(people.nhs > 0)
    m = len(linked)
    baseline = np.clip(np.rint(rng.normal(2, 6, m)), -25, 13).astype(int)
    month_6 = np.clip(182 + np.rint(rng.normal(0, 14, m)), 140, 268).astype(int)
    # A second rating in the window: elsewhere in it, or exactly as far from the target (a tie).
    tie = rng.random(m) < 0.3
    second_baseline = np.where(tie & (baseline != 0), -baseline, rng.integers(-28, 14, m))
    second_month_6 = np.where(tie & (month_6 != 182), 364 - month_6, rng.integers(140, 270, m))
    # Never two ratings of one participant on one day: "the later rating" would be undefined.
    second_baseline = np.where(second_baseline == baseline, baseline - 1, second_baseline)
    second_month_6 = np.where(second_month_6 == month_6, month_6 - 1, second_month_6)
    outside = np.where(rng.random(m) < 0.5, rng.integers(40, 56, m), rng.integers(300, 331, m))
    draws = rng.random((m, 5))
    days = [baseline, month_6, second_baseline, second_month_6, outside]
    taken = [
        draws[:, 0] < 0.9,
        draws[:, 1] < 0.75,
        draws[:, 2] < 0.06,
        draws[:, 3] < 0.04,
        draws[:, 4] < 0.03,
    ]
    windows = {r["timepoint"]: r for r in seeds.rows("visit_windows")}
    later = np.flatnonzero(expected(protocol).get("honos", np.zeros(0, bool)))
    for t in later[later >= TUNED]:
        w = windows[timepoints()[t]]
        target, first, last = int(w["target_day"]), int(w["window_start_day"]), int(w["window_end_day"])
        days.append(np.clip(target + np.rint(rng.normal(0, 14, m)), first + 1, last - 1).astype(int))
        taken.append(rng.random(m) < 0.75)  # as at month 6
    person = np.concatenate([linked[t] for t in taken])
    day = np.concatenate([d[t] for d, t in zip(days, taken, strict=True)])
    date = people.consent[person] + day
    kept = np.isnat(people.withdrawn[person]) | (date <= people.withdrawn[person])
    order = np.lexsort((person[kept], date[kept]))
    person, date, day = person[kept][order], date[kept][order], day[kept][order]
    n = len(person)
    items = _items(people, rng, person, day)
    problem = np.where(items[:, ITEM_8] > 0, rng.integers(0, len(PROBLEM_TYPES), n), -1)
    numbers = 10_000_000 + np.cumsum(rng.integers(1, 40, n))
    return Honos(
        person,
        date,
        rng.random(n) < 0.35,
        format_numbers(people.nhs[person], rng.random(n) < 0.25),
        rng.choice(len(RATER_ROLES), n, p=RATER_SHARES / RATER_SHARES.sum()),
        items,
        problem,
        np.char.add("HON", numbers.astype("U8")),
    )


def _items(
    people: People, rng: np.random.Generator, person: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Severity 0-4 falling as well-being rises (more under POD); some 9 (not known), few empty."""
    gain = np.where(people.pod[person], WEMWBS_GAIN[True][1], WEMWBS_GAIN[False][1]) / 14 / 0.55
    state = people.wellbeing[person] + gain * np.clip(day, 0, 182) / 182
    n = len(person)
    items = np.clip(np.rint(1.4 - 0.5 * state[:, None] + rng.normal(0, 0.9, (n, 12))), 0, 4)
    unknown = rng.random((n, 12)) < 0.025
    empty = rng.random((n, 12)) < 0.01
    # Item 8 stays a score: whether "9" there needs a problem type is not settled by the contract.
    unknown[:, ITEM_8] = empty[:, ITEM_8] = False
    return np.where(unknown, NOT_KNOWN, np.where(empty, -1, items)).astype(np.int8)


def honos_table(honos: Honos, rows: np.ndarray, items: np.ndarray) -> pa.Table:
    """The EPR extract of the given ratings (items: those rows' values, corrections applied)."""
    dates = pa.array(honos.date[rows])
    written = pc.if_else(
        pa.array(honos.uk_date[rows]),
        pc.strftime(dates, format="%d/%m/%Y"),
        pc.strftime(dates, format="%Y-%m-%d"),
    )
    columns = {
        "assessment_id": pa.array(honos.assessment_id[rows].astype(str)),
        "nhs_number": pa.array(honos.nhs_text[rows].astype(str)),
        "assessment_date": written,
        "rater_role": pa.DictionaryArray.from_arrays(
            pa.array(honos.rater[rows].astype(np.int8)), pa.array(RATER_ROLES)
        ),
    }
    for j, name in enumerate(ITEMS):
        columns[name] = pa.array(items[:, j].astype(str), mask=items[:, j] < 0)
    problem = honos.problem[rows]
    columns["honos_08_problem_type"] = pa.DictionaryArray.from_arrays(
        pa.array(problem.astype(np.int8), mask=problem < 0), pa.array(PROBLEM_TYPES)
    )
    return pa.table(columns)
