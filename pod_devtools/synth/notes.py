"""The "expect" notes of planted.json: what a correct pipeline loads, warns about or flags."""

import csv

import numpy as np

from pod_devtools.synth.epr import ITEMS, NOT_KNOWN
from pod_devtools.synth.people import day
from pod_devtools.synth.questionnaires import EMPTY, MISSING_CODES, integer_fields, timepoints
from pod_devtools.synth.redcap import event_names
from pod_devtools.synth.site import Cut, Site
from pod_pipeline.settings import SEEDS_DIR

Note = dict[str, object]
EXAMPLES = 3


def _windows() -> list[tuple[int, int, int]]:
    """(target, first, last) study day of each timepoint, from the shared seed."""
    with (SEEDS_DIR / "visit_windows.csv").open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: int(r["timepoint_order"]))
    return [
        (int(r["target_day"]), int(r["window_start_day"]), int(r["window_end_day"])) for r in rows
    ]


def _event(site: Site, person: int, event: int) -> str:
    """The REDCap event name of a timepoint in the participant's arm."""
    arm = "POD" if site.people.pod[person] else "TAU"
    return event_names()[(timepoints()[event], arm)]


def batch_notes(site: Site, k: int, piece: Cut) -> list[Note]:
    """Values of export k that export k + 1 corrects."""
    spec, notes = site.spec, []
    for change in piece.corrections:
        row = int(change["row"])
        if change["file"] == "honos.csv":
            key = {"assessment_id": str(site.honos.assessment_id[row])}
            column = ITEMS[int(change["column"])]
        else:
            person = int(site.redcap.person[row])
            key = {
                "record_id": str(site.people.study_id[person]),
                "redcap_event_name": _event(site, person, int(site.redcap.event[row])),
            }
            column = integer_fields()[int(change["column"])]
        notes.append(
            {
                "kind": "corrected_value",
                "site": spec.code,
                "export_id": spec.export_ids[k + 1],
                "earlier_export_id": spec.export_ids[k],
                "file": change["file"],
                "key": key,
                "column": column,
                "earlier_value": str(change["exported"]),
                "corrected_value": str(change["corrected"]),
            }
        )
    return notes


def site_notes(site: Site, drift: bool) -> list[Note]:
    """Withdrawals, out-of-window visits, missing-data codes, HoNOS 9s and ties, open acute-care
    episodes (or no data cut), file formats."""
    spec, people = site.spec, site.people
    final = day(spec.exports[-1])
    notes = _withdrawal_notes(site)
    redcap = site.redcap
    exported = redcap.date < final
    codes = (redcap.values[exported] <= EMPTY - 1).sum()
    notes.append(
        {
            "kind": "missing_data_codes",
            "site": spec.code,
            "export_id": spec.export_ids[-1],
            "file": "redcap_records.csv",
            "count": int(codes),
            "codes": list(MISSING_CODES),
        }
    )
    notes.append(_out_of_window(site, exported))
    honos = site.honos
    shown = (honos.date < final) & (people.consent[honos.person] < final)
    notes.append(
        {
            "kind": "honos_not_known",
            "site": spec.code,
            "export_id": spec.export_ids[-1],
            "file": "honos.csv",
            "count": int((honos.items[shown] == NOT_KNOWN).sum()),
            "note": "item value 9 = not known: a missing item, not a score",
        }
    )
    notes.append(_honos_windows(site, shown))
    notes.append(_acute_care(site, final))
    notes.append(
        {
            "kind": "file_format",
            "site": spec.code,
            "line_ends": "CRLF" if spec.crlf else "LF",
            "byte_order_mark": ["redcap_dictionary.csv"]
            + (["register.csv"] if spec.register_bom else []),
            "note": ("honos.csv and acute_care.csv quote" if spec.delivers_acute_care else "honos.csv quotes")
            + " every value, some rater_role values hold a comma, quotes or a line break; "
            "redcap_dictionary.csv is in the first export only",
        }
    )
    if drift:
        notes += [
            {
                "kind": "identifier_field",
                "site": spec.code,
                "file": "redcap_records.csv",
                "column": "participant_name",
                "note": "the dictionary flags it Identifier? = y: never leaves raw",
            },
            {
                "kind": "schema_drift",
                "site": spec.code,
                "file": "redcap_records.csv",
                "column": "visit_location",
                "note": "an export field the dictionary does not define (an extra column, kept)",
            },
            {
                "kind": "schema_drift",
                "site": spec.code,
                "export_id": spec.export_ids[0],
                "file": "redcap_dictionary.csv",
                "column": "su_psychiatric_inpatient_nights",
                "note": "Text Validation Max 31 where instrument_items.csv says 92",
            },
            {
                "kind": "extra_column",
                "site": spec.code,
                "file": "network_meetings.csv",
                "column": "venue",
                "note": "not in the contract: kept, reported as a warning",
            },
        ]
    return notes


