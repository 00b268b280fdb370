"""Row defects, each a unit with exactly one problem and no knock-on quarantine.

Register defects sit on extra participants who have no other data; HoNOS, meeting and acute-care
defects are copies of real rows under a new key, so every other record of the file still loads.
"""

import numpy as np

from pod_devtools.synth.nhs import broken_check_digit, format_numbers
from pod_devtools.synth.plant import ACUTE_CARE, HONOS, MEETINGS, REDCAP, REGISTER, Batch, Overrides, malformed
from pod_devtools.synth.redcap_defects import plant_redcap


def _uk(iso: str) -> str:
    """An ISO date written the UK way (DD/MM/YYYY)."""
    return f"{iso[8:10]}/{iso[5:7]}/{iso[:4]}"


def _shift(iso: str, days: int) -> str:
    """An ISO date some days later (or earlier)."""
    return str(np.datetime64(iso, "D") + days)


def _iso(written: str) -> str:
    """A date the EPR wrote as YYYY-MM-DD or DD/MM/YYYY, as YYYY-MM-DD."""
    return f"{written[6:]}-{written[3:5]}-{written[:2]}" if "/" in written else written


# kind -> (reason, column, changes to a valid row). Every change breaks exactly one rule.
REGISTER_DEFECTS: dict[str, tuple[str, str, Overrides]] = {
    "empty_date_of_birth": ("missing_value", "date_of_birth", lambda b, r: {"date_of_birth": ""}),
    "lower_case_study_id": (
        "invalid_format",
        "study_id",
        lambda b, r: {"study_id": r["study_id"].lower()},
    ),
    "impossible_consent_date": (
        "invalid_date",
        "consent_date",
        lambda b, r: {"consent_date": r["consent_date"][:4] + "-02-30"},
    ),
    "uk_date_of_birth": (
        "invalid_date",
        "date_of_birth",
        lambda b, r: {"date_of_birth": _uk(r["date_of_birth"])},
    ),
    "gender_m": ("invalid_code", "gender", lambda b, r: {"gender": "M"}),
    "ethnic_99": ("invalid_code", "ethnic_category", lambda b, r: {"ethnic_category": "99"}),
    "arm_control": ("invalid_code", "arm", lambda b, r: {"arm": "Control"}),
    "withdrawal_moved_away": (
        "invalid_code",
        "withdrawal_type",
        lambda b, r: {
            "withdrawal_date": _shift(r["consent_date"], 5),
            "withdrawal_type": "moved_away",
        },
    ),
    "bad_nhs_number": (
        "invalid_nhs_number",
        "nhs_number",
        lambda b, r: {"nhs_number": str(broken_check_digit(int(b.spare_nhs[0])))},
    ),
    "withdrawal_before_consent": (
        "date_order",
        "withdrawal_date",
        lambda b, r: {
            "withdrawal_date": _shift(r["consent_date"], -10),
            "withdrawal_type": "follow_up",
        },
    ),
    "died_without_date": (
        "inconsistent_value",
        "withdrawal_type",
        lambda b, r: {"withdrawal_type": "died"},
    ),
    "nhs_number_as_cluster": (
        "identifier_in_text",
        "cluster_id",
        lambda b, r: {"cluster_id": "943 476 5919"},
    ),
}

HONOS_DEFECTS: dict[str, tuple[str, str, Overrides]] = {
    "empty_assessment_id": ("missing_value", "assessment_id", lambda b, r: {"assessment_id": ""}),
    "april_31": ("invalid_date", "assessment_date", lambda b, r: {"assessment_date": "31/04/2026"}),
    "february_30": (
        "invalid_date",
        "assessment_date",
        lambda b, r: {"assessment_date": "2026-02-30"},
    ),
    "item_5": ("out_of_range", "honos_05", lambda b, r: {"honos_05": "5"}),
    "bad_nhs_number": (
        "invalid_nhs_number",
        "nhs_number",
        lambda b, r: {"nhs_number": str(broken_check_digit(int(b.spare_nhs[1])))},
    ),
    "unlinked": (
        "unlinked",
        "nhs_number",
        lambda b, r: {"nhs_number": str(format_numbers(b.spare_nhs[2:3], np.array([True]))[0])},
    ),
    "problem_type_with_item_8_zero": (
        "inconsistent_value",
        "honos_08_problem_type",
        lambda b, r: {"honos_08": "0", "honos_08_problem_type": "C"},
    ),
    "item_8_without_problem_type": (
        "inconsistent_value",
        "honos_08_problem_type",
        lambda b, r: {"honos_08": "3", "honos_08_problem_type": ""},
    ),
}

