"""Staging a delivered CSV: every record staged with its line, or reported malformed; files rejected whole."""

import csv
import io
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pod_pipeline.ingest.csvfile import (
    CHANGED_LINES,
    EarlierRows,
    FileRejected,
    drop_staged,
    line_digest,
    probe,
    repeats_of,
    row_digest,
    stage_file,
)
from pod_pipeline.sql import lit


def stage(tmp_path: Path, content: bytes, required=("a", "b", "c")):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    con = duckdb.connect()
    staged = stage_file(con, path, "s", list(required))
    rows = con.execute("select * from s order by _line").fetchall()
    return staged, rows


def test_plain_file_goes_straight_to_duckdb_with_line_numbers(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b"a,b,c\n1,2,3\n4,,6\n")
    assert staged.method == "plain"
    assert rows == [(2, "1", "2", "3"), (3, "4", None, "6")]


def test_a_plain_file_is_numbered_by_a_view_over_its_rows_and_dropped_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    for content, kind in ((b"a,b,c\n1,2,3\n4,,6\n", "VIEW"), (b'a,b,c\n1,"x,y",3\n', "LOCAL TEMPORARY")):
        path.write_bytes(content)
        con = duckdb.connect()
        stage_file(con, path, "s", ["a"])
        made = dict(con.execute("select table_name, table_type from information_schema.tables").fetchall())
        # A plain file's rows are not copied to add their line numbers; a quoted file's are.
        assert made["s"] == kind and (kind == "VIEW") == ("s__rows" in made)
        stage_file(con, path, "s", ["a"])  # staging again replaces what the first staging made
        drop_staged(con, "s")
        assert con.execute("select count(*) from information_schema.tables").fetchall() == [(0,)]


@pytest.mark.parametrize("content, staged_lines, repeats, method", [
    # Line 2 repeats the earlier line 5 field for field (its empty field a NULL); line 4 repeats line
    # 7, but its key (a) was twice in the earlier file and is once now: staged, as lines 3 and 5 are,
    # each with its key's count over this file.
    (b"\xef\xbb\xbfa,b\n1,\n2,x\nq,r\n2,y\n", [(3, "2", "x", 2), (4, "q", "r", 1), (5, "2", "y", 2)], [(2, 5)],
     CHANGED_LINES),
    (b"a,b\n1,\r\n", None, None, "scanned"),      # not plain (a lone CR): read in full
    (b"a,b\n1,2,3\n", None, None, "python"),       # a line of three fields: read in full, reported
    (b"a,b\nq\x1fr,s\n", None, None, "plain"),    # a unit separator in a line: read in full
])
def test_a_plain_file_is_staged_against_earlier_rows_by_its_changed_lines_only(
        tmp_path: Path, content: bytes, staged_lines: list | None, repeats: list | None, method: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    con = duckdb.connect()
    # Line 7's digest was kept when it was read (csvfile.line_digest); the others' were not.
    con.execute("create table earlier as select _line, _digest, a, b from (values (5, '1', null, false), "
                "(7, 'q', 'r', true), (8, 'q', 'r\x1fs', false)) t(_line, a, b, kept), "
                f"lateral (select case when kept then {line_digest(lit('q,r'))} end as _digest)")
    earlier = EarlierRows("select * from earlier where _line > $after", {"after": 0}, {'"_count:a"': ("a",)})
    staged = stage_file(con, path, "s", ["a", "b"], lambda header: earlier)
    assert staged.method == method
    if staged_lines is not None:
        assert con.execute('select _line, a, b, "_count:a" from s order by _line').fetchall() == staged_lines
        assert con.execute(f"select _line, _from from {repeats_of('s')} order by all").fetchall() == repeats
        assert (staged.rows_read, staged.repeated) == (4, 1)
        # Every line read carries its digest, staged or not, as a row read from it would digest.
        digests = con.execute(f"select _line, _line_digest from s union all select _line, _digest "
                              f"from {repeats_of('s')} order by _line").fetchall()
        lines = content.decode("utf-8-sig").split("\n")
        assert digests == con.execute("select _line, " + line_digest("l") + " from (values " + ", ".join(
            f"({n}, {lit(lines[n - 1])})" for n in range(2, 6)) + ") t(_line, l) order by _line").fetchall()
    drop_staged(con, "s")
    assert con.execute("select table_name from information_schema.tables where table_name <> 'earlier'"
                       ).fetchall() == []


def test_an_earlier_rows_kept_line_digest_is_what_a_line_is_compared_with(tmp_path: Path) -> None:
    """A row's kept digest stands for its fields: they are digested only where none was kept."""
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2\n3,4\n5,6\n")
    con = duckdb.connect()
    # Row 7 holds 1,2 with no digest kept; row 8 holds 3,4 with the digest of 5,6 kept, which the
    # line 5,6 is taken to repeat (a kept digest is trusted) and the line 3,4 is not.
    con.execute(f"create table earlier as select * from (values (7, null, '1', '2'), "
                f"(8, {line_digest(lit('5,6'))}, '3', '4')) t(_line, _digest, a, b)")
    staged = stage_file(con, path, "s", ["a", "b"], lambda header: EarlierRows("select * from earlier", {}))
    assert staged.method == CHANGED_LINES
    assert con.execute(f"select _line, _from from {repeats_of('s')} order by all").fetchall() == [(2, 7), (4, 8)]
    assert con.execute("select _line, a, b from s").fetchall() == [(3, "3", "4")]
    assert con.execute(f"select {row_digest(['a', 'b'])} = {line_digest(lit('3,4'))} from s").fetchall() == [(True,)]
    # Rows whose digests are all kept (`digested`) are compared by them alone.
    staged = stage_file(con, path, "s", ["a", "b"], lambda header: EarlierRows(
        "select * from earlier where _digest is not null", {}, digested=True))
    assert con.execute(f"select _line, _from from {repeats_of('s')}").fetchall() == [(4, 8)]
    assert con.execute("select _line from s order by _line").fetchall() == [(2,), (3,)]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b"\xef\xbb\xbfa,b,c\r\n1,2,3\r\n4,5,6")
    assert rows == [(2, "1", "2", "3"), (3, "4", "5", "6")]
    assert staged.rows_read == 2


