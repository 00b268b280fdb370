"""Writing CSV files fast, and knowing the physical line every record starts on."""

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

BOM = b"\xef\xbb\xbf"
Anchor = tuple[str, int]  # ("row", table row) or ("extra", extra row)


@dataclass
class CsvFile:
    """A file to write: the table's rows, then hand-made rows (which may be malformed)."""

    table: pa.Table | None  # None: an empty file, not even a header
    extra_rows: list[list[str]] = field(default_factory=list)
    quote_all: bool = False  # quote every non-empty value (an EPR extract does)
    bom: bool = False
    extra_encoding: str = "utf-8"


@dataclass(frozen=True)
class Written:
    """Where each record of a written file starts (header = line 1)."""

    rows: int
    row_lines: np.ndarray
    extra_lines: tuple[int, ...]

    def line(self, anchor: Anchor) -> int:
        """The line a table row or hand-made row starts on."""
        kind, index = anchor
        return int(self.row_lines[index]) if kind == "row" else self.extra_lines[index]


def write_csv(path: Path, csv_file: CsvFile, eol: str) -> Written:
    """Write the file; unless quote_all, pyarrow checks (quoting 'none') no value needs quotes."""
    table = csv_file.table
    with path.open("wb") as handle:
        if table is None:
            return Written(0, np.zeros(0, np.int64), ())
        if csv_file.bom:
            handle.write(BOM)
        handle.write(csv_line(table.column_names, csv_file.quote_all, eol).encode("utf-8"))
        options = pacsv.WriteOptions(
            include_header=False,
            eol=eol,
            batch_size=65536,
            quoting_style="all_valid" if csv_file.quote_all else "none",
        )
        if table.num_rows:
            with pacsv.CSVWriter(handle, table.schema, write_options=options) as writer:
                writer.write_table(table)
        for row in csv_file.extra_rows:
            handle.write(csv_line(row, csv_file.quote_all, eol).encode(csv_file.extra_encoding))
    breaks = _embedded_breaks(table) if csv_file.quote_all else np.zeros(table.num_rows, np.int64)
    starts = (
        2
        + np.arange(table.num_rows)
        + np.concatenate([[0], np.cumsum(breaks)[:-1]]).astype(np.int64)
    )
    line = 2 + table.num_rows + int(breaks.sum())
    extra_lines = []
    for row in csv_file.extra_rows:
        extra_lines.append(line)
        line += 1 + sum(value.count("\n") for value in row)
    return Written(table.num_rows + len(extra_lines), starts[: table.num_rows], tuple(extra_lines))


def csv_line(values: list[str], quote_all: bool, eol: str) -> str:
    """One record, quoted as RFC 4180 needs (or every non-empty value, with quote_all)."""
    return ",".join(_field(v, quote_all) for v in values) + eol


def _field(value: str, quote_all: bool) -> str:
    """One field, quoted when it must be (or when every value is)."""
    if value and (quote_all or any(c in value for c in ',"\r\n')):
        return '"' + value.replace('"', '""') + '"'
    return value


def _embedded_breaks(table: pa.Table) -> np.ndarray:
    """Line breaks inside each row's quoted values: they push later records down the file."""
    total = np.zeros(table.num_rows, np.int64)
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_string(column.type):
            total += pc.count_substring(column, "\n").fill_null(0).to_numpy()
    return total


def row_values(table: pa.Table, row: int) -> list[str]:
    """One table row as the text the CSV holds."""
    return [_text(table.column(j)[row].as_py()) for j in range(table.num_columns)]


def _text(value: object) -> str:
    """A cell as CSV text: dates in ISO form, empty for null."""
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def with_value(table: pa.Table, column: str, row: int, value: str) -> pa.Table:
    """The table with one cell replaced by arbitrary text (the column becomes plain text)."""
    index = table.schema.get_field_index(column)
    values = table.column(index).combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    values = values.cast(pa.string())
    mask = np.zeros(len(values), bool)
    mask[row] = True
    replaced = pc.replace_with_mask(values, pa.array(mask), pa.array([value], pa.string()))
    return table.set_column(index, column, replaced)
