"""Direct identifiers in a mart: NHS numbers and dates of birth, counted per column, never shown.

An NHS number is what identifiers.find_nhs_numbers finds (ten digits, spaced 3-3-4 or not,
standing alone, passing the modulus-11 check). DuckDB groups each column by value and keeps the
few values with ten digits in a row; the Python reference judges those, so the scan agrees with
it exactly (RE2, DuckDB's regex engine, has no look-around to say "standing alone"). Whole-number
columns are judged in SQL with sql_nhs_number_is_valid. Dates of birth are the values of
restricted.register_history.date_of_birth, as dates, and as ISO or UK text inside text.

A mart found clean is not scanned whole again while nothing says its other rows could have
changed: after a build that rebuilt only some participants' rows of a partitioned mart
(transform/partitions.py, `last_build`), only those rows are scanned, when the mart was found
clean after the build before, with the same dates of birth and the same rules (this module's and
identifiers.py's code). Anything else (a full build, a mart rebuilt whole, a build that was not
scanned, a scan that found something, new dates of birth) scans every row. `scopes` decides,
`record_clean` keeps what was found clean (`audit.identifier_scans`).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pod_pipeline import identifiers as identifier_rules
from pod_pipeline.identifiers import TEN_DIGITS, find_nhs_numbers, sql_nhs_number_is_valid
from pod_pipeline.sql import table_exists
from pod_pipeline.transform.partitions import LAST_PARTICIPANTS_TABLE, last_build

SCANS_TABLE = "audit.identifier_scans"
# The code that decides what an identifier is: a change to it scans every row again.
RULES = hashlib.sha256(Path(str(identifier_rules.__file__)).read_bytes() + Path(__file__).read_bytes()).hexdigest()

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


@dataclass(frozen=True)
class Scope:
    """Which rows of a mart a scan reads: every row (`rebuilt_only` False), or only those of the
    participants the last build rebuilt; `why` says which, in words, for the check's metadata."""

    rebuilt_only: bool
    why: str


EVERY_ROW = Scope(False, "every row")


def _births_sql(con: duckdb.DuckDBPyConnection) -> str:
    return ("select distinct try_cast(date_of_birth as date) as day "
            "from restricted.register_history where try_cast(date_of_birth as date) is not null"
            if table_exists(con, "restricted", "register_history")
            else "select cast(null as date) as day where false")


def births_digest(con: duckdb.DuckDBPyConnection) -> str:
    """A digest of every date of birth the scan looks for (never the dates themselves)."""
    (digest,) = con.execute(f"select md5(coalesce(string_agg(cast(day as varchar), ',' order by day), '')) "
                            f"from ({_births_sql(con)})").fetchone()
    return digest


def _scans(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists {SCANS_TABLE} (mart varchar not null, build_id varchar not null, "
                "births varchar not null, rules varchar not null)")


def scopes(con: duckdb.DuckDBPyConnection, tables: list[str], births: str) -> dict[str, Scope]:
    """For each mart, which rows this scan must read (see the module's docstring)."""
    build = last_build(con)
    found = {} if not table_exists(con, "audit", SCANS_TABLE.split(".")[1]) else {
        mart: (build_id, digest, rules) for mart, build_id, digest, rules in con.execute(
            f"select mart, build_id, births, rules from {SCANS_TABLE}").fetchall()}
    chosen = {}
    for table in tables:
        clean = found.get(table)
        if build is None:
            why = "every row: no finished dbt build on record"
        elif build.rebuilt_every_row(table):
            why = "every row: the last build rebuilt the whole mart"
        elif clean is None:
            why = "every row: no clean scan on record"
        elif clean[1] != births:
            why = "every row: the register's dates of birth changed"
        elif clean[2] != RULES:
            why = "every row: the scan's rules changed"
        elif clean[0] not in (build.previous_build, build.build_id):
            # Found clean after the build before this one (or after this very build, for a scan
            # run again): only the rows this one rebuilt can be new.
            why = "every row: the build before the last was not found clean"
        else:
            chosen[table] = Scope(True, "the rows of the participants the last build rebuilt (the others "
                                        "were found clean after the build before)")
            continue
        chosen[table] = Scope(False, why)
    return chosen


def record_clean(con: duckdb.DuckDBPyConnection, profiles: dict[str, pd.DataFrame], births: str) -> None:
    """Keep, for the next scan, which marts this one found clean as of the last build; forget the others."""
    _scans(con)
    build = last_build(con)
    for table, profile in profiles.items():
        con.execute(f"delete from {SCANS_TABLE} where mart = $m", {"m": table})
        clean = not (profile["nhs_numbers"].any() or profile["dates_of_birth"].any())
        if build is not None and clean:
            con.execute(f"insert into {SCANS_TABLE} values ($m, $b, $d, $r)",
                        {"m": table, "b": build.build_id, "d": births, "r": RULES})


def identifiers(con: duckdb.DuckDBPyConnection, table: str, scope: Scope = EVERY_ROW) -> pd.DataFrame:
    """Column of marts.<table>: rows holding an NHS number, rows holding a date of birth, among
    the rows `scope` names (`rows_scanned` and `scope` in the frame's attrs)."""
    # Temporary tables: the dates never leave this connection.
    con.execute(f"create or replace temp table _pod_birth_days as {_births_sql(con)}")
    con.execute("create or replace temp table _pod_birth_texts as "
                "select strftime(day, '%Y-%m-%d') as text from _pod_birth_days union all "
                "select strftime(day, '%d/%m/%Y') from _pod_birth_days")
    source = f'marts."{table}"'
    if not table_exists(con, "marts", table):  # nothing to scan: no columns, no rows
        source = "(select 1 where false)"
    elif scope.rebuilt_only:
        con.execute(f"create or replace temp table _pod_scanned as select * from marts.\"{table}\" "
                    f"where participant_id in (select participant_id from {LAST_PARTICIPANTS_TABLE} "
                    "where model = $m)", {"m": table})
        source = "_pod_scanned"
    (scanned,) = con.execute(f"select count(*) from {source}").fetchone()
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
                select "{name}" as value, count(*) as n from {source}
                where "{name}" is not null group by 1
            )
            select coalesce(sum(n) filter (where {birth}), 0),
                coalesce(sum(n) filter (where {nhs}), 0),
                list({{'value': cast(value as varchar), 'n': n}}) filter (where {nhs})
            from counted""").fetchone()
        if data_type in _TEXT_TYPES:
            nhs_found = sum(c["n"] for c in candidates or [] if find_nhs_numbers(c["value"]))
        rows.append((name, int(nhs_found), int(births_found)))
    if source == "_pod_scanned":
        con.execute("drop table _pod_scanned")
    profile = pd.DataFrame(rows, columns=["column_name", "nhs_numbers", "dates_of_birth"])
    profile.attrs.update(rows_scanned=int(scanned), scope=scope.why)
    return profile
