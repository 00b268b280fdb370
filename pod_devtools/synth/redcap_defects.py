"""REDCap defects: bad rows appended, and bad values in single instrument fields (the rest of
such a row loads, only that instrument is quarantined)."""

import numpy as np

from pod_devtools.synth.plant import REDCAP, Batch, Overrides, malformed
from pod_devtools.synth.questionnaires import protocol_timepoints, timepoints
from pod_devtools.synth.redcap import event_names
from pod_pipeline import seeds


def _event(b: Batch, r: dict[str, str], timepoint: str, other_arm: bool) -> str:
    """The event of a timepoint in the record's arm, or in the other arm."""
    pod = bool(b.people.pod[np.flatnonzero(b.people.study_id == r["record_id"])[0]])
    return event_names()[(timepoint, "TAU" if pod == other_arm else "POD")]


def _unscheduled_event(b: Batch, r: dict[str, str]) -> str:
    """An event of the record's arm outside its site's protocol: the first timepoint the protocol
    does not schedule (month_12 at a pod_evaluation site), else one no protocol has (month_36)."""
    scheduled = protocol_timepoints(seeds.site_protocol(b.spec.code, {}))
    outside = [t for i, t in enumerate(timepoints()) if i not in scheduled]
    return (outside[0] if outside else "month_36") + "_arm_" + r["redcap_event_name"].rpartition("_arm_")[2]


# kind -> (which row to copy, reason, column, change): extra REDCap rows, each broken once.
REDCAP_ROW_DEFECTS: dict[str, tuple[str, str, str, Overrides]] = {
    "empty_record_id": ("main", "missing_value", "record_id", lambda b, r: {"record_id": ""}),
    "month_12_event": (
        "main",
        "invalid_event",
        "redcap_event_name",
        lambda b, r: {"redcap_event_name": _unscheduled_event(b, r)},
    ),
    "unknown_repeat_instrument": (
        "carer",
        "invalid_code",
        "redcap_repeat_instrument",
        lambda b, r: {"redcap_repeat_instrument": "carer_survey"},
    ),
    "carer_without_instance": (
        "carer",
        "invalid_repeat",
        "redcap_repeat_instance",
        lambda b, r: {"redcap_repeat_instance": ""},
    ),
    "instance_without_carer": (
        "main",
        "invalid_repeat",
        "redcap_repeat_instance",
        lambda b, r: {"redcap_repeat_instance": "2"},
    ),
    "unknown_record": (
        "main",
        "unknown_participant",
        "record_id",
        lambda b, r: {"record_id": b.unknown_study_id()},
    ),
    # Month 6 of the other arm, for someone with no month-6 row: only the arm is wrong.
    "other_arm_event": (
        "main_without_month_6",
        "arm_mismatch",
        "redcap_event_name",
        lambda b, r: {"redcap_event_name": _event(b, r, "month_6", other_arm=True)},
    ),
}

# kind -> (which row, field, bad value, reason): the row loads, that instrument is quarantined.
REDCAP_VALUE_DEFECTS: dict[str, tuple[str, str, str, str]] = {
    "wemwbs_in_words": ("main", "wemwbs_07", "four", "not_a_number"),
    "wsas_9": ("main", "wsas_3", "9", "out_of_range"),
    "vas_150": ("main", "eq5d5l_vas", "150", "out_of_range"),
    "negative_gp_visits": ("main", "su_gp_visits", "-2", "out_of_range"),
    "visit_february_29": ("main", "visit_date", "2025-02-29", "invalid_date"),
    "wemwbs_complete_3": ("main", "wemwbs_complete", "3", "out_of_range"),
    "carer_relationship_7": ("carer", "carer_relationship", "7", "out_of_range"),
    "carer_support_in_words": ("carer", "cws_sp_04", "n/a", "not_a_number"),
}


def _redcap_rows(b: Batch, which: str) -> np.ndarray:
    """REDCap rows of a kind: main, carer, or main rows of people without month 6."""
    main = b.redcap_instance == 0
    if which == "carer":
        return ~main
    if which == "main_without_month_6":
        persons = b.persons[REDCAP]
        return main & ~np.isin(persons, persons[main & (b.redcap_event == 2)])
    return main


def plant_redcap(b: Batch, kinds: list[str]) -> None:
    """REDCap defects: bad rows appended, bad values in single instrument fields."""
    for kind in kinds:
        if kind in REDCAP_VALUE_DEFECTS:
            which, column, value, reason = REDCAP_VALUE_DEFECTS[kind]
            b.edit(REDCAP, b.pick(REDCAP, _redcap_rows(b, which)), column, value, reason)
        elif kind in ("duplicate_main", "duplicate_carer"):
            b.duplicate(
                REDCAP,
                b.pick(REDCAP, _redcap_rows(b, kind.removeprefix("duplicate_"))),
                "record_id",
            )
        elif kind == "malformed_row":
            row = list(b.values(REDCAP, b.pick(REDCAP, _redcap_rows(b, "main"), False)).values())
            b.append(REDCAP, malformed(REDCAP, row), "malformed_row", None)
        else:
            which, reason, column, change = REDCAP_ROW_DEFECTS[kind]
            row = b.values(REDCAP, b.pick(REDCAP, _redcap_rows(b, which), exclusive=False))
            b.append(REDCAP, row | change(b, row), reason, column)
