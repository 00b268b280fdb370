"""Export drift: each site's newest export of a file against the one before it, counts only.

Read from restricted.<table>_history (every row of every batch, with its key columns and a hash of
its non-identifying values) and audit.load_ledger (which batches of which file were loaded). The
profile never carries a key's value, only how many records and participants were dropped or
changed.

A pair of loaded exports never changes (history and the ledger are append-only), so ingestion
profiles each site's pair once, when its newest export arrives (`record`), and keeps the profile in
audit.export_drift; the check reads the current pairs' profiles from there (`current`). A new batch
at one site is profiled alone instead of every site's history being read again on every run, and a
file it repeats byte for byte is profiled from what is on record (`_record_repeated`).
"""

import duckdb
import pandas as pd

from pod_pipeline.ingest.specs import SPECS
from pod_pipeline.sql import table_exists

FILES = ("register.csv", "redcap_records.csv", "honos.csv", "network_meetings.csv", "acute_care.csv")
COLUMNS = ("site", "previous_export", "current_export", "records_previous", "records_current",
           "records_dropped", "records_changed", "participants_previous",
           "participants_current", "participants_dropped", "share_records_dropped",
           "share_records_changed", "share_participants_dropped")


STORE = "audit.export_drift"
_TYPES = {"site": "varchar", "previous_export": "varchar", "current_export": "varchar",
          "share_records_dropped": "double", "share_records_changed": "double",
          "share_participants_dropped": "double"}


def _pairs(sites: list[str] | None = None) -> str:
    """SQL: `exports` (each site's loaded exports of $file, newest first) and `pairs` (its two
    newest), of the sites in $sites when `sites` is given."""
    only = "" if sites is None else "and list_contains($sites, site)"
    return f"""
        exports as (
            select site, export_id,
                row_number() over (partition by site order by export_id desc) as recency
            from audit.load_ledger where file = $file and status = 'loaded' {only}
        ),
        pairs as (
            select site, max(export_id) filter (where recency = 2) as previous_export,
                max(export_id) filter (where recency = 1) as current_export
            from exports where recency <= 2 group by site having count(*) = 2
        )"""


def current(con: duckdb.DuckDBPyConnection, file: str) -> pd.DataFrame:
    """The profile of each site's current pair of exports: recorded by ingestion, or, when a pair
    is not recorded (a warehouse from before the store), computed now."""
    if not table_exists(con, "audit", "export_drift") or _unrecorded(con, file):
        return drift(con, file)
    return con.execute(f"""
        with {_pairs()}
        select d.* exclude (file) from {STORE} as d
        inner join pairs on d.site = pairs.site and d.previous_export = pairs.previous_export
            and d.current_export = pairs.current_export
        where d.file = $file order by d.site
    """, {"file": file}).df()[list(COLUMNS)]


def record(con: duckdb.DuckDBPyConnection, file: str) -> list[str]:
    """Profile and keep each site's current pair of exports not profiled before; the sites profiled."""
    columns = ", ".join(f"{c} {_TYPES.get(c, 'bigint')}" for c in COLUMNS)
    con.execute(f"create table if not exists {STORE} (file varchar, {columns})")
    sites = _unrecorded(con, file)
    if sites and table_exists(con, "restricted", f"{SPECS[file].table}_history"):
        repeated = _record_repeated(con, file, sites)
        if others := [site for site in sites if site not in repeated]:
            con.execute(f"insert into {STORE} select $file as file, * from ({_profile_sql(file, others)})",
                        {"file": file, "sites": others})
    return sites


def _record_repeated(con: duckdb.DuckDBPyConnection, file: str, sites: list[str]) -> list[str]:
    """Profile the pairs whose newer export repeats the older one byte for byte: nothing dropped or
    changed, and as many records and participants as the older export has, which the profile of
    the pair it ended is on record with. The sites so profiled."""
    return [site for (site,) in con.execute(f"""
        insert into {STORE}
        with {_pairs(sites)},
        counted as (
            select site, current_export as export_id, any_value(records_current) as records,
                any_value(participants_current) as participants
            from {STORE} where file = $file group by all
        )
        select $file, pairs.site, pairs.previous_export, pairs.current_export, records, records, 0, 0,
            participants, participants, 0, 0 / nullif(records, 0), 0 / nullif(records, 0),
            0 / nullif(participants, 0)
        from pairs
        inner join audit.load_ledger as p on p.site = pairs.site and p.export_id = pairs.previous_export
            and p.file = $file and p.status = 'loaded'
        inner join audit.load_ledger as c on c.site = pairs.site and c.export_id = pairs.current_export
            and c.file = $file and c.status = 'loaded' and c.sha256 = p.sha256
        inner join counted on counted.site = pairs.site and counted.export_id = pairs.previous_export
        returning site
    """, {"file": file, "sites": sites}).fetchall()]


