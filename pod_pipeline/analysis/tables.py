"""Small helpers the analysis modules share: timepoint order, table I/O and markdown previews."""

import csv

import duckdb
import pandas as pd

from pod_pipeline.settings import SEEDS_DIR

BASELINE = "baseline"


def timepoint_order() -> dict[str, int]:
    """Order of the scheduled timepoints, from the visit-window seed ingestion also reads."""
    with open(SEEDS_DIR / "visit_windows.csv", newline="") as handle:
        return {row["timepoint"]: int(row["timepoint_order"]) for row in csv.DictReader(handle)}


def sort_timepoints(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort rows by `by` columns with `timepoint` in schedule order (unknown timepoints last)."""
    order = timepoint_order()
    rank = frame["timepoint"].map(lambda tp: order.get(tp, len(order)))
    keys = [*by, "_timepoint_rank", "timepoint"]
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


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether `schema.table` exists in the connected database."""
    schema, table = name.split(".")
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def markdown_preview(frame: pd.DataFrame, rows: int = 20, digits: int = 3) -> str:
    """The first rows of a frame as a markdown table, numbers rounded for reading."""
    shown = frame.head(rows).round(digits)
    suffix = f"\n\n… {len(frame) - rows} more rows" if len(frame) > rows else ""
    return shown.to_markdown(index=False) + suffix
