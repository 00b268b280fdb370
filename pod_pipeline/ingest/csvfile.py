"""Reading one delivered CSV file into a DuckDB staging table, losing nothing.

Python's csv module is the reference reading of RFC 4180 here: every record it sees is either
staged (with the physical line it starts on) or reported as malformed. DuckDB's parallel reader
does the heavy lifting only when it provably reads the same records:

- "plain" files (no quote character, one line-end style, no blank lines) go straight to DuckDB,
  which must return one row per line;
- files with quotes are scanned by Python first (record start lines, field counts, total length);
  when every record is well formed DuckDB reads them and must agree on count and total length;
- anything else (malformed records, disagreement) is loaded through Python, record by record.

A plain file may be read against rows already judged (`EarlierRows`: the same header's rows of an
earlier export of the site's): DuckDB reads it as lines, and only the lines that repeat no earlier
row field for field are staged; the others are mapped to the row they repeat (`repeats_of`).
Each line read so carries its digest (`line_digest`), which the caller may keep with the row it
becomes, so that a later export is compared with the row without digesting its fields again.
"""

import array
import codecs
import csv
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pod_pipeline.sql import lit, q

CHUNK = 1 << 23
BOM = codecs.BOM_UTF8
# A field larger than this is almost certainly a runaway quote; it is reported, not loaded.
MAX_FIELD_BYTES = 1 << 24
BATCH_ROWS = 50_000
# The method of a file staged against earlier rows (stage_file's `earlier`): its changed lines only.
CHANGED_LINES = "plain, changed lines"

csv.field_size_limit(MAX_FIELD_BYTES)


class FileRejected(Exception):
    """The whole file is refused; reason is a quarantine code, line/column say where."""

    def __init__(self, reason: str, message: str, line: int | None = None, column: str | None = None):
        super().__init__(message)
        self.reason, self.line, self.column = reason, line, column


@dataclass(frozen=True)
class Probe:
    """What one pass over the bytes tells about a file's shape."""

    newlines: int
    carriage_returns: int
    crlf: int
    has_quote: bool
    has_nul: bool
    has_blank_line: bool
    ends_with_newline: bool
    # Every comma of the file: in a plain file each separates two fields.
    commas: int = 0

    @property
    def is_plain(self) -> bool:
        """One record per line, split on commas: DuckDB and Python's csv must read it alike."""
        consistent_ends = self.carriage_returns == 0 or (
            self.carriage_returns == self.crlf == self.newlines
        )
        return consistent_ends and not (self.has_quote or self.has_nul or self.has_blank_line)


@dataclass
class StagedFile:
    """A file read into `table`: `_line` plus one VARCHAR column per header name (empty = NULL).

    `table` is a temporary table, or for a plain file a view numbering the rows of one (drop it
    with `drop_staged`).
    """

    table: str
    header: list[str]
    rows_read: int
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line, detail)
    method: str = "plain"
    # Lines not staged because they repeat a row of `EarlierRows` (mapped in `repeats_of(table)`).
    repeated: int = 0


def line_digest(line: str) -> str:
    """SQL: the digest of a plain line's fields (`line`: an expression of the line; its commas are
    its field separators)."""
    return f"md5_number(replace({line}, ',', chr(31)))"


def row_digest(header: list[str]) -> str:
    """SQL: the digest of a row's fields, one column per header name (NULL for an empty field): what
    `line_digest` gives for the line the row was read from."""
    return "md5_number(concat_ws(chr(31), " + ", ".join(f"coalesce({q(name)}, '')" for name in header) + "))"


@dataclass(frozen=True)
class EarlierRows:
    """Rows already judged that a file's lines may repeat: SQL selecting `_line`, `_digest` (the
    `line_digest` of the line the row was read from, where it was kept, else NULL) and one column
    per header name (in the header's order, NULL for an empty field), with its parameters."""

    sql: str
    params: Mapping[str, object]
    # Columns to give each line staged, by name: the count of the file's lines sharing a key.
    counts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Every row's `_digest` is kept: only it and the keys' fields are read, not every field.
    digested: bool = False


