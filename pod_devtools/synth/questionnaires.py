"""REDCap questionnaire data of one site: visits, instrument values and carers, as coded integers.

Values are int16 codes: a number, EMPTY for an empty field, or a REDCap missing-data code
(MISSING_CODES[i] is stored as -2 - i).
"""

from dataclasses import dataclass

import numpy as np

from pod_devtools.synth.people import People
from pod_pipeline.ingest.rules import instrument_items

EMPTY = -1
MISSING_CODES = ("UNK", "NASK", "ASKU", "NA")
TARGET_DAYS = np.array([0, 91, 182])
# Expected WEMWBS total change from baseline (month 3, month 6), by arm: the trial's signal.
WEMWBS_GAIN = {True: (3.0, 5.0), False: (1.0, 2.0)}
CARER_INSTRUMENT = "carer_questionnaire"
NOT_TEXT = ("visit_date", "carer_id")  # fields that are not integer codes


@dataclass
class Redcap:
    """One row per record x event (instance 0) and per carer questionnaire (instance 1..n)."""

    person: np.ndarray
    event: np.ndarray  # timepoint index 0, 1, 2
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


def make_redcap(people: People, rng: np.random.Generator) -> Redcap:
    """Visits with attrition and jitter, every instrument's values, carers' repeating rows."""
    attended, days = _visits(people, rng)
    person, event = np.nonzero(attended)
    date = people.consent[person] + days[person, event]
    state = _state(people, rng)[person, event]
    main = np.full((len(person), len(integer_fields())), EMPTY, dtype=np.int16)
    _fill_main(main, rng, state, event, people.pod[person])
    carer_rows, carer_values = _carers(people, rng, person, event)
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


def _visits(people: People, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which timepoints each participant attended, and on which study day."""
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
    visit = people.consent[:, None] + days
    still_in = np.isnat(people.withdrawn)[:, None] | (visit <= people.withdrawn[:, None])
    return attended & still_in, days


def _state(people: People, rng: np.random.Generator) -> np.ndarray:
    """Well-being per participant and timepoint on the WEMWBS item scale's latent axis."""
    gain = np.where(people.pod[:, None], [0, *WEMWBS_GAIN[True]], [0, *WEMWBS_GAIN[False]])
    # One latent unit moves every WEMWBS item by 0.55, so a total change g is g / 14 / 0.55 units.
    return people.wellbeing[:, None] + rng.normal(0, 0.4, (len(people), 3)) + gain / 14 / 0.55


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
        applies = event > 0 if instrument == "csq8" else np.ones(n, bool)
        _answer(values, rng, instrument, block, applies, item_missing=0.025)


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
    people: People, rng: np.random.Generator, person: np.ndarray, event: np.ndarray
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
    return {"main": main, "carer": carer.astype(np.int8), "instance": instance}, values