def test_quoted_commas_quotes_and_line_breaks_keep_physical_line_numbers(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b'a,b,c\n1,"x\ny",3\n4,"he said ""hi""",""\n7,"8,9",10\n')
    assert staged.method == "scanned"
    assert rows == [(2, "1", "x\ny", "3"), (4, "4", 'he said "hi"', None), (5, "7", "8,9", "10")]


def test_mixed_line_ends_load(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b"a,b,c\r\n1,2,3\n4,5,6\r\n")
    assert [r[0] for r in rows] == [2, 3]
    assert staged.malformed == []


def test_wrong_field_counts_are_malformed_and_the_rest_loads(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b"a,b,c\n1,2\n4,5,6\n7,8,9,10\n")
    assert rows == [(3, "4", "5", "6")]
    assert [line for line, _ in staged.malformed] == [2, 4]
    assert staged.rows_read == 3


def test_a_line_with_empty_fields_past_the_header_is_malformed(tmp_path: Path) -> None:
    """DuckDB's reading of a plain file drops empty fields past the header's width; Python's csv does not."""
    staged, rows = stage(tmp_path, b"a,b,c\n1,2,3,\n4,5,6\n7,8,,,\n")
    assert staged.method == "python"
    assert staged.malformed == [(2, "4 fields, the header has 3"), (4, "5 fields, the header has 3")]
    assert rows == [(3, "4", "5", "6")]


def test_an_unclosed_quote_is_one_malformed_record_naming_its_lines(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b'a,b,c\n1,2,3\n4,"5,6\n7,8,9\n')
    assert rows == [(2, "1", "2", "3")]
    assert staged.malformed[0][0] == 3 and "line 3 to line 4" in staged.malformed[0][1]


def test_blank_lines_are_not_records(tmp_path: Path) -> None:
    staged, rows = stage(tmp_path, b"a,b,c\n\n1,2,3\n\n")
    assert rows == [(3, "1", "2", "3")] and staged.rows_read == 1


@pytest.mark.parametrize(
    ("content", "reason", "line", "column"),
    [
        (b"a,b\n1,2\n", "missing_column", None, "c"),
        (b"a,b,c,a\n1,2,3,4\n", "duplicate_column", None, "a"),
        # One column to SQL: rejected whole rather than crashing the load (hypothesis found it).
        (b"a,b,c,A\n1,2,3,4\n", "duplicate_column", None, "A"),
        (b"a,b,c,\n1,2,3,\n", "unnamed_column", None, None),
        (b"", "empty_file", None, None),
        (b"a,b,c\n1,2,3\n4,\xff,6\n", "not_utf8", 3, None),
        (b"a,b,c\n1,2,3\n4,5,\xe2\x82", "not_utf8", 3, None),
    ],
)
def test_file_level_faults_reject_the_whole_file(tmp_path: Path, content: bytes, reason: str, line: int | None,
                                                 column: str | None) -> None:
    with pytest.raises(FileRejected) as raised:
        stage(tmp_path, content)
    assert (raised.value.reason, raised.value.line, raised.value.column) == (reason, line, column)


def test_probe_reads_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"a\r\nb\r\n")
    assert probe(path).is_plain
    path.write_bytes(b"a\r\nb\n")
    assert not probe(path).is_plain


cell = st.text(alphabet=st.sampled_from(list('ab ,"\n\r1é')), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell, min_size=3, max_size=3), max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
def test_staging_agrees_with_pythons_csv_reading(tmp_path: Path, rows: list[list[str]], terminator: str,
                                                 bom: bool) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=terminator).writerows([["a", "b", "c"], *rows])
    content = ("\ufeff" if bom else "") + buffer.getvalue()
    # A writer may emit an unquoted lone \r, which readers take as a line end: Python's reading is
    # the reference, and a record of the wrong width is reported, never dropped.
    records = [r for r in csv.reader(io.StringIO(content.removeprefix("\ufeff"), newline="")) if r][1:]
    well_formed = [[v or None for v in r] for r in records if len(r) == 3]
    staged, staged_rows = stage(tmp_path, content.encode())
    assert [list(r[1:]) for r in staged_rows] == well_formed
    assert staged.rows_read == len(records)
    assert len(staged.malformed) == len(records) - len(well_formed)
