"""Participants of one site: the register's content and each person's latent well-being."""

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pod_devtools.synth.config import WITHDRAWAL_TYPES, SiteSpec
from pod_devtools.synth.nhs import format_numbers

ETHNIC_CODES = np.array(list("ABCDEFGHJKLMNPRSZ") + [""])
ETHNIC_SHARES = np.array([70, 3, 6, 1, 1, 1, 1, 3, 2, 1, 1, 3, 2, 1, 1, 1, 1, 1], dtype=float)
GENDER_CODES = np.array(["1", "2", "9", "X"])
# Days from birth to consent that give an age of 18 to 75 whatever the leap years.
AGE_DAYS = (6576, 27757)
REGISTER_COLUMNS = (
    "study_id",
    "nhs_number",
    "date_of_birth",
    "gender",
    "ethnic_category",
    "arm",
    "cluster_id",
    "consent_date",
    "withdrawal_date",
    "withdrawal_type",
)
NOT_WITHDRAWN = np.datetime64("NaT", "D")


@dataclass
class People:
    """One row per participant, in study id order (which is consent order)."""

    study_id: np.ndarray
    nhs: np.ndarray  # int64, 0 when the register has none
    nhs_text: np.ndarray  # as written in the register, '' when none
    birth: np.ndarray  # datetime64[D]
    consent: np.ndarray  # datetime64[D]
    gender: np.ndarray
    ethnic: np.ndarray
    pod: np.ndarray  # bool
    cluster: np.ndarray  # '' outside a randomised site
    withdrawn: np.ndarray  # datetime64[D], NaT when not withdrawn
    withdrawal: np.ndarray  # '' or a withdrawal type
    wellbeing: np.ndarray  # latent trait, standard normal

    def __len__(self) -> int:
        """The number of participants."""
        return len(self.study_id)


def day(value: dt.date | dt.datetime) -> np.datetime64:
    """The calendar day of a date or (UTC) time."""
    return np.datetime64(value.date() if isinstance(value, dt.datetime) else value, "D")


def study_ids(spec: SiteSpec, numbers: np.ndarray) -> np.ndarray:
    """Study ids like KMPT-0007 for the given sequence numbers."""
    return np.char.add(f"{spec.prefix}-", np.char.zfill(numbers.astype("U7"), spec.id_width))


def make_people(spec: SiteSpec, rng: np.random.Generator, nhs_numbers: np.ndarray) -> People:
    """Draw a site's participants; nhs_numbers holds one distinct valid number per participant."""
    n = spec.participants
    start, end = (day(d) for d in spec.recruitment)
    consent = start + np.sort(rng.integers(0, int((end - start).astype(int)) + 1, n))
    nhs = np.where(rng.random(n) < 0.03, 0, nhs_numbers)
    nhs_text = np.where(nhs > 0, format_numbers(nhs, rng.random(n) < 0.2), "")
    ages = AGE_DAYS[0] + np.rint((AGE_DAYS[1] - AGE_DAYS[0]) * rng.beta(1.6, 2.4, n)).astype(int)
    pod, cluster = _arms(spec, rng, n)
    people = People(
        study_id=study_ids(spec, np.arange(1, n + 1)),
        nhs=nhs,
        nhs_text=nhs_text,
        birth=consent - ages,
        consent=consent,
        gender=rng.choice(GENDER_CODES, n, p=[0.47, 0.48, 0.03, 0.02]),
        ethnic=rng.choice(ETHNIC_CODES, n, p=ETHNIC_SHARES / ETHNIC_SHARES.sum()),
        pod=pod,
        cluster=cluster,
        withdrawn=np.full(n, NOT_WITHDRAWN),
        withdrawal=np.full(n, "", dtype="U9"),
        wellbeing=rng.standard_normal(n),
    )
    _withdraw(people, spec, rng)
    return people


def _arms(spec: SiteSpec, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster randomisation: half the clusters POD, everyone in a cluster shares its arm."""
    if spec.clusters == 0:
        return np.ones(n, bool), np.full(n, "")
    cluster_pod = rng.permutation(np.arange(spec.clusters) % 2 == 0)
    member = rng.integers(0, spec.clusters, n)
    names = np.char.add(
        f"{spec.prefix}-C", np.char.zfill((np.arange(spec.clusters) + 1).astype("U2"), 2)
    )
    return cluster_pod[member], names[member]


def _withdraw(people: People, spec: SiteSpec, rng: np.random.Generator) -> None:
    """Random withdrawals at the site's rates, then at least one of each forced type."""
    n = len(people)
    last = day(spec.exports[-1]) - 1
    room = (last - people.consent).astype(int)
    draw = rng.random(n)
    bounds = np.cumsum(spec.withdrawal_rates)
    kind = np.searchsorted(bounds, draw, side="right")
    chosen = (kind < len(WITHDRAWAL_TYPES)) & (room > 30)
    after = rng.integers(7, 241, n)
    people.withdrawal[chosen] = np.array(WITHDRAWAL_TYPES)[kind[chosen]]
    people.withdrawn[chosen] = people.consent[chosen] + np.minimum(after, room)[chosen]
    for kind_name in spec.forced_withdrawals:
        if not (people.withdrawal == kind_name).any():
            _force(people, spec, rng, kind_name)


def _force(people: People, spec: SiteSpec, rng: np.random.Generator, kind: str) -> None:
    """Withdraw one more participant; all_data between the first two exports, after baseline."""
    free = people.withdrawal == ""
    exports = [day(e) for e in spec.exports]
    if kind == "all_data" and len(exports) >= 2:
        # Recruited long enough before the first export that their baseline visit is in it.
        candidates = np.flatnonzero(free & (people.consent < exports[0] - 40))
        window = (exports[0], exports[1] - 1)
    else:
        candidates = np.flatnonzero(free & (people.consent < exports[-1] - 60))
        window = None
    if len(candidates) == 0:
        return
    person = int(rng.choice(candidates))
    if window is None:
        window = (people.consent[person] + 20, min(people.consent[person] + 240, exports[-1] - 1))
    span = int((window[1] - window[0]).astype(int))
    people.withdrawal[person] = kind
    people.withdrawn[person] = window[0] + int(rng.integers(0, span + 1))


def register_table(people: People, export_day: np.datetime64) -> tuple[pa.Table, np.ndarray]:
    """The register as exported on export_day, and the participant index of each of its rows."""
    rows = np.flatnonzero(people.consent < export_day)
    shown = people.withdrawn[rows] < export_day  # NaT compares False
    table = pa.table(
        {
            "study_id": _text(people.study_id[rows]),
            "nhs_number": _text(people.nhs_text[rows]),
            "date_of_birth": pa.array(people.birth[rows]),
            "gender": _text(people.gender[rows]),
            "ethnic_category": _text(people.ethnic[rows]),
            "arm": _text(np.where(people.pod[rows], "POD", "TAU")),
            "cluster_id": _text(people.cluster[rows]),
            "consent_date": pa.array(people.consent[rows]),
            "withdrawal_date": pa.array(people.withdrawn[rows], mask=~shown),
            "withdrawal_type": _text(np.where(shown, people.withdrawal[rows], "")),
        }
    )
    return table, rows


def _text(values: np.ndarray) -> pa.Array:
    """A string column in which '' is written as an empty field."""
    return pa.array(values.astype(str), type=pa.string(), mask=values == "")
