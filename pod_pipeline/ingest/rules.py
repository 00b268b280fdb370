"""The landing-zone contract's row rules as data, compiled to DuckDB SQL over whole tables.

A `Rule` names the column it judges, the quarantine reason and a SQL condition that is true when
the row breaks it. Rules of one unit (a row, or a REDCap instrument within a row) are tested in
column order: the first broken rule is the unit's reason, all of them go into its detail.
Values of identifier columns never enter a detail.
"""

import dataclasses
import functools
from dataclasses import dataclass

from pod_pipeline import seeds
from pod_pipeline.identifiers import DIGITS_WITHHELD, TEN_DIGITS
from pod_pipeline.sql import lit, q

MISSING_CODES = ("UNK", "NASK", "ASKU", "NA")
STUDY_ID_PATTERN = "[A-Z][A-Z0-9]*-[0-9]{3,6}"
# Separates column, reason and detail inside one SQL string value.
SEP = "\x1f"


@dataclass(frozen=True)
class Rule:
    column: str
    verdict: str  # SQL: a reason code when the row breaks the rule, else NULL
    detail: str  # SQL text saying what is wrong (evaluated only when the verdict is not NULL)
    # The key whose count over the whole file the rule reads, from the column `counted(key)`: every
    # other rule judges a row by its own fields alone.
    key: tuple[str, ...] = ()


def counted(key: tuple[str, ...]) -> str:
    """The column giving each row the number of rows of its file that share its `key` (load.py)."""
    return q("_count:" + ",".join(key))


def when(column: str, reason: str, broken: str, detail: str) -> Rule:
    """A rule tested on non-empty values only: `broken` true means `reason`."""
    return Rule(column, f"case when {q(column)} is not null and ({broken}) then {lit(reason)} end", detail)


def shown(column: str, identifier: bool = False) -> str:
    """The value as a site may be shown it: never an identifier, at most 40 printable characters."""
    if identifier:
        return "'(value withheld: identifier)'"
    printable = f"regexp_replace({q(column)}, '[\\x00-\\x1f\\x7f]', '?', 'g')"
    return f"'''' || left({printable}, 40) || ''''"


def without_ten_digits(expression: str) -> str:
    """SQL: the text with every run of ten digits (spaced 3-3-4 or not) withheld.

    Quarantine details leave the restricted schema; an NHS number typed into the wrong field, or
    quoted whole by a rule's detail, must not go with them.
    """
    return f"regexp_replace({expression}, {lit(TEN_DIGITS)}, {lit(DIGITS_WITHHELD)}, 'g')"


def free_text(column: str) -> Rule:
    """A free-text field must not hold ten digits: an NHS number typed in the wrong place would
    leave the restricted schema with the row (and block every publication at the mart check)."""
    return when(column, "identifier_in_text", f"regexp_matches({q(column)}, {lit(TEN_DIGITS)})",
                f"'{column} holds ten digits, perhaps an NHS number (value withheld)'")


def iso_date_ok(column: str) -> str:
    value = q(column)
    return (f"(regexp_full_match({value}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') "
            f"and try_strptime({value}, '%Y-%m-%d') is not null "
            f"and {value} between '1900-01-01' and '2100-12-31')")


def iso_date(column: str) -> str:
    """The column parsed as an ISO date (NULL when it is not one)."""
    return f"cast(try_strptime({q(column)}, '%Y-%m-%d') as date)"


def any_date(column: str) -> str:
    """The column parsed as an ISO or UK (DD/MM/YYYY) date (NULL when it is neither)."""
    return (f"cast(coalesce(try_strptime({q(column)}, '%Y-%m-%d'), try_strptime({q(column)}, '%d/%m/%Y')) "
            "as date)")


def any_date_ok(column: str) -> str:
    value = q(column)
    uk = (f"(regexp_full_match({value}, '[0-9]{{2}}/[0-9]{{2}}/[0-9]{{4}}') "
          f"and try_strptime({value}, '%d/%m/%Y') is not null "
          f"and right({value}, 4) between '1900' and '2100')")
    return f"({iso_date_ok(column)} or {uk})"


def required(column: str) -> Rule:
    return Rule(column, f"case when {q(column)} is null then 'missing_value' end", f"'{column} is empty'")


def pattern(column: str, regex: str, form: str) -> Rule:
    return when(column, "invalid_format", f"not regexp_full_match({q(column)}, {lit(regex)})",
                f"'{column} = ' || {shown(column)} || ' is not of the form {form}'")


