"""Quarantine reason codes: the vocabulary sites are told their data was rejected in.

One code, one meaning. The README's "What each quarantine reason means" table is generated from
REASONS, and tests assert that every code the pipeline writes is listed here.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    scope: str  # batch | file | row | instrument
    meaning: str
    site_action: str


REASONS: dict[str, Reason] = {
    r.code: r
    for r in [
        Reason("manifest_invalid", "batch", "manifest.json is not valid JSON or lacks site, export_id or files.",
               "Re-write the manifest with `pod seal` or your export tool and send the batch again."),
        Reason("manifest_mismatch", "batch", "The manifest's site or export_id differs from the folder names.",
               "Put the batch in <site>/<export_id>/ matching the manifest."),
        Reason("file_missing", "batch", "A file listed in the manifest is not in the batch folder.",
               "Send the missing file, or re-seal the batch without it."),
        Reason("checksum_mismatch", "batch", "A file's SHA-256 differs from the manifest: it changed after sealing "
               "or arrived damaged.",
               "Re-export and re-seal the batch."),
        Reason("not_utf8", "file", "The file is not valid UTF-8 (the line of the first bad byte is given).",
               "Export as UTF-8 (CSV UTF-8 in Excel)."),
        Reason("empty_file", "file", "The file has no header row.", "Export the file with its header row."),
        Reason("missing_column", "file", "A required column is absent from the header.",
               "Add the named column; header names are case-sensitive."),
        Reason("duplicate_column", "file", "A column name appears twice in the header (names that "
               "differ only in the case of letters A-Z count as the same).",
               "Remove or rename the repeated column."),
        Reason("unnamed_column", "file", "A column in the header has no name (a trailing comma in "
               "the header row adds one).", "Name the column, or remove it and its values."),
        Reason("malformed_row", "row", "The row does not have the header's number of fields "
               "(often a stray comma or an unclosed quote).",
               "Quote fields that contain commas, quotes or line breaks."),
        Reason("missing_value", "row", "A required field is empty.", "Fill in the named field."),
        Reason("invalid_format", "row", "The value does not have the required form (e.g. study_id like KMPT-0007).",
               "Correct the value to the documented form."),
        Reason("invalid_date", "row", "Not a real date in the accepted format.",
               "Use YYYY-MM-DD (HoNOS and acute_care also DD/MM/YYYY)."),
        Reason("invalid_code", "row", "The value is not in the field's code list.",
               "Use one of the documented codes."),
        Reason("not_a_number", "instrument", "Text in a numeric field that is not a number "
               "nor a REDCap missing-data code.",
               "Enter the number, or UNK / NASK / ASKU / NA for a missing value."),
        Reason("out_of_range", "instrument", "A number outside the field's allowed range.",
               "Check the value against the instrument's scale."),
        Reason("invalid_nhs_number", "row", "The NHS number is not 10 digits or fails the modulus-11 check digit.",
               "Correct the NHS number (spaces are allowed)."),
        Reason("unlinked", "row", "A valid NHS number that matches no participant in the site's register.",
               "Check the register's NHS number, or leave the rating or episode out of the extract."),
        Reason("duplicate_key", "row", "The row's key appears more than once in the file; every copy is quarantined.",
               "Keep one row per key."),
        Reason("date_order", "row", "Dates in the wrong order (withdrawal before consent; "
               "a meeting more than 90 days before consent; an acute-care episode ending before it starts).",
               "Correct the dates."),
        Reason("unknown_participant", "row", "The study_id / record_id is not in the site's register.",
               "Add the participant to the register, or correct the id."),
        Reason("arm_mismatch", "row", "The REDCap event's arm disagrees with the register's arm.",
               "Correct the event or the register."),
        Reason("invalid_event", "row", "redcap_event_name is not an event of the site's protocol "
               "(pod_evaluation: baseline, month 3, month 6; national_trial: also month 12, month 24).",
               "Use an event of the site's protocol (e.g. month_3_arm_N), or assign the site its protocol "
               "(seed site_protocols or POD_SITE_PROTOCOLS)."),
        Reason("invalid_repeat", "row", "Repeat instrument and instance do not fit together "
               "(a carer row needs an instance; other rows none).",
               "Export the carer questionnaire as a repeating instrument."),
        Reason("identifier_in_text", "row", "A free-text field (cluster_id, rater_role, carer_id) holds ten digits, "
               "perhaps an NHS number; the value is withheld.",
               "Remove the number from the field: identifiers belong only in nhs_number."),
        Reason("inconsistent_value", "row", "Fields that contradict each other "
               "(e.g. a HoNOS item 8 problem type with item 8 = 0, "
               "a withdrawal type without a date, a participant questionnaire value on a carer row).",
               "Correct the related fields together."),
    ]
}