def probe(path: Path) -> Probe:
    """Check the file is UTF-8 and measure its line ends, quotes and blank lines in one pass."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = carriage_returns = crlf = commas = 0
    has_quote = has_nul = has_blank = False
    tail = b""
    with path.open("rb") as handle:
        first = True
        while chunk := handle.read(CHUNK):
            if first:
                chunk = chunk.removeprefix(BOM)
                has_blank = chunk.startswith((b"\n", b"\r\n"))
                first = False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pending = len(decoder.getstate()[0])
                offset = max(exc.start - pending, 0)
                line = newlines + chunk[:offset].count(b"\n") + 1
                raise FileRejected("not_utf8", f"{path}: invalid UTF-8 byte on line {line}", line=line) from exc
            joined = tail + chunk
            newlines += chunk.count(b"\n")
            commas += chunk.count(b",")
            has_quote = has_quote or b'"' in chunk
            has_nul = has_nul or b"\0" in chunk
            has_blank = has_blank or b"\n\n" in joined
            # Two-byte searches are slow (a third of the pass): only where a carriage return is.
            if b"\r" in joined:
                carriage_returns += chunk.count(b"\r")
                crlf += joined.count(b"\r\n") - tail.count(b"\r\n")
                has_blank = has_blank or b"\n\r\n" in joined
            tail = joined[-2:]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise FileRejected("not_utf8", f"{path}: file ends inside a UTF-8 character",
                               line=newlines + 1) from exc
    return Probe(newlines, carriage_returns, crlf, has_quote, has_nul, has_blank, tail.endswith(b"\n"), commas)


def read_header(path: Path, required: list[str]) -> tuple[list[str], list[str]]:
    """Return (header, extra columns); reject a missing header, a repeated or a missing column."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise FileRejected("empty_file", f"{path}: the file is empty (no header row)") from None
        except csv.Error as exc:
            raise FileRejected("empty_file", f"{path}: header row unreadable: {exc}") from exc
    if not header or header == [""]:
        raise FileRejected("empty_file", f"{path}: the header row is blank")
    for number, name in enumerate(header, start=1):
        if name == "":
            raise FileRejected("unnamed_column", f"{path}: column {number} of the header has no name "
                               "(a trailing comma in the header row adds one)")
    # SQL identifiers are case-insensitive in ASCII letters (DuckDB's too), so two names that
    # differ only in those cannot both be columns of a table: a repeated column as well.
    seen: dict[bytes, str] = {}
    for name in header:
        if (key := name.encode().lower()) in seen:
            also = "" if seen[key] == name else f" (as {seen[key]!r}: names differing only in case are one column)"
            raise FileRejected("duplicate_column", f"{path}: column {name!r} appears twice in the header{also}",
                               column=name)
        seen[key] = name
    for name in required:
        if name not in header:
            raise FileRejected("missing_column", f"{path}: required column {name!r} is missing",
                               column=name)
    return header, [name for name in header if name not in set(required)]


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, table: str, required: list[str],
               earlier: Callable[[list[str]], EarlierRows | None] | None = None) -> StagedFile:
    """Read `path` into a fresh table `table`; raise FileRejected for a file-level fault.

    `earlier(header)`, when given, names rows already judged: a plain file's lines that repeat one of
    them are not staged but mapped to it (`repeats_of(table)`: `_line`, `_from`, its `_line`, and
    `_digest`, the line's `line_digest`); the lines staged then carry theirs as `_line_digest`.
    """
    shape = probe(path)
    header, _ = read_header(path, required)
    drop_staged(con, table)
    rows_before = earlier(header) if shape.is_plain and earlier is not None else None
    if rows_before is not None and (staged := _stage_changed(con, path, table, header, shape, rows_before)):
        return staged
    if shape.is_plain and (rows := _stage_plain(con, path, table, header, shape)) is not None:
        return StagedFile(table, header, rows, method="plain")
    lines, malformed, total_length = _scan(path, len(header))
    if not malformed and _stage_scanned(con, path, table, header, lines, total_length):
        return StagedFile(table, header, len(lines), method="scanned")
    rows = _stage_python(con, path, table, header)
    return StagedFile(table, header, rows + len(malformed), malformed, method="python")