MEETING_DEFECTS: dict[str, tuple[str, str, Overrides]] = {
    "empty_meeting_id": ("missing_value", "meeting_id", lambda b, r: {"meeting_id": ""}),
    "june_31": ("invalid_date", "meeting_date", lambda b, r: {"meeting_date": "2025-06-31"}),
    "duration_600": ("out_of_range", "duration_minutes", lambda b, r: {"duration_minutes": "600"}),
    "service_user_2": (
        "invalid_code",
        "service_user_present",
        lambda b, r: {"service_user_present": "2"},
    ),
    "family_in_words": (
        "not_a_number",
        "family_members_present",
        lambda b, r: {"family_members_present": "two"},
    ),
    "peer_worker_yes": (
        "invalid_code",
        "peer_support_worker_present",
        lambda b, r: {"peer_support_worker_present": "yes"},
    ),
    "key_element_3": ("invalid_code", "key_element_05", lambda b, r: {"key_element_05": "3"}),
    "unknown_study_id": (
        "unknown_participant",
        "study_id",
        lambda b, r: {"study_id": b.unknown_study_id()},
    ),
    "long_before_consent": (
        "date_order",
        "meeting_date",
        lambda b, r: {"meeting_date": _shift(_consent_of(b, r["study_id"]), -120)},
    ),
}


ACUTE_CARE_DEFECTS: dict[str, tuple[str, str, Overrides]] = {
    "day_hospital": ("invalid_code", "episode_type", lambda b, r: {"episode_type": "day_hospital"}),
    "end_before_start": (
        "date_order",
        "end_date",
        lambda b, r: {"end_date": _shift(_iso(r["start_date"]), -3)},
    ),
    "bad_nhs_number": (
        "invalid_nhs_number",
        "nhs_number",
        lambda b, r: {"nhs_number": str(broken_check_digit(int(b.spare_nhs[3])))},
    ),
    "unlinked": (
        "unlinked",
        "nhs_number",
        lambda b, r: {"nhs_number": str(format_numbers(b.spare_nhs[4:5], np.array([False]))[0])},
    ),
    "empty_start_date": ("missing_value", "start_date", lambda b, r: {"start_date": ""}),
    "april_31": ("invalid_date", "start_date", lambda b, r: {"start_date": "31/04/2026"}),
}
# The key that a copy of a real row is given anew, and the row defects, of each copied file.
COPIED: dict[str, tuple[str, dict[str, tuple[str, str, Overrides]]]] = {
    HONOS: ("assessment_id", HONOS_DEFECTS),
    MEETINGS: ("meeting_id", MEETING_DEFECTS),
    ACUTE_CARE: ("episode_id", ACUTE_CARE_DEFECTS),
}


def _consent_of(b: Batch, study_id: str) -> str:
    """A participant's consent date."""
    return str(b.people.consent[np.flatnonzero(b.people.study_id == study_id)[0]])


def plant_register(b: Batch, kinds: list[str]) -> None:
    """Register defects, each on an extra participant who has no other data."""
    for kind in kinds:
        row = _new_participant(b)
        if kind == "malformed_row":
            b.append(REGISTER, malformed(REGISTER, list(row.values())), "malformed_row", None)
        elif kind == "duplicate_key":
            b.append(REGISTER, row, "duplicate_key", "study_id")
            b.append(REGISTER, row | {"gender": "1"}, "duplicate_key", "study_id")
        else:
            reason, column, change = REGISTER_DEFECTS[kind]
            b.append(REGISTER, row | change(b, row), reason, column)


def _new_participant(b: Batch) -> dict[str, str]:
    """A valid register row for someone recruited shortly before the export."""
    pod = b.people.pod[0]
    cluster = b.people.cluster[b.people.pod == pod][0]
    consent = b.export_day - 20 - int(b.rng.integers(0, 30))
    return {
        "study_id": b.new_study_id(),
        "nhs_number": "",
        "date_of_birth": str(consent - 12000),
        "gender": "2",
        "ethnic_category": "A",
        "arm": "POD" if pod else "TAU",
        "cluster_id": str(cluster),
        "consent_date": str(consent),
        "withdrawal_date": "",
        "withdrawal_type": "",
    }


def plant_copies(b: Batch, file: str, kinds: list[str]) -> None:
    """HoNOS, meeting or acute-care defects on copies of real rows given a new key."""
    key, defects = COPIED[file]
    rows = np.ones(b.files[file].table.num_rows, bool)
    for number, kind in enumerate(kinds, start=1):
        if kind == "duplicate_key":
            b.duplicate(file, b.pick(file, rows), key)
            continue
        source = b.pick(file, rows, exclusive=False)
        row = b.values(file, source)
        row[key] = f"{row[key]}X{number}"
        if kind == "malformed_row":
            b.append(file, malformed(file, list(row.values())), "malformed_row", None)
        else:
            reason, column, change = defects[kind]
            b.append(file, row | change(b, row), reason, column)


def plant(b: Batch, plan: dict[str, list[str]]) -> None:
    """Plant the kinds of defect the plan names, file by file."""
    for file, kinds in plan.items():
        if file == REGISTER:
            plant_register(b, kinds)
        elif file == REDCAP:
            plant_redcap(b, kinds)
        else:
            plant_copies(b, file, kinds)
