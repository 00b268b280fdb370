"""Episodes of acute mental-health care from the EPR: an index crisis, then relapses over two years."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pod_devtools.synth.nhs import format_numbers
from pod_devtools.synth.people import People

EPISODE_TYPES = ("inpatient", "crisis_team")
COLUMNS = ("episode_id", "nhs_number", "episode_type", "start_date", "end_date", "detained")
# Two-year probability of relapse by arm (POD, TAU): the effect the time-to-relapse analysis finds.
RELAPSE_2Y = {True: 0.25, False: 0.35}
FOLLOW_UP_DAYS = 730
MERGE_DAYS = 7  # episodes at most this far apart form one spell (national-trial contract, 4.1)


@dataclass
class AcuteCare:
    """One row per episode, in start order; `end` is when it closes, perhaps after every export."""

    person: np.ndarray
    inpatient: np.ndarray  # bool: an inpatient admission, else a crisis-team episode
    start: np.ndarray  # datetime64[D]
    end: np.ndarray  # datetime64[D]
    detained: np.ndarray  # int8 0 / 1, -1 empty
    detained_late: np.ndarray  # bool: `detained` is only filled in once the episode closes
    uk_date: np.ndarray  # dates written DD/MM/YYYY rather than YYYY-MM-DD
    nhs_text: np.ndarray  # as the EPR writes it
    episode_id: np.ndarray


def make_acute_care(people: People, rng: np.random.Generator) -> AcuteCare:
    """Episodes of participants with an NHS number (nobody else can be linked).

    Most came into the trial through a crisis: a crisis-team episode, sometimes with an admission
    overlapping it, around consent. Some had an episode long before. Relapse, from the end of that
    crisis, follows an exponential time at the arm's two-year rate (lower with higher well-being);
    some relapses run into a second episode of the other type, overlapping or days later.
    """
    linked = np.flatnonzero(people.nhs > 0)
    m = len(linked)
    consent = people.consent[linked]
    draws = rng.random((m, 5))
    old_start = consent - rng.integers(120, 700, m)
    old_end = old_start + rng.integers(7, 60, m)
    crisis_start = consent - rng.integers(3, 50, m)
    crisis_end = crisis_start + rng.integers(10, 70, m)
    admitted_start = crisis_start + rng.integers(-10, 10, m)
    admitted_end = admitted_start + rng.integers(5, 45, m)
    has_index, admitted = draws[:, 0] < 0.65, draws[:, 1] < 0.25
    index_end = np.where(admitted, np.maximum(crisis_end, admitted_end), crisis_end)
    # Relapse can only start once the index spell is over, else it merges into it.
    after = np.maximum(consent, np.where(has_index, index_end + MERGE_DAYS + 1, consent))
    rate = -np.log1p(-np.where(people.pod[linked], RELAPSE_2Y[True], RELAPSE_2Y[False]))
    rate = rate / FOLLOW_UP_DAYS * np.exp(-0.3 * people.wellbeing[linked] - 0.045)
    relapse_start = after + np.rint(rng.exponential(1 / rate)).astype(int)
    relapses = relapse_start < consent + FOLLOW_UP_DAYS + 90
    relapse_inpatient = draws[:, 2] < 0.4
    stay = np.where(rng.random(m) < 0.03, rng.integers(120, 400, m), rng.integers(7, 90, m))
    relapse_end = relapse_start + np.where(relapse_inpatient, stay, rng.integers(7, 60, m))
    # A second episode of the other type: overlapping, within the merge gap, or a little after it.
    next_start = np.maximum(relapse_start + 1, relapse_end + rng.integers(-14, 15, m))
    next_end = next_start + rng.integers(7, 50, m)
    episodes = [
        (old_start, old_end, rng.random(m) < 0.3, draws[:, 3] < 0.2),
        (crisis_start, crisis_end, np.zeros(m, bool), has_index),
        (admitted_start, admitted_end, np.ones(m, bool), has_index & admitted),
        (relapse_start, relapse_end, relapse_inpatient, relapses),
        (next_start, next_end, ~relapse_inpatient, relapses & (draws[:, 4] < 0.35)),
    ]
    person = np.concatenate([linked[taken] for *_, taken in episodes])
    start = np.concatenate([s[taken] for s, _, _, taken in episodes])
    end = np.concatenate([e[taken] for _, e, _, taken in episodes])
    inpatient = np.concatenate([i[taken] for _, _, i, taken in episodes])
    # The EPR is only extracted up to a withdrawal; an episode open at death ends with it.
    withdrawn = people.withdrawn[person]
    kept = np.isnat(withdrawn) | (start <= withdrawn)
    died = people.withdrawal[person] == "died"
    end = np.where(died & (end > withdrawn), withdrawn, end)
    order = np.lexsort((person[kept], start[kept]))
    person, start = person[kept][order], start[kept][order]
    end, inpatient = end[kept][order], inpatient[kept][order]
    n = len(person)
    detained = np.where(
        inpatient, rng.choice([1, 0, -1], n, p=[0.45, 0.45, 0.1]), rng.choice([0, -1], n, p=[0.88, 0.12])
    ).astype(np.int8)
    numbers = 20_000_000 + np.cumsum(rng.integers(1, 40, n))
    return AcuteCare(
        person,
        inpatient,
        start,
        end,
        detained,
        inpatient & (rng.random(n) < 0.5),
        rng.random(n) < 0.35,
        format_numbers(people.nhs[person], rng.random(n) < 0.25),
        np.char.add("ACU", numbers.astype("U8")),
    )


def acute_care_table(care: AcuteCare, rows: np.ndarray, export_day: np.datetime64) -> pa.Table:
    """The extract of the given episodes on export_day: those still open have no end_date."""
    closed = care.end[rows] < export_day
    uk = pa.array(care.uk_date[rows])

    def written(dates: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        # Rearranging the ISO text is several times faster than strftime at a million rows.
        iso = pc.cast(pa.array(dates, mask=mask), pa.string())
        parts = [pc.utf8_slice_codeunits(iso, a, b) for a, b in ((8, 10), (5, 7), (0, 4))]
        return pc.if_else(uk, pc.binary_join_element_wise(*parts, "/"), iso)

    detained = np.where(care.detained_late[rows] & ~closed, -1, care.detained[rows])
    return pa.table(
        {
            "episode_id": pa.array(care.episode_id[rows].astype(str)),
            "nhs_number": pa.array(care.nhs_text[rows].astype(str)),
            "episode_type": pa.DictionaryArray.from_arrays(
                pa.array(np.where(care.inpatient[rows], 0, 1).astype(np.int8)), pa.array(EPISODE_TYPES)
            ),
            "start_date": written(care.start[rows]),
            "end_date": written(care.end[rows], ~closed),
            "detained": pa.DictionaryArray.from_arrays(
                pa.array(detained, mask=detained < 0), pa.array(["0", "1"])
            ),
        }
    )
