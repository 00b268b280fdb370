"""Which defects go where: every kind in a messy zone, a handful in the bundled sample."""

from pod_devtools.synth.defects import ACUTE_CARE_DEFECTS, HONOS_DEFECTS, MEETING_DEFECTS, REGISTER_DEFECTS
from pod_devtools.synth.plant import ACUTE_CARE, HONOS, MEETINGS, REDCAP, REGISTER
from pod_devtools.synth.redcap_defects import REDCAP_ROW_DEFECTS, REDCAP_VALUE_DEFECTS
from pod_devtools.synth.zone import Plan

FIRST, LAST = 0, -1
# The first site carries every kind: register and meeting rows in its first export (gone from
# later ones, as a site fixes them), REDCap, HoNOS and acute-care rows in its last.
MESSY_FIRST_SITE: Plan = {
    FIRST: {
        REGISTER: ["malformed_row", "duplicate_key", *REGISTER_DEFECTS],
        MEETINGS: ["malformed_row", "duplicate_key", *MEETING_DEFECTS],
    },
    LAST: {
        REDCAP: [
            "malformed_row",
            "duplicate_main",
            "duplicate_carer",
            *REDCAP_ROW_DEFECTS,
            *REDCAP_VALUE_DEFECTS,
        ],
        HONOS: ["malformed_row", "duplicate_key", *HONOS_DEFECTS],
        ACUTE_CARE: ["malformed_row", "duplicate_key", *ACUTE_CARE_DEFECTS],
    },
}
# A few more at the last site (CRLF line ends), so line numbers are checked there too.
MESSY_LAST_SITE: Plan = {
    LAST: {
        REDCAP: ["carer_relationship_7"],
        HONOS: ["unlinked"],
        MEETINGS: ["duplicate_key"],
        ACUTE_CARE: ["unlinked"],
    },
}
SAMPLE: dict[str, Plan] = {
    "kmpt": {LAST: {REDCAP: ["wsas_9"], HONOS: ["unlinked"]}},
    "slam": {
        FIRST: {REGISTER: ["bad_nhs_number"]},
        LAST: {
            REDCAP: ["carer_support_in_words"],
            HONOS: ["april_31"],
            MEETINGS: ["long_before_consent"],
        },
    },
}


def plan_for(code: str, index: int, sites: int, messy: bool, preset: str | None) -> Plan:
    """The defects to plant at one site of a zone."""
    if preset == "sample":
        return SAMPLE.get(code, {})
    if not messy:
        return {}
    if index == 0:
        return MESSY_FIRST_SITE
    return MESSY_LAST_SITE if index == sites - 1 else {}
