"""The POD team's network meeting log: 8-15 meetings per POD participant over six months."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pod_devtools.synth.people import People

COUNT_COLUMNS = (
    "duration_minutes",
    "service_user_present",
    "family_members_present",
    "other_network_members_present",
    "clinicians_present",
    "peer_support_worker_present",
    *(f"key_element_{i:02d}" for i in range(1, 13)),
)
DURATIONS = np.array([45, 50, 60, 60, 75, 90, 90, 105, 120, 150])


@dataclass
class Meetings:
    """One row per meeting, in date order."""

    person: np.ndarray
    date: np.ndarray
    values: np.ndarray  # int16 [rows, len(COUNT_COLUMNS)]
    meeting_id: np.ndarray


def make_meetings(people: People, prefix: str, rng: np.random.Generator) -> Meetings:
    """The first meeting around consent (POD often meets before it), the rest over six months."""
    pod = np.flatnonzero(people.pod)
    count = rng.integers(8, 16, len(pod))
    person = np.repeat(pod, count)
    first = np.r_[True, person[1:] != person[:-1]]
    day = np.where(first, rng.integers(-21, 8, len(person)), rng.integers(0, 183, len(person)))
    date = people.consent[person] + day
    kept = np.isnat(people.withdrawn[person]) | (date <= people.withdrawn[person])
    order = np.lexsort((person[kept], date[kept]))
    person, date = person[kept][order], date[kept][order]
    n = len(person)
    fidelity = rng.beta(4, 2, len(people))[person]
    level = rng.random((n, 12))
    key_elements = np.where(
        level < fidelity[:, None], 2, np.where(level < fidelity[:, None] + 0.2, 1, 0)
    )
    values = np.column_stack(
        [
            rng.choice(DURATIONS, n),
            rng.random(n) < 0.9,
            np.minimum(rng.poisson(1.3, n), 6),
            np.minimum(rng.poisson(0.5, n), 4),
            1 + np.minimum(rng.poisson(1.0, n), 4),
            rng.random(n) < 0.75,
            key_elements,
        ]
    ).astype(np.int16)
    ids = np.char.add(f"{prefix}-NM", np.char.zfill((np.arange(n) + 1).astype("U7"), 7))
    return Meetings(person, date, values, ids)


def meetings_table(meetings: Meetings, people: People, rows: np.ndarray) -> pa.Table:
    """The log as exported: the given meetings."""
    columns = {
        "meeting_id": pa.array(meetings.meeting_id[rows].astype(str)),
        "study_id": pa.array(people.study_id.astype(str)).take(pa.array(meetings.person[rows])),
        "meeting_date": pa.array(meetings.date[rows]),
    }
    for j, name in enumerate(COUNT_COLUMNS):
        columns[name] = pa.array(meetings.values[rows, j])
    return pa.table(columns)