def _duckdb_read(path: Path, header: list[str], quoted: bool) -> str:
    columns = ", ".join(f"{lit(name)}: 'VARCHAR'" for name in header)
    quoting = "quote = '\"', escape = '\"'" if quoted else "quote = '', escape = ''"
    return (
        f"read_csv({lit(str(path))}, header = true, delim = ',', {quoting}, "
        f"columns = {{{columns}}}, auto_detect = false, strict_mode = true, "
        "max_line_size = 134217728, null_padding = false)"
    )


def _stage_plain(con: duckdb.DuckDBPyConnection, path: Path, table: str, header: list[str],
                 shape: Probe) -> int | None:
    """The rows staged, one per line after the header; None (nothing staged) when DuckDB read
    the file otherwise."""
    expected = shape.newlines - 1 + (0 if shape.ends_with_newline else 1)
    rows = _rows_of(table)
    try:
        con.execute(f"create temp table {rows} as select * from {_duckdb_read(path, header, quoted=False)}")
    except duckdb.Error:
        con.execute(f"drop table if exists {rows}")
        return None
    # DuckDB reads a line with empty fields past the header's width (`1,2,` under `a,b`) as one of
    # that width; Python's csv module, the reference, as malformed. Every line has the header's
    # width (DuckDB refuses fewer fields, and more that are not empty) only if the commas are as many.
    if _count(con, rows) != expected or shape.commas != (expected + 1) * (len(header) - 1):
        con.execute(f"drop table {rows}")
        return None
    # Insertion order is file order (preserve_insertion_order), so rowid 0 is line 2; a plain file
    # has no quoted fields, so DuckDB already reads every empty field as NULL. A view numbers the
    # rows: copying a large file's table only to add the column cost a tenth of its load.
    con.execute(f"create temp view {table} as select rowid + 2 as _line, * from {rows}")
    return expected


