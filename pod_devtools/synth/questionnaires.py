"""REDCap questionnaire data of one site: visits, instrument values and carers, as coded integers.

Values are int16 codes: a number, EMPTY for an empty field, or a REDCap missing-data code
(MISSING_CODES[i] is stored as -2 - i).
"""

import functools
from dataclasses import dataclass

import numpy as np

from pod_devtools.synth.people import People
from pod_pipeline import seeds
from pod_pipeline.ingest.rules import carer_instruments, instrument_items

EMPTY = -1
MISSING_CODES = ("UNK", "NASK", "ASKU", "NA")
# Expected WEMWBS total change from baseline (month 3, month 6), by arm: the trial's signal.
WEMWBS_GAIN = {True: (3.0, 5.0), False: (1.0, 2.0)}
CARER_INSTRUMENT = "carer_questionnaire"
NOT_TEXT = ("visit_date", "carer_id")  # fields that are not integer codes
# Carer instruments beyond CWS by protocol: national-trial contract section 1 (no seed holds them).
CARER_EXTRA = {"national_trial": ("zbi12",)}
# The first three timepoints keep their hand-tuned windows; later ones follow the seed.
TUNED = 3


@functools.cache
def timepoints() -> tuple[str, ...]:
    """Every timepoint in study order (seed visit_windows): Redcap.event indexes this."""
    rows = sorted(seeds.rows("visit_windows"), key=lambda r: int(r["timepoint_order"]))
    return tuple(r["timepoint"] for r in rows)


def protocol_timepoints(protocol: str) -> tuple[int, ...]:
    """Positions in timepoints() of a protocol's timepoints (seed protocol_timepoints)."""
    names = {r["timepoint"] for r in seeds.rows("protocol_timepoints") if r["protocol"] == protocol}
    return tuple(i for i, t in enumerate(timepoints()) if t in names)


def expected(protocol: str) -> dict[str, np.ndarray]:
    """instrument -> bool per timepoint: expected by the protocol (seed expected_instruments)."""
    out: dict[str, np.ndarray] = {}
    for r in seeds.rows("expected_instruments"):
        if r["protocol"] == protocol:
            row = out.setdefault(r["instrument"], np.zeros(len(timepoints()), bool))
            row[timepoints().index(r["timepoint"])] = r["is_expected"] == "true"
    return out


@dataclass
class Redcap:
    """One row per record x event (instance 0) and per carer questionnaire (instance 1..n)."""

    person: np.ndarray
    event: np.ndarray  # timepoint: index into timepoints() (0 baseline, 1 month_3, ...)
    instance: np.ndarray  # 0 on the main row
    carer: np.ndarray  # carer number 1..3 on carer rows, 0 on main rows
    date: np.ndarray  # visit date (a carer row: its visit's date)
    values: np.ndarray  # int16 [rows, len(FIELDS)]


def integer_fields() -> tuple[str, ...]:
    """The coded REDCap fields, in export order: the columns of Redcap.values."""
    return tuple(i.field_name for i in instrument_items() if i.field_name not in NOT_TEXT)


def _columns(instrument: str, role: str = "item") -> list[int]:
    """Positions in Redcap.values of an instrument's fields of one role."""
    fields = integer_fields()
    return [
        fields.index(i.field_name)
        for i in instrument_items()
        if i.instrument == instrument and i.role == role and i.field_name in fields
    ]


def _completion(instrument: str) -> int:
    """Position of an instrument's <instrument>_complete field."""
    return _columns(instrument, "completion")[0]


def make_redcap(people: People, rng: np.random.Generator, protocol: str = "pod_evaluation") -> Redcap:
    """Visits of the protocol's timepoints with attrition and jitter, the values of every
    instrument the protocol expects at each, carers' repeating rows."""
    attended, days = _visits(people, rng, protocol_timepoints(protocol))
    person, event = np.nonzero(attended)
    date = people.consent[person] + days[person, event]
    state = _state(people, rng, attended.shape[1])[person, event]
    main = np.full((len(person), len(integer_fields())), EMPTY, dtype=np.int16)
    _fill_main(main, rng, state, event, people.pod[person], expected(protocol))
    carer_rows, carer_values = _carers(people, rng, person, event, CARER_EXTRA.get(protocol, ()))
    rows = np.concatenate([np.arange(len(person)), carer_rows["main"]])
    values = np.concatenate([main, carer_values])
    instance = np.concatenate([np.zeros(len(person), np.int16), carer_rows["instance"]])
    order = np.lexsort((instance, event[rows], person[rows]))
    return Redcap(
        person[rows][order],
        event[rows][order].astype(np.int8),
        instance[order],
        np.concatenate([np.zeros(len(person), np.int8), carer_rows["carer"]])[order],
        date[rows][order],
        values[order],
    )


