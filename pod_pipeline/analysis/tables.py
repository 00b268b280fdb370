"""The study's small tables as the report and figures show them, and the helpers they share."""

from dataclasses import dataclass, field

import duckdb
import pandas as pd

from pod_pipeline import seeds
from pod_pipeline.sql import table_exists

BASELINE = "baseline"
ALL_SITES = "All sites"
# Stages of marts.participant_flow that leave the main CONSORT-style sequence.
FLOW_EXITS = ("withdrawn", "died")


def timepoint_order() -> dict[str, int]:
    """Order of the scheduled timepoints, from the visit-window seed ingestion also reads."""
    return {row["timepoint"]: int(row["timepoint_order"]) for row in seeds.rows("visit_windows")}


def flow_stages() -> list[str]:
    """Stages of marts.participant_flow in reading order: consented, one per timepoint, exits."""
    order = timepoint_order()
    assessed = [f"{timepoint}_assessed" for timepoint in sorted(order, key=order.__getitem__)]
    return ["consented", *assessed, *FLOW_EXITS]


def sort_timepoints(
    frame: pd.DataFrame, before: list[str], after: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Sort rows by `before`, `timepoint` in schedule order (unknown ones last), then `after`."""
    order = timepoint_order()
    rank = frame["timepoint"].map(lambda tp: order.get(tp, len(order)))
    keys = [*before, "_timepoint_rank", "timepoint", *after]
    return frame.assign(_timepoint_rank=rank).sort_values(keys).drop(columns="_timepoint_rank")


def replace_table(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Create or replace `schema.table` with the frame's rows (NaN becomes NULL)."""
    schema = name.split(".")[0]
    con.execute(f"create schema if not exists {schema}")
    con.register("_frame", frame)
    try:
        con.execute(f"create or replace table {name} as select * from _frame")
    finally:
        con.unregister("_frame")


def read_table(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """Read a small table (a summary or a mart of a few hundred rows) into pandas."""
    return con.execute(f"select * from {name}").df()


# One row per landing batch. A batch is in the current snapshot (what the marts were built from)
# when it is the newest loaded version of at least one of its site's files; batch-level ledger
# entries are those of the batch's manifest.
BATCHES_SQL = """
with current_files as (
    select site, file, max(export_id) as export_id
    from raw.load_ledger
    where status = 'loaded'
    group by site, file
)
select
    ledger.site,
    ledger.export_id,
    max(case when ledger.file = 'manifest.json' then ledger.status end) as batch_status,
    count(*) filter (where ledger.status = 'loaded') as files_loaded,
    count(*) filter (where ledger.status = 'rejected' and ledger.file <> 'manifest.json')
        as files_rejected,
    count(current_files.file) > 0 as in_current_snapshot,
    cast(sum(ledger.rows_loaded) as bigint) as rows_loaded,
    cast(sum(ledger.rows_quarantined) as bigint) as rows_quarantined,
    max(ledger.loaded_at) as loaded_at
from raw.load_ledger as ledger
left join current_files
    on ledger.site = current_files.site
    and ledger.file = current_files.file
    and ledger.export_id = current_files.export_id
group by ledger.site, ledger.export_id
order by ledger.site, ledger.export_id
"""


@dataclass(frozen=True)
class StudyTables:
    """The report's tables in the shape it shows them (counts may hold the `*` marker)."""

    flow: pd.DataFrame
    outcomes: pd.DataFrame
    completeness: pd.DataFrame
    cost_effectiveness: pd.DataFrame
    acceptability: pd.DataFrame
    replicates: pd.DataFrame
    # Empty until marts.time_to_relapse is built (the relapse analysis needs it).
    relapse: pd.DataFrame = field(default_factory=pd.DataFrame)
    relapse_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    relapse_at_risk: pd.DataFrame = field(default_factory=pd.DataFrame)


def flow_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Stage × arm counts in CONSORT order, with a total column when there are two arms."""
    table = flow.pivot_table(index="stage", columns="arm", values="n", aggfunc="sum")
    stages = [stage for stage in flow_stages() if stage in table.index]
    table = table.reindex([*stages, *sorted(set(table.index) - set(stages))]).fillna(0)
    table.columns.name = None
    if len(table.columns) > 1:
        table["total"] = table.sum(axis=1)
    return table.astype("int64")


def completeness_table(completeness: pd.DataFrame) -> pd.DataFrame:
    """Site × timepoint × instrument (arms together) with an all-sites row for each."""
    keys = ["timepoint", "instrument"]
    by_site = completeness.groupby(["site", *keys], as_index=False)[["expected", "scored"]].sum()
    all_sites = by_site.groupby(keys, as_index=False)[["expected", "scored"]].sum()
    table = pd.concat([by_site, all_sites.assign(site=ALL_SITES)], ignore_index=True)
    table["pct_scored"] = table["scored"] / table["expected"].where(table["expected"] > 0)
    table["_all_sites"] = table["site"] == ALL_SITES
    table = sort_timepoints(table, [], ("instrument", "_all_sites", "site"))
    columns = ["timepoint", "instrument", "site", "expected", "scored", "pct_scored"]
    return table[columns].reset_index(drop=True)


def load_tables(con: duckdb.DuckDBPyConnection) -> StudyTables:
    """Read every table the report shows from the working database."""
    return StudyTables(
        flow=flow_table(read_table(con, "marts.participant_flow")),
        outcomes=read_table(con, "marts.outcome_summary"),
        completeness=completeness_table(read_table(con, "marts.completeness")),
        cost_effectiveness=read_table(con, "marts.cost_effectiveness_summary"),
        acceptability=read_table(con, "marts.cost_effectiveness_acceptability"),
        replicates=read_table(con, "analysis.cost_effectiveness_replicates"),
        **({
            "relapse": read_table(con, "marts.relapse_summary"),
            "relapse_curve": read_table(con, "analysis.relapse_curve"),
            "relapse_at_risk": read_table(con, "analysis.relapse_at_risk"),
        } if table_exists(con, "marts", "relapse_summary") else {}),
    )


def landing_batches(con: duckdb.DuckDBPyConnection, with_row_counts: bool) -> pd.DataFrame:
    """Landing batches in raw.load_ledger; row counts (people, per site) only inside the team."""
    batches = con.execute(BATCHES_SQL).df()
    return batches if with_row_counts else batches.drop(columns=["rows_loaded", "rows_quarantined"])