def _stage_changed(con: duckdb.DuckDBPyConnection, path: Path, table: str, header: list[str], shape: Probe,
                   earlier: EarlierRows) -> StagedFile | None:
    """Stage the lines of a plain file that repeat no row of `earlier`, each with the counts of
    `earlier.counts` over the whole file; None (nothing staged) when DuckDB read the file otherwise
    or a line is not one field per header name (the full reading reports it).

    A line repeats a row when its fields, joined by a unit separator, digest as the row's do (as the
    row's own line did, where that digest was kept), and every count of its key is the row's count
    in its own file. A line of the header's width without a unit separator has the header's count
    of them exactly, so the row it digests as has the same fields: no field of the row can hold one.
    """
    lines, numbered, repeats = f"{table}__lines", f"{table}__numbered", repeats_of(table)
    expected = shape.newlines - 1 + (0 if shape.ends_with_newline else 1)
    position = {name: i for i, name in enumerate(header, 1)}
    keys = sorted({c for key in earlier.counts.values() for c in key}, key=position.__getitem__)
    windows = "".join(f", count(*) over (partition by {', '.join(q(c) for c in key)}) as {name}"
                      for name, key in earlier.counts.items())
    same_counts = "".join(f" and n.{name} = e.{name}" for name in earlier.counts)
    digest = "_digest" if earlier.digested else f"coalesce(_digest, {row_digest(header)})"
    try:
        # One column per line: a plain file holds no NUL, the delimiter. DuckDB drops each line's end.
        con.execute(f"create temp table {lines} as select l from read_csv({lit(str(path))}, header = true, "
                    "columns = {'l': 'VARCHAR'}, delim = chr(0), quote = '', escape = '', auto_detect = false, "
                    "strict_mode = true, max_line_size = 134217728, null_padding = false)")
        # Each line's digest, width and key fields (insertion order is file order: rowid 0 is line 2),
        # by regular expressions: splitting every line costs several times as much.
        key_fields = (f", regexp_extract(l, {lit(_fields_pattern([position[c] for c in keys]))}, "
                      f"[{', '.join(lit(f'k{i}') for i in range(len(keys)))}]) as _keys") if keys else ""
        con.execute(f"create temp table {numbered} as select rowid + 2 as _line, "
                    f"{line_digest('l')} as _digest, "
                    f"regexp_full_match(l, {lit(_width_pattern(len(header)))}) and not contains(l, chr(31)) as _ok"
                    f"{key_fields} from {lines}")
        read, odd = con.execute(f"select count(*), count(*) filter (where _ok is not true) "
                                f"from {numbered}").fetchall()[0]
        if read != expected or odd:
            for made in (numbered, lines):
                con.execute(f"drop table {made}")
            return None
        # The counts are worked out over the digests and keys alone: a window carrying whole lines
        # or rows sorts them all.
        fields = "".join(f", nullif(_keys.k{i}, '') as {q(c)}" for i, c in enumerate(keys))
        con.execute(f"create or replace temp table {numbered} as select _line, _digest{windows} "
                    f"from (select _line, _digest{fields} from {numbered})")
        key_columns = "".join(f", {q(c)}" for c in keys)
        con.execute(
            f"create temp table {repeats} as select n._line, e._from, n._digest from {numbered} n join ("
            f"select _digest{''.join(', ' + name for name in earlier.counts)}, min(_line) as _from from ("
            f"select _line, _digest{windows} from (select _line, {digest} as _digest{key_columns} "
            f"from ({earlier.sql}))) group by all) e on n._digest = e._digest{same_counts}",
            dict(earlier.params))
        columns = "".join(f", nullif(_fields[{i}], '') as {q(name)}" for i, name in enumerate(header, 1))
        con.execute(f"create temp table {table} as select c._line{columns}"
                    f"{''.join(', n.' + name for name in earlier.counts)}, n._digest as _line_digest from ("
                    f"select _line, string_split(l, ',') as _fields from (select rowid + 2 as _line, l from {lines}) "
                    f"anti join {repeats} using (_line)) c join {numbered} n using (_line)")
    except duckdb.Error:
        for made in (repeats, table, numbered, lines):
            con.execute(f"drop table if exists {made}")
        return None
    con.execute(f"drop table {lines}")
    con.execute(f"drop table {numbered}")
    return StagedFile(table, header, expected, method=CHANGED_LINES, repeated=_count(con, repeats))


def _width_pattern(width: int) -> str:
    """A regular expression matching a line of `width` fields (no quotes), however wide."""
    hundreds, rest = divmod(width - 1, 100)
    groups = (f"(?:(?:[^,]*,){{100}}){{{hundreds}}}" if hundreds else "") + (f"(?:[^,]*,){{{rest}}}" if rest else "")
    return groups + "[^,]*"


def _fields_pattern(positions: list[int]) -> str:
    """A regular expression capturing the fields at `positions` (1-based, ascending) of a line."""
    pattern, after = "^", 0
    for position in positions:
        skip = position - after - 1
        pattern += ("," if after else "") + (f"(?:[^,]*,){{{skip}}}" if skip else "") + "([^,]*)"
        after = position
    return pattern


def repeats_of(table: str) -> str:
    """The temporary table mapping a file's lines that repeat an earlier row to that row's line."""
    return f"{table}__repeats"


