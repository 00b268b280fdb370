"""The REDCap flat export and data dictionary of one site, as Arrow tables."""

import csv
import functools

import numpy as np
import pyarrow as pa

from pod_devtools.synth.people import People
from pod_devtools.synth.questionnaires import (
    CARER_INSTRUMENT,
    EMPTY,
    MISSING_CODES,
    Redcap,
    integer_fields,
    timepoints,
)
from pod_pipeline.ingest.rules import instrument_items
from pod_pipeline.settings import SEEDS_DIR

PLUMBING = (
    "record_id",
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
)
DICTIONARY_COLUMNS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)
# Answer labels of the radio-button fields, by field-name prefix; codes run from the seed's min.
CHOICE_LABELS = {
    "wemwbs_": ("None of the time", "Rarely", "Some of the time", "Often", "All of the time"),
    "wsas_": ("Not at all", "", "Slightly", "", "Definitely", "", "Markedly", "", "Very severely"),
    "csq8_": ("Least satisfied", "", "", "Most satisfied"),
    "eq5d5l_": (
        "No problems",
        "Slight problems",
        "Moderate problems",
        "Severe problems",
        "Unable / extreme problems",
    ),
    "carer_relationship": ("Parent", "Partner", "Sibling", "Son or daughter", "Friend", "Other"),
    "cws_wb_": ("A lot", "Quite a lot", "Somewhat", "A little", "Not at all"),
    "cws_sp_": ("Very dissatisfied", "Dissatisfied", "Neither", "Satisfied", "Very satisfied"),
}

MATRIX_GROUPS = ("wemwbs_", "cws_wb_", "cws_sp_")


@functools.cache
def event_names() -> dict[tuple[str, str], str]:
    """(timepoint, arm) -> REDCap event name, from the shared seed."""
    with (SEEDS_DIR / "redcap_events.csv").open(newline="", encoding="utf-8") as handle:
        return {
            (row["timepoint"], row["arm"]): row["redcap_event_name"]
            for row in csv.DictReader(handle)
        }


def coded(values: np.ndarray) -> pa.DictionaryArray:
    """Coded integers as text: numbers, missing-data codes, and EMPTY as an empty field."""
    top = max(int(values.max(initial=0)), 0)
    words = [*MISSING_CODES[::-1], "", *map(str, range(top + 1))]
    offset = len(MISSING_CODES) + 1  # code c is words[c + offset]
    indices = pa.array((values.astype(np.int16) + offset), mask=values == EMPTY)
    return pa.DictionaryArray.from_arrays(indices, pa.array(words))


def _labelled(
    indices: np.ndarray, words: list[str], mask: np.ndarray | None = None
) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int16), mask=mask), pa.array(words)
    )


def records_table(
    redcap: Redcap, people: People, site: str | None, rows: np.ndarray, values: np.ndarray
) -> pa.Table:
    """The flat export of the given rows (values: those rows' codes, corrections applied)."""
    person, instance = redcap.person[rows], redcap.instance[rows]
    main = instance == 0
    events = list(event_names().values())
    # [arm, timepoint] -> position in events; arm 0 POD, 1 TAU; timepoints as Redcap.event counts.
    event_index = np.array(
        [
            [events.index(event_names()[(t, arm)]) for t in timepoints()]
            for arm in ("POD", "TAU")
        ]
    )
    columns = {
        "record_id": pa.array(people.study_id.astype(str)).take(pa.array(person)),
        "redcap_event_name": _labelled(
            event_index[(~people.pod[person]).astype(int), redcap.event[rows]], events
        ),
        "redcap_repeat_instrument": _labelled(np.zeros(len(rows)), [CARER_INSTRUMENT], main),
        "redcap_repeat_instance": pa.array(instance, mask=main),
        "redcap_data_access_group": _labelled(
            np.zeros(len(rows)), [site or ""], np.full(len(rows), site is None)
        ),
    }
    fields = integer_fields()
    for item in instrument_items():
        name = item.field_name
        if name == "visit_date":
            columns[name] = pa.array(redcap.date[rows], mask=~main)
        elif name == "carer_id":
            columns[name] = _labelled(redcap.carer[rows] - 1, ["C1", "C2", "C3"], main)
        else:
            columns[name] = coded(values[:, fields.index(name)])
    return pa.table(columns)


def dictionary_rows() -> list[dict[str, str]]:
    """The REDCap data dictionary: record_id, then every field of the seed but the form-status ones.

    REDCap never lists `<form>_complete` fields in its dictionary: they exist for every form.
    """
    blank = dict.fromkeys(DICTIONARY_COLUMNS, "")
    rows = [
        blank
        | {
            "Variable / Field Name": "record_id",
            "Form Name": "visit",
            "Field Type": "text",
            "Field Label": "Record ID",
        }
    ]
    for item in instrument_items():
        if item.role == "completion":
            continue
        row = blank | {
            "Variable / Field Name": item.field_name,
            "Form Name": item.instrument,
            "Field Label": _label(item.field_name),
        }
        prefix = next((k for k in CHOICE_LABELS if item.field_name.startswith(k)), None)
        labels = CHOICE_LABELS.get(prefix, ())
        # A radio field only where its choices cover the seed's range exactly (not the VAS).
        if item.min_value is not None and item.max_value == item.min_value + len(labels) - 1:
            row |= {
                "Field Type": "radio",
                "Choices, Calculations, OR Slider Labels": " | ".join(
                    f"{item.min_value + i}, {label or item.min_value + i}"
                    for i, label in enumerate(labels)
                ),
            }
            if prefix in MATRIX_GROUPS:
                row["Matrix Group Name"] = prefix.rstrip("_")
        elif item.value_type == "date":
            row |= {
                "Field Type": "text",
                "Text Validation Type OR Show Slider Number": "date_ymd",
                "Required Field?": "y",
            }
        elif item.value_type == "integer":
            row |= {
                "Field Type": "text",
                "Text Validation Type OR Show Slider Number": "integer",
                "Text Validation Min": _text(item.min_value),
                "Text Validation Max": _text(item.max_value),
            }
        else:
            row["Field Type"] = "text"
        rows.append(row)
    return rows


def dictionary_table(rows: list[dict[str, str]]) -> pa.Table:
    """Dictionary rows as a table of text, empty cells empty."""
    return pa.table(
        {c: pa.array([r[c] or None for r in rows], pa.string()) for c in DICTIONARY_COLUMNS}
    )


def _label(field: str) -> str:
    """A field label: "WEMWBS item 3", "Visit date"."""
    instrument, _, number = field.rpartition("_")
    if number.isdigit():
        return f"{instrument.upper().replace('_', ' ')} item {int(number)}"
    return field.replace("_", " ").capitalize()


def _text(value: int | None) -> str:
    """A limit as the dictionary writes it: empty when there is none."""
    return "" if value is None else str(value)