def _acute_care(site: Site, final: np.datetime64) -> Note:
    """Episodes still open at the last export, or a site without a data cut (no acute_care.csv)."""
    spec, care = site.spec, site.acute_care
    if not spec.delivers_acute_care:
        return {
            "kind": "no_data_cut",
            "site": spec.code,
            "file": "acute_care.csv",
            "note": "never delivered: no data cut, participants not followed in the EPR (no time to relapse)",
        }
    shown = (care.start < final) & (site.people.consent[care.person] < final)
    return {
        "kind": "acute_care_open_episodes",
        "site": spec.code,
        "export_id": spec.export_ids[-1],
        "file": "acute_care.csv",
        "count": int((shown & (care.end >= final)).sum()),
        "note": "no end_date: still open, the episode ends at the site's data cut",
    }


def _withdrawal_notes(site: Site) -> list[Note]:
    """Every withdrawal, the export first showing it, whether data predates the first export."""
    spec, people = site.spec, site.people
    withdrawn = np.flatnonzero(people.withdrawal != "")
    export_days = np.array([day(e) for e in spec.exports])
    first_shown = np.searchsorted(export_days, people.withdrawn[withdrawn], side="right")
    early = site.redcap.person[site.redcap.date < export_days[0]]
    had_data = np.isin(withdrawn, early)
    return [
        {
            "kind": "withdrawal",
            "site": spec.code,
            "study_id": str(people.study_id[p]),
            "withdrawal_type": str(people.withdrawal[p]),
            "withdrawal_date": str(people.withdrawn[p]),
            "first_export_id": spec.export_ids[shown],
            "had_data_in_export_id": spec.export_ids[0] if had else None,
        }
        for p, shown, had in zip(withdrawn, first_shown, had_data, strict=True)
    ]


def _out_of_window(site: Site, exported: np.ndarray) -> Note:
    """Questionnaire visits dated outside their event's window: flagged, never moved."""
    redcap, people = site.redcap, site.people
    main = exported & (redcap.instance == 0)
    study_day = (redcap.date - people.consent[redcap.person]).astype(int)
    bounds = np.array([w[1:] for w in _windows()])[redcap.event]
    outside = np.flatnonzero(main & ((study_day < bounds[:, 0]) | (study_day > bounds[:, 1])))
    return {
        "kind": "out_of_window_visits",
        "site": site.spec.code,
        "export_id": site.spec.export_ids[-1],
        "file": "redcap_records.csv",
        "count": len(outside),
        "examples": [
            {
                "record_id": str(people.study_id[redcap.person[r]]),
                "redcap_event_name": _event(site, int(redcap.person[r]), int(redcap.event[r])),
                "study_day": int(study_day[r]),
            }
            for r in outside[:EXAMPLES]
        ],
    }


def _honos_windows(site: Site, shown: np.ndarray) -> Note:
    """Participants rated more than once in one window, and some whose two ratings tie."""
    honos, people = site.honos, site.people
    study_day = (honos.date - people.consent[honos.person]).astype(int)
    several, ties = 0, []
    for target, first, last in _windows():
        inside = np.flatnonzero(shown & (study_day >= first) & (study_day <= last))
        inside = inside[np.argsort(honos.person[inside], kind="stable")]
        person = honos.person[inside]
        starts = np.flatnonzero(np.r_[True, person[1:] != person[:-1]])
        counts = np.diff(np.r_[starts, len(person)])
        several += int((counts > 1).sum())
        pairs = starts[counts == 2]
        distance = np.abs(study_day[inside] - target)
        tied = pairs[distance[pairs] == distance[pairs + 1]]
        ties += [
            {"study_id": str(people.study_id[person[t]]), "target_day": target}
            for t in tied[:EXAMPLES]
        ]
    return {
        "kind": "honos_several_in_window",
        "site": site.spec.code,
        "file": "honos.csv",
        "participant_windows": several,
        "tie_examples": ties,
        "note": "the rating nearest the target day is the analysis record; ties: the later rating",
    }


def fault_notes(site: str, last_export: str, unsealed_export: str) -> list[Note]:
    """The unsealed batch and the file no manifest lists: neither is loaded, neither is an error."""
    return [
        {
            "kind": "unsealed_batch",
            "site": site,
            "export_id": unsealed_export,
            "note": "no manifest.json: still being delivered, not loaded and not an error",
        },
        {
            "kind": "unlisted_file",
            "site": site,
            "export_id": last_export,
            "file": "register_draft.csv",
            "note": "present but not listed in the manifest: ignored with a warning",
        },
    ]