def _stage_scanned(con: duckdb.DuckDBPyConnection, path: Path, table: str, header: list[str],
                   lines: array.array, total_length: int) -> bool:
    try:
        con.execute(f"create temp table {table} as select * from {_duckdb_read(path, header, quoted=True)}")
    except duckdb.Error:
        con.execute(f"drop table if exists {table}")
        return False
    length = " + ".join(f"coalesce(length({q(name)}), 0)" for name in header)
    count, total = con.execute(f"select count(*), coalesce(sum({length}), 0) from {table}").fetchall()[0]
    if count != len(lines) or total != total_length:
        con.execute(f"drop table {table}")
        return False
    line_table = pa.table({"_line": pa.array(lines, type=pa.int64())})
    con.register("_staged_lines", line_table)
    try:
        # A quoted empty field ("") reads as '' rather than NULL: both mean missing.
        columns = ", ".join(f"nullif({q(name)}, '') as {q(name)}" for name in header)
        _replace_with(con, table, f"select _staged_lines._line, {columns} from {table} "
                                  "positional join _staged_lines")
    finally:
        con.unregister("_staged_lines")
    return True


def _records(path: Path) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
    """Python's reading of the records after the header: (start line, end line, fields, error).

    Blank lines are not records and are skipped.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        previous_end = reader.line_num
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, previous_end = previous_end + 1, reader.line_num
                yield start, previous_end, None, f"unreadable record: {exc}"
                continue
            start, previous_end = previous_end + 1, reader.line_num
            if record:
                yield start, previous_end, record, None


def _scan(path: Path, width: int) -> tuple[array.array, list[tuple[int, str]], int]:
    """Record start lines, malformed records and the total length of all fields."""
    lines = array.array("q")
    malformed: list[tuple[int, str]] = []
    total = 0
    for start, end, record, error in _records(path):
        if record is None or len(record) != width:
            malformed.append((start, error or _field_count_detail(record, width, start, end)))
            continue
        lines.append(start)
        total += sum(map(len, record))
    return lines, malformed, total


def _field_count_detail(record: list[str], width: int, start: int, end: int) -> str:
    detail = f"{len(record)} fields, the header has {width}"
    if end > start:
        detail += f"; the record runs from line {start} to line {end} (an unclosed quote?)"
    return detail


def _stage_python(con: duckdb.DuckDBPyConnection, path: Path, table: str, header: list[str]) -> int:
    """Load the well-formed records through Python, batch by batch (the slow, exact reading)."""
    schema = pa.schema([("_line", pa.int64())] + [(name, pa.string()) for name in header])
    records = (
        (start, *(value if value != "" else None for value in record))
        for start, _, record, _ in _records(path)
        if record is not None and len(record) == len(header)
    )
    loaded = 0
    con.execute(f"create temp table {table} ({', '.join(f'{q(f.name)} {_sql_type(f)}' for f in schema)})")
    while batch := list(itertools.islice(records, BATCH_ROWS)):
        columns = zip(*batch, strict=True)
        arrow = pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                         schema=schema)
        con.register("_staged_batch", arrow)
        try:
            con.execute(f"insert into {table} select * from _staged_batch")
        finally:
            con.unregister("_staged_batch")
        loaded += len(batch)
    return loaded


def _sql_type(column: pa.Field) -> str:
    return "bigint" if column.type == pa.int64() else "varchar"


def drop_staged(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop what `stage_file` made of `table`, whichever way it was staged."""
    made = con.execute(
        "select table_name, table_type = 'VIEW' from information_schema.tables "
        "where table_catalog = 'temp' and table_name in ($table, $rows, $repeats, $lines, $numbered)",
        {"table": table, "rows": _rows_of(table), "repeats": repeats_of(table), "lines": f"{table}__lines",
         "numbered": f"{table}__numbered"}).fetchall()
    for name, is_view in sorted(made, key=lambda made: not made[1]):  # the view before its table
        con.execute(f"drop {'view' if is_view else 'table'} {name}")


def _rows_of(table: str) -> str:
    return f"{table}__rows"


def _replace_with(con: duckdb.DuckDBPyConnection, table: str, select: str) -> None:
    con.execute(f"create temp table {table}__next as {select}")
    con.execute(f"drop table {table}")
    con.execute(f"alter table {table}__next rename to {table.split('.')[-1]}")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchall()[0][0]