def _unrecorded(con: duckdb.DuckDBPyConnection, file: str) -> list[str]:
    """The sites whose current pair of exports of the file has no recorded profile."""
    return [site for (site,) in con.execute(f"""
        with {_pairs()}
        select pairs.site from pairs where not exists (
            select 1 from {STORE} as d where d.file = $file and d.site = pairs.site
                and d.previous_export = pairs.previous_export and d.current_export = pairs.current_export)
        order by pairs.site
    """, {"file": file}).fetchall()]


def drift(con: duckdb.DuckDBPyConnection, file: str) -> pd.DataFrame:
    """Site (with two loaded exports of the file): records and participants dropped, changed."""
    if not table_exists(con, "restricted", f"{SPECS[file].table}_history"):
        return pd.DataFrame(columns=list(COLUMNS))
    return con.execute(_profile_sql(file), {"file": file}).df()[list(COLUMNS)]


def _profile_sql(file: str, sites: list[str] | None = None) -> str:
    """SQL: the profile of each site's pair of exports of $file (of $sites, when `sites` is given)."""
    spec = SPECS[file]
    key = "concat_ws(chr(31), " + ", ".join(f"coalesce(h.\"{c}\", '')" for c in spec.key) + ")"
    participant = f'h."{spec.participant}"'
    return f"""
        with {_pairs(sites)},
        records as materialized (
            -- One row per site and key across both exports, in one pass over the history. A key
            -- loaded twice in one export compares its hashes as a range.
            select h._site as site, {key} as record_key,
                count(*) filter (where e.recency = 2) > 0 as in_previous,
                count(*) filter (where e.recency = 1) > 0 as in_current,
                min(h._row_hash) filter (where e.recency = 2) as previous_low,
                max(h._row_hash) filter (where e.recency = 2) as previous_high,
                min(h._row_hash) filter (where e.recency = 1) as current_low,
                max(h._row_hash) filter (where e.recency = 1) as current_high,
                any_value({participant}) filter (where e.recency = 2) as previous_participant,
                any_value({participant}) filter (where e.recency = 1) as current_participant
            from restricted.{spec.table}_history as h
            inner join exports as e on h._site = e.site and h._export_id = e.export_id
            -- Every row the site delivered, loaded or quarantined: a row held back for a bad value
            -- was still exported, so it is neither dropped nor a sign of a shrinking export.
            where e.recency <= 2
            group by all
        ),
        compared as (
            select site, count(*) filter (where in_previous) as records_previous,
                count(*) filter (where in_current) as records_current,
                count(*) filter (where in_previous and not in_current) as records_dropped,
                count(*) filter (
                    where in_previous and in_current
                        and (previous_low <> current_low or previous_high <> current_high)
                ) as records_changed
            from records group by site
        ),
        people as (
            select site, count(*) filter (where in_previous) as participants_previous,
                count(*) filter (where in_current) as participants_current,
                count(*) filter (where in_previous and not in_current) as participants_dropped
            from (
                select site, participant, bool_or(side = 2) as in_previous,
                    bool_or(side = 1) as in_current
                from (select site, previous_participant as participant, 2 as side from records
                      union all
                      select site, current_participant, 1 from records)
                where participant is not null
                group by all
            )
            group by site
        )
        select pairs.site, previous_export, current_export,
            coalesce(records_previous, 0) as records_previous,
            coalesce(records_current, 0) as records_current,
            coalesce(records_dropped, 0) as records_dropped,
            coalesce(records_changed, 0) as records_changed,
            coalesce(participants_previous, 0) as participants_previous,
            coalesce(participants_current, 0) as participants_current,
            coalesce(participants_dropped, 0) as participants_dropped,
            cast(records_dropped as double) / nullif(records_previous, 0) as share_records_dropped,
            -- Changed among the records carried over, so a drop is not counted twice.
            cast(records_changed as double) / nullif(records_previous - records_dropped, 0)
                as share_records_changed,
            cast(participants_dropped as double) / nullif(participants_previous, 0)
                as share_participants_dropped
        from pairs
        left join compared on pairs.site = compared.site
        left join people on pairs.site = people.site
        order by pairs.site
    """


def single_export_sites(con: duckdb.DuckDBPyConnection, file: str) -> int:
    """Sites with one loaded export of the file: nothing to compare yet."""
    return con.execute("select count(*) from (select site from audit.load_ledger where file = $f "
                       "and status = 'loaded' group by site having count(*) = 1)",
                       {"f": file}).fetchall()[0][0]
