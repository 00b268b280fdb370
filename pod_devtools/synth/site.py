"""One site's synthetic truth, and the files of each of its exports cut from it."""

from dataclasses import dataclass

import numpy as np

from pod_devtools.synth.acute_care import AcuteCare, acute_care_table, make_acute_care
from pod_devtools.synth.config import SiteSpec
from pod_devtools.synth.epr import ITEM_8, Honos, honos_table, make_honos
from pod_devtools.synth.meetings import Meetings, make_meetings, meetings_table
from pod_devtools.synth.people import People, day, make_people, register_table
from pod_devtools.synth.questionnaires import Redcap, integer_fields, make_redcap
from pod_devtools.synth.redcap import dictionary_rows, dictionary_table, records_table
from pod_devtools.synth.writer import CsvFile
from pod_pipeline import seeds

WEMWBS = [integer_fields().index(f"wemwbs_{i:02d}") for i in range(1, 15)]


@dataclass
class Site:
    """Everything collected at a site up to its last export, before it is cut into batches."""

    spec: SiteSpec
    people: People
    redcap: Redcap
    honos: Honos
    meetings: Meetings
    acute_care: AcuteCare


@dataclass
class Cut:
    """One export's files, with who each table row is about and the corrections it predates."""

    files: dict[str, CsvFile]
    persons: dict[str, np.ndarray]
    redcap_rows: np.ndarray
    corrections: list[dict[str, object]]


def make_site(spec: SiteSpec, streams: list[np.random.Generator], nhs_numbers: np.ndarray) -> Site:
    """Draw a site's participants and everything collected about them, one stream each."""
    people = make_people(spec, streams[0], nhs_numbers)
    protocol = seeds.site_protocol(spec.code, {})
    return Site(
        spec,
        people,
        make_redcap(people, streams[1], protocol),
        make_honos(people, streams[2], protocol),
        make_meetings(people, spec.prefix, streams[3]),
        make_acute_care(people, streams[4]),
    )


def cut(
    site: Site, k: int, rng: np.random.Generator, dictionary: list[dict[str, str]] | None
) -> Cut:
    """Export k: everything collected before its day; an earlier export carries a few values that
    the next one corrects (REDCap items, HoNOS ratings re-exported under the same assessment_id;
    acute-care episodes open at one export and closed, under the same episode_id, at a later one)."""
    spec, people = site.spec, site.people
    export_day = day(spec.exports[k])
    register, register_rows = register_table(people, export_day)
    rc_rows = np.flatnonzero(site.redcap.date < export_day)
    consented = people.consent < export_day
    ho_rows = np.flatnonzero((site.honos.date < export_day) & consented[site.honos.person])
    mt_rows = np.flatnonzero((site.meetings.date < export_day) & consented[site.meetings.person])
    values, items = site.redcap.values[rc_rows], site.honos.items[ho_rows]
    corrections = []
    if k < len(spec.exports) - 1:
        main = site.redcap.instance[rc_rows] == 0
        corrections += _perturb(rng, values, main, WEMWBS, 1, 5, "redcap_records.csv", rc_rows)
        other_items = [j for j in range(items.shape[1]) if j != ITEM_8]
        corrections += _perturb(
            rng, items, np.ones(len(ho_rows), bool), other_items, 0, 4, "honos.csv", ho_rows
        )
    files = {
        "register.csv": CsvFile(register, bom=spec.register_bom),
        "redcap_records.csv": CsvFile(
            records_table(
                site.redcap, people, spec.code if spec.access_group else None, rc_rows, values
            )
        ),
        "honos.csv": CsvFile(honos_table(site.honos, ho_rows, items), quote_all=True),
        "network_meetings.csv": CsvFile(meetings_table(site.meetings, people, mt_rows)),
    }
    if dictionary is not None:
        files["redcap_dictionary.csv"] = CsvFile(
            dictionary_table(dictionary), quote_all=True, bom=True
        )
    persons = {
        "register.csv": register_rows,
        "redcap_records.csv": site.redcap.person[rc_rows],
        "honos.csv": site.honos.person[ho_rows],
        "network_meetings.csv": site.meetings.person[mt_rows],
    }
    if spec.delivers_acute_care:
        care = site.acute_care
        ac_rows = np.flatnonzero((care.start < export_day) & consented[care.person])
        files["acute_care.csv"] = CsvFile(acute_care_table(care, ac_rows, export_day), quote_all=True)
        persons["acute_care.csv"] = care.person[ac_rows]
    return Cut(files, persons, rc_rows, corrections)


def _perturb(
    rng: np.random.Generator,
    values: np.ndarray,
    rows: np.ndarray,
    columns: list[int],
    low: int,
    high: int,
    file: str,
    source_rows: np.ndarray,
) -> list[dict[str, object]]:
    """Change about 1 in 200 rows' answer (at least one) to another valid value, in place.

    Returns the first few changes: truth row, column index, value in this export, corrected value.
    """
    candidates = np.flatnonzero(rows)
    count = max(1, len(candidates) // 200)
    r = rng.choice(candidates, min(len(candidates), 3 * count + 3), replace=False)
    c = rng.choice(columns, len(r))
    answered = (values[r, c] >= low) & (values[r, c] <= high)
    r, c = r[answered][:count], c[answered][:count]
    corrected = values[r, c].copy()
    values[r, c] = low + (corrected - low + 1) % (high - low + 1)
    return [
        {
            "file": file,
            "row": int(source_rows[i]),
            "column": int(j),
            "exported": int(values[i, j]),
            "corrected": int(v),
        }
        for i, j, v in zip(r[:3], c[:3], corrected[:3], strict=True)
    ]


def first_dictionary(messy: bool) -> list[dict[str, str]]:
    """The dictionary of a site's first export; a messy one drifts from the pipeline's."""
    rows = dictionary_rows()
    if not messy:
        return rows
    for row in rows:
        if row["Variable / Field Name"] == "su_psychiatric_inpatient_nights":
            row["Text Validation Max"] = "31"
    name = rows[0] | {
        "Variable / Field Name": "participant_name",
        "Field Label": "Participant name",
        "Identifier?": "y",
    }
    return [rows[0], name, *rows[1:]]