def _visits(
    people: People, rng: np.random.Generator, scheduled: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Which timepoints each participant attended, and on which study day (columns: timepoints()
    up to the protocol's last; the protocol's first three are baseline, month_3 and month_6)."""
    assert scheduled[:TUNED] == tuple(range(TUNED)) and scheduled == tuple(range(len(scheduled)))
    n = len(people)
    dropout = rng.random(n)
    attended = np.column_stack(
        [
            (rng.random(n) > 0.02) | (people.withdrawal != ""),
            (dropout > 0.12) & (rng.random(n) > 0.04),
            dropout > 0.16,
        ]
    )
    days = np.column_stack(
        [
            np.minimum(rng.geometric(0.35, n) - 1, 14),
            np.clip(91 + np.rint(rng.normal(0, 9, n)), 62, 134),
            np.clip(182 + np.rint(rng.normal(0, 12, n)), 137, 272),
        ]
    ).astype(np.int64)
    # A few visits outside their event's window: flagged by the pipeline, never moved.
    late = rng.random((n, 3)) < 0.025
    days = np.where(late, np.array([15, 140, 274]) + rng.integers(0, 20, (n, 3)), days)
    if len(scheduled) > TUNED:
        more_attended, more_days = _later_visits(rng, dropout, scheduled[TUNED:])
        attended = np.column_stack([attended, more_attended])
        days = np.column_stack([days, more_days])
    visit = people.consent[:, None] + days
    still_in = np.isnat(people.withdrawn)[:, None] | (visit <= people.withdrawn[:, None])
    return attended & still_in, days


def _later_visits(
    rng: np.random.Generator, dropout: np.ndarray, later: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Visits after month 6: more attrition at each, days jittered about the seed's target
    inside its window, a few late (after the window)."""
    windows = {r["timepoint"]: r for r in seeds.rows("visit_windows")}
    n, attended, days = len(dropout), [], []
    for step, t in enumerate(later, start=1):
        w = windows[timepoints()[t]]
        target, first, last = int(w["target_day"]), int(w["window_start_day"]), int(w["window_end_day"])
        attended.append((dropout > 0.16 + 0.06 * step) & (rng.random(n) > 0.04))
        on_time = np.clip(target + np.rint(rng.normal(0, target / 15, n)), first + 1, last - 1)
        late = rng.random(n) < 0.025
        days.append(np.where(late, last + 1 + rng.integers(0, 20, n), on_time))
    return np.column_stack(attended), np.column_stack(days).astype(np.int64)


def _state(people: People, rng: np.random.Generator, count: int = TUNED) -> np.ndarray:
    """Well-being per participant and timepoint on the WEMWBS item scale's latent axis; after
    month 6 the month-6 gain holds."""
    gain = np.where(people.pod[:, None], [0, *WEMWBS_GAIN[True]], [0, *WEMWBS_GAIN[False]])
    # One latent unit moves every WEMWBS item by 0.55, so a total change g is g / 14 / 0.55 units.
    state = people.wellbeing[:, None] + rng.normal(0, 0.4, (len(people), 3)) + gain / 14 / 0.55
    if count > TUNED:
        later = rng.normal(0, 0.4, (len(people), count - TUNED)) + gain[:, -1:] / 14 / 0.55
        state = np.column_stack([state, people.wellbeing[:, None] + later])
    return state


def _scale(
    rng: np.random.Generator, centre: np.ndarray, items: int, sd: float, low: int, high: int
) -> np.ndarray:
    """Items correlated through the latent centre: round(centre + noise) clipped to the scale."""
    noise = rng.normal(0, sd, (len(centre), items))
    return np.clip(np.rint(centre[:, None] + noise), low, high).astype(np.int16)


def _counts(rng: np.random.Generator, mean: np.ndarray, shape: float, cap: int) -> np.ndarray:
    """Over-dispersed counts (many zeros): negative binomial with the given means."""
    return np.minimum(rng.negative_binomial(shape, shape / (shape + mean)), cap).astype(np.int16)


def _stays(rng: np.random.Generator, n: int, share: float, mean_nights: float) -> np.ndarray:
    """Inpatient nights: rare stays, capped at the 92 nights of a 3-month recall period."""
    nights = np.minimum(rng.geometric(1 / mean_nights, n), 92)
    return np.where(rng.random(n) < share, nights, 0).astype(np.int16)


def _fill_main(
    values: np.ndarray,
    rng: np.random.Generator,
    state: np.ndarray,
    event: np.ndarray,
    pod: np.ndarray,
    schedule: dict[str, np.ndarray],
) -> None:
    n = len(state)
    use = np.exp(-0.25 * state)
    blocks = {
        "wemwbs": _scale(rng, 2.75 + 0.55 * state, 14, 0.7, 1, 5),
        "wsas": _scale(rng, 3.8 - 1.1 * state, 5, 1.2, 0, 8),
        "csq8": _scale(rng, 2.9 + 0.3 * state + 0.25 * pod, 8, 0.6, 1, 4),
        "eq5d5l": np.column_stack(
            [
                _scale(rng, 2.2 - 0.55 * state, 5, 0.8, 1, 5),
                np.clip(np.rint(58 + 11 * state + rng.normal(0, 12, n)), 0, 100).astype(np.int16),
            ]
        ),
        "service_use": np.column_stack(
            [
                _counts(rng, 1.4 * use, 1.2, 40),
                _counts(rng, 0.5 * use, 0.6, 30),
                _counts(rng, np.where(pod, 4.5, 3.0) * use, 1.0, 60),
                _counts(rng, 0.5 * use, 0.3, 40),
                _counts(rng, 0.3 * use, 0.4, 20),
                _stays(rng, n, 0.05, 14),
                _stays(rng, n, 0.02, 4),
            ]
        ),
    }
    values[:, _completion("visit")] = np.where(rng.random(n) < 0.9, 2, 1)
    for instrument, block in blocks.items():
        _answer(values, rng, instrument, block, schedule[instrument][event], item_missing=0.025)
    # The protocol's other REDCap instruments (none for pod_evaluation: its draws stay as they were).
    for instrument in dict.fromkeys(i.instrument for i in instrument_items()):
        if instrument in blocks or not schedule.get(instrument, np.zeros(1, bool)).any():
            continue
        low, high = _limits(instrument)
        mid, span = (low.min() + high.max()) / 2, high.max() - low.min()
        block = _scale(rng, mid + 0.15 * span * state, len(low), 0.2 * span, low, high)
        _answer(values, rng, instrument, block, schedule[instrument][event], item_missing=0.025)


def _limits(instrument: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-item min and max of an instrument's items (seed instrument_items)."""
    items = [i for i in instrument_items() if i.instrument == instrument and i.role == "item"]
    return np.array([i.min_value for i in items]), np.array([i.max_value for i in items])


def _answer(
    values: np.ndarray,
    rng: np.random.Generator,
    instrument: str,
    block: np.ndarray,
    applies: np.ndarray,
    item_missing: float,
) -> None:
    """Write an instrument's answers where it applies: some forms not done, some items missing."""
    columns, n = _columns(instrument), len(block)
    done = applies & (rng.random(n) > 0.04)
    missing = rng.random(block.shape) < item_missing
    codes = np.where(rng.random(block.shape) < 0.6, EMPTY, -2 - rng.integers(0, 4, block.shape))
    answered = np.where(missing, codes, block).astype(np.int16)
    values[:, columns] = np.where(done[:, None], answered, values[:, columns])
    status = rng.choice(np.array([2, 1, 0], np.int16), n, p=[0.88, 0.08, 0.04])
    complete = np.where(done, status, 0)
    values[:, _completion(instrument)] = np.where(applies, complete, EMPTY)


def _carers(
    people: People,
    rng: np.random.Generator,
    person: np.ndarray,
    event: np.ndarray,
    extra: tuple[str, ...] = (),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """0-3 carers per participant; each answers at an attended visit with probability 0.8."""
    n = len(people)
    count = rng.choice(4, n, p=[0.33, 0.40, 0.19, 0.08])
    relationship = rng.choice(np.arange(1, 7), (n, 3), p=[0.35, 0.25, 0.12, 0.10, 0.10, 0.08])
    trait = rng.standard_normal((n, 3)) + 0.3 * people.wellbeing[:, None]
    main = np.repeat(np.arange(len(person)), count[person])
    starts = np.cumsum(count[person]) - count[person]
    carer = np.arange(len(main)) - np.repeat(starts, count[person]) + 1
    answered = rng.random(len(main)) < 0.8
    main, carer = main[answered], carer[answered]
    first = np.r_[True, main[1:] != main[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(main)), 0))
    instance = (np.arange(len(main)) - group_start + 1).astype(np.int16)
    owner, slot = person[main], carer - 1
    values = np.full((len(main), len(integer_fields())), EMPTY, dtype=np.int16)
    values[:, integer_fields().index("carer_relationship")] = relationship[owner, slot]
    centre = trait[owner, slot] + 0.1 * event[main]
    block = np.column_stack(
        [
            _scale(rng, 3.1 + 0.7 * centre, 32, 0.8, 1, 5),
            _scale(rng, 3.0 + 0.6 * trait[owner, slot], 15, 0.8, 1, 5),
        ]
    )
    _answer(values, rng, CARER_INSTRUMENT, block, np.ones(len(main), bool), item_missing=0.03)
    for instrument in extra:  # e.g. ZBI-12: burden falls as the carer's well-being rises
        assert instrument in carer_instruments()
        low, high = _limits(instrument)
        mid, span = (low.min() + high.max()) / 2, high.max() - low.min()
        block = _scale(rng, mid - 0.5 - 0.15 * span * centre, len(low), 0.2 * span, low, high)
        _answer(values, rng, instrument, block, np.ones(len(main), bool), item_missing=0.03)
    return {"main": main, "carer": carer.astype(np.int8), "instance": instance}, values