def date(column: str, uk_allowed: bool = False, identifier: bool = False,
         codes_allowed: bool = False) -> Rule:
    ok = any_date_ok(column) if uk_allowed else iso_date_ok(column)
    if codes_allowed:
        ok = f"({ok} or {q(column)} in ({', '.join(lit(c) for c in MISSING_CODES)}))"
    form = "YYYY-MM-DD or DD/MM/YYYY" if uk_allowed else "YYYY-MM-DD"
    return when(column, "invalid_date", f"not {ok}",
                f"'{column} = ' || {shown(column, identifier)} || ' is not a real date ({form})'")


def code(column: str, codes: tuple[str, ...]) -> Rule:
    allowed = ", ".join(lit(c) for c in codes)
    return when(column, "invalid_code", f"{q(column)} not in ({allowed})",
                f"'{column} = ' || {shown(column)} || ' is not one of {' '.join(codes)}'")


def whole_number(column: str, low: int | None, high: int | None, missing_codes: bool = False) -> Rule:
    """Text that is no number is `not_a_number`; a number outside [low, high] is `out_of_range`."""
    value = q(column)
    codes = f" or {value} in ({', '.join(lit(c) for c in MISSING_CODES)})" if missing_codes else ""
    limits = [f"cast({value} as bigint) >= {low}" if low is not None else "",
              f"cast({value} as bigint) <= {high}" if high is not None else ""]
    bounds = " and ".join(b for b in limits if b) or "true"
    # Nine digits at most, so an enormous number is out of range rather than an overflow.
    verdict = (f"case when {value} is null{codes} then null "
               f"when regexp_full_match({value}, '[0-9]{{1,9}}') "
               f"then case when {bounds} then null else 'out_of_range' end "
               f"when try_cast({value} as double) is not null then 'out_of_range' "
               f"else 'not_a_number' end")
    if low is not None and high is not None:
        allowed = f"a whole number from {low} to {high}"
    elif low is not None:
        allowed = f"a whole number of at least {low}"
    else:
        allowed = "a whole number"
    codes_note = " (or UNK, NASK, ASKU, NA)" if missing_codes else ""
    return Rule(column, verdict, f"'{column} = ' || {shown(column)} || ' is not {allowed}{codes_note}'")


def nhs_number(column: str, valid_sql: str) -> Rule:
    return when(column, "invalid_nhs_number", f"not {valid_sql}",
                f"'{column} is not 10 digits passing the modulus-11 check'")


def duplicate(column: str, key: list[str]) -> Rule:
    count = counted(tuple(key))
    rule = when(column, "duplicate_key", f"{count} > 1",
                f"'the key ({', '.join(key)}) appears ' || {count} || ' times in the file'")
    return dataclasses.replace(rule, key=tuple(key))


def checked(rules: list[Rule]) -> tuple[str, str]:
    """SQL for the first broken rule ('column<SEP>reason') and the detail of all broken rules."""
    if not rules:
        return "cast(null as varchar)", "cast(null as varchar)"
    firsts = ", ".join(f"{lit(r.column + SEP)} || ({r.verdict})" for r in rules)
    details = ", ".join(f"case when ({r.verdict}) is not null then {r.detail} end" for r in rules)
    return f"coalesce({firsts})", f"nullif(concat_ws('; ', {details}), '')"


@dataclass(frozen=True)
class Item:
    instrument: str
    field_name: str
    value_type: str
    min_value: int | None
    max_value: int | None
    role: str


@functools.cache
def instrument_items() -> tuple[Item, ...]:
    """The REDCap fields the pipeline knows, from the seed that scoring also reads."""
    return tuple(
        Item(row["instrument"], row["field_name"], row["value_type"],
             int(row["min_value"]) if row["min_value"] else None,
             int(row["max_value"]) if row["max_value"] else None, row["role"])
        for row in seeds.rows("instrument_items")
    )


def redcap_events() -> dict[str, str]:
    """REDCap event name -> arm."""
    return {row["redcap_event_name"]: row["arm"] for row in seeds.rows("redcap_events")}


def carer_instruments() -> frozenset[str]:
    """The instruments a carer answers: collected in the repeating carer questionnaire's rows."""
    return frozenset(row["instrument"] for row in seeds.rows("instruments") if row["respondent"] == "carer")


def protocol_events(protocol: str) -> tuple[str, ...]:
    """The REDCap events of the timepoints a protocol schedules."""
    timepoints = {row["timepoint"] for row in seeds.rows("protocol_timepoints") if row["protocol"] == protocol}
    return tuple(row["redcap_event_name"] for row in seeds.rows("redcap_events") if row["timepoint"] in timepoints)


def item_rules(item: Item) -> list[Rule]:
    """The rules of one REDCap field; missing-data codes are allowed in every data field."""
    if item.value_type == "integer":
        return [whole_number(item.field_name, item.min_value, item.max_value, missing_codes=True)]
    if item.value_type == "date":
        return [date(item.field_name, codes_allowed=True)]
    return []
