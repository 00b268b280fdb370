"""Direct identifiers in a mart: NHS numbers and dates of birth, counted per column, never shown.

An NHS number is what identifiers.find_nhs_numbers finds (ten digits, spaced 3-3-4 or not,
standing alone, passing the modulus-11 check). DuckDB groups each column by value and keeps the
few values with ten digits in a row; the Python reference judges those, so the scan agrees with
it exactly (RE2, DuckDB's regex engine, has no look-around to say "standing alone"). Whole-number
columns are judged in SQL with sql_nhs_number_is_valid. Dates of birth are the values of
restricted.register_history.date_of_birth, as dates, and as ISO or UK text inside text.
"""

import duckdb
import pandas as pd

from pod_pipeline.identifiers import TEN_DIGITS, find_nhs_numbers, sql_nhs_number_is_valid
from pod_pipeline.sql import table_exists

# Every text find_nhs_numbers flags matches this, so a value that does not cannot hold one.
_DATE_IN_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{2}/[0-9]{2}/[0-9]{4}"
_TEXT_TYPES = ("VARCHAR",)
_WHOLE_NUMBER_TYPES = ("INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER")
_DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")


def _value_tests(data_type: str) -> tuple[str, str] | None:
    """SQL on `value`: (NHS number test or candidate filter, date-of-birth test), by type."""
    if data_type in _TEXT_TYPES:
        dates = f"regexp_extract_all(value, '{_DATE_IN_TEXT}')"
        return (f"regexp_matches(value, '{TEN_DIGITS}')",
                f"(case when regexp_matches(value, '{_DATE_IN_TEXT}') then list_has_any("
                f"{dates}, (select list(text) from _pod_birth_texts)) else false end)")
    if data_type in _WHOLE_NUMBER_TYPES:
        return (f"(value between 1000000000 and 9999999999 and "
                f"{sql_nhs_number_is_valid('cast(value as varchar)')})", "false")
    if data_type in _DATE_TYPES:
        return "false", "cast(value as date) in (select day from _pod_birth_days)"
    return None


def identifiers(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """Column of marts.<table>: rows holding an NHS number, rows holding a date of birth."""
    births = ("select distinct try_cast(date_of_birth as date) as day "
              "from restricted.register_history where try_cast(date_of_birth as date) is not null"
              if table_exists(con, "restricted", "register_history")
              else "select cast(null as date) as day where false")
    # Temporary tables: the dates never leave this connection.
    con.execute(f"create or replace temp table _pod_birth_days as {births}")
    con.execute("create or replace temp table _pod_birth_texts as "
                "select strftime(day, '%Y-%m-%d') as text from _pod_birth_days union all "
                "select strftime(day, '%d/%m/%Y') from _pod_birth_days")
    rows = []
    for name, data_type in con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = $t order by ordinal_position",
            {"t": table}).fetchall():
        if (tests := _value_tests(data_type)) is None:
            continue
        # Each distinct value is tested once and weighted by its rows: a million participants
        # repeat a site or a parameter name millions of times, and the regular expressions are
        # the cost (a 1M-participant scan fell from about a minute to a few seconds).
        nhs, birth = tests
        births_found, nhs_found, candidates = con.execute(f"""
            with counted as materialized (
                select "{name}" as value, count(*) as n from marts."{table}"
                where "{name}" is not null group by 1
            )
            select coalesce(sum(n) filter (where {birth}), 0),
                coalesce(sum(n) filter (where {nhs}), 0),
                list({{'value': cast(value as varchar), 'n': n}}) filter (where {nhs})
            from counted""").fetchone()
        if data_type in _TEXT_TYPES:
            nhs_found = sum(c["n"] for c in candidates or [] if find_nhs_numbers(c["value"]))
        rows.append((name, int(nhs_found), int(births_found)))
    return pd.DataFrame(rows, columns=["column_name", "nhs_numbers", "dates_of_birth"])
