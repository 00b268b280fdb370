"""Loading one file of one batch: stage it, judge every row in SQL, keep it all in history.

Every record ends in exactly one place: `restricted.<table>_history` with `_status = 'loaded'`
(a REDCap row may have instruments quarantined, listed in `_quarantined_instruments`), or
quarantine (`audit.quarantine`, with file, line, column and reason). Only the row rules are judged
here; rules across files are judged on every run against the current files (current.py). The ledger entry written in
the same transaction records the counts, so a crash leaves no half-loaded file.

A cumulative export often repeats a file byte for byte (a register after recruitment closed, the
HoNOS ratings of a quiet month). Such a file is not read again when the site's earlier export of the
same bytes was judged by the same rules: its verdicts are copied (`_copy_verdicts`), row for row,
under the new export. What decides "the same rules" is a digest of everything a verdict depends on
beside the bytes (`Judgement.digest`), kept for every file judged (`audit.file_judgements`).

More often a cumulative export repeats most of its rows and changes or adds a few. Every rule here
judges a row by its own fields, so a row repeated field for field has the verdict it had: a plain
file whose site has an earlier export of the same file judged alike is read as lines against that
export's rows (csvfile.EarlierRows), only the lines that repeat none of them are judged, and the
verdicts of the others (their history rows and their row and instrument quarantine) are copied
under their new lines (`_copy_repeated`).
"""

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pod_pipeline.identifiers import hmac_pads
from pod_pipeline.ingest import csvfile, current, ledger, rules
from pod_pipeline.ingest.csvfile import EarlierRows, FileRejected, StagedFile, drop_staged, repeats_of, stage_file
from pod_pipeline.ingest.rules import SEP
from pod_pipeline.ingest.specs import FileSpec
from pod_pipeline.sql import columns as columns_of
from pod_pipeline.sql import in_any_order, lit, q, table_exists

STAGE = "_stage"
CHECKED = "_checked"

QUARANTINE_DDL = """
create table if not exists audit.quarantine (
    site varchar not null, export_id varchar not null, file varchar not null, line bigint,
    "column" varchar, reason varchar not null, detail varchar, scope varchar not null,
    instrument varchar, quarantined_at timestamp not null, run_id varchar
);
-- Cross-file verdicts on the current files: replaced for a site and file on every run that
-- re-judges them (pod_pipeline/ingest/current.py), so they are never history.
create table if not exists audit.cross_file_quarantine (
    site varchar not null, export_id varchar not null, file varchar not null, line bigint,
    "column" varchar, reason varchar not null, detail varchar, scope varchar not null,
    instrument varchar, quarantined_at timestamp not null, run_id varchar
);
-- What each site's raw rows of a file were last built from (see current.refresh): the batches, and
-- their content (the same for batches that repeat an earlier one's bytes, judged alike).
create table if not exists audit.current_inputs (
    file varchar not null, site varchar not null, inputs varchar not null
);
alter table audit.current_inputs add column if not exists content varchar;
create table if not exists audit.file_columns (
    site varchar not null, export_id varchar not null, file varchar not null,
    position integer not null, "column" varchar not null
);
-- How each loaded file was judged (Judgement.digest), and the export whose verdicts it copied when
-- its bytes and judgement were those of an earlier export of the site's (null when judged here).
create table if not exists audit.file_judgements (
    site varchar not null, export_id varchar not null, file varchar not null, sha256 varchar not null,
    judgement varchar not null, copied_from varchar
);
create schema if not exists restricted;
create schema if not exists raw;
"""


@dataclass(frozen=True)
class BatchFile:
    site: str
    export_id: str
    path: Path
    sha256: str
    landing_root: Path

    @property
    def relative(self) -> str:
        return self.path.relative_to(self.landing_root).as_posix()


@dataclass(frozen=True)
class FileOutcome:
    file: BatchFile
    status: str  # loaded | rejected
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    instruments_quarantined: int = 0
    method: str = ""
    error: str | None = None
    extra_columns: tuple[str, ...] = ()
    copied_from: str | None = None  # the export whose verdicts were copied: the same bytes, judged alike


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    ledger.ensure(con)
    con.execute(QUARANTINE_DDL)
    con.execute(current.PARTICIPANT_INPUTS_DDL)


def quarantine_file(con: duckdb.DuckDBPyConnection, site: str, export_id: str, file: str,
                    reason: str, detail: str, scope: str, line: int | None = None,
                    column: str | None = None, run_id: str | None = None) -> None:
    con.execute(
        "insert into audit.quarantine values (?, ?, ?, ?, ?, ?, ?, ?, null, ?, ?)",
        [site, export_id, file, line, column, reason, detail, scope, _now(), run_id],
    )


def load_file(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile,
              pseudonym_key: str, run_id: str | None = None) -> FileOutcome:
    """Load one delivered file; a file-level fault rejects it whole.

    The file is staged first, outside the transaction (so its rows are numbered in file order),
    then judged and recorded in one transaction. A file whose bytes and judgement are those of an
    earlier export of the site's is not staged: that export's verdicts are copied.
    """
    earlier = _judged_before(con, spec, batch, pseudonym_key)
    if earlier is not None:
        return _in_transaction(con, lambda: _copy_verdicts(con, spec, batch, *earlier, run_id))
    base: list[str] = []  # the export whose rows the lines not staged repeat

    def earlier_rows(header: list[str]) -> EarlierRows | None:
        judgement = _judgement(con, spec, batch, header, pseudonym_key)
        found = _judged_alike(con, spec, batch, judgement)
        if found is None:
            return None
        base.append(found)
        history, rows = f"restricted.{spec.table}_history", "where _site = $site and _export_id = $export_id"
        params = {"site": batch.site, "export_id": found}
        # Rows loaded before line digests were kept (a warehouse of older code) have none.
        kept = "_line_digest" in {name for name, _ in columns_of(con, *history.split("."))}
        digested = kept and not con.execute(f"select count(*) from {history} {rows} and _line_digest is null",
                                            params).fetchall()[0][0]
        return EarlierRows(f"select _line, {'_line_digest' if kept else 'cast(null as uhugeint)'} as _digest, "
                           f"{', '.join(q(c) for c in header)} from {history} {rows}", params,
                           {rules.counted(key): key for key in judgement.keys}, digested)

    try:
        staged: StagedFile | FileRejected = stage_file(con, batch.path, STAGE, list(spec.required), earlier_rows)
    except FileRejected as rejected:
        staged = rejected
    try:
        if isinstance(staged, FileRejected):
            return _in_transaction(con, lambda: _reject(con, spec, batch, staged, run_id))
        repeated = base[-1] if staged.method == csvfile.CHANGED_LINES else None
        return _in_transaction(con, lambda: _load(con, spec, batch, staged, pseudonym_key, run_id, repeated))
    finally:
        with contextlib.suppress(duckdb.Error):
            drop_staged(con, STAGE)
            con.execute(f"drop table if exists {CHECKED}")


def _in_transaction(con: duckdb.DuckDBPyConnection, work: Callable[[], FileOutcome]) -> FileOutcome:
    con.execute("begin transaction")
    try:
        outcome = work()
        con.execute("commit")
    except BaseException:
        # A failed commit (a full disk) has ended the transaction already: its error is the one
        # to report, not the rollback's.
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    return outcome


def _reject(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile, rejected: FileRejected,
            run_id: str | None) -> FileOutcome:
    # The message names the landing path; the quarantine row names the file by its batch.
    detail = str(rejected).replace(f"{batch.path}: ", "")
    quarantine_file(con, batch.site, batch.export_id, spec.file, rejected.reason, detail, "file",
                    rejected.line, rejected.column, run_id)
    ledger.append(con, ledger.Entry(batch.site, batch.export_id, spec.file, batch.sha256, "rejected",
                                    error=f"{rejected.reason}: {detail}"), run_id)
    return FileOutcome(batch, "rejected", error=f"{rejected.reason}: {detail}")


# What judges a file beside its own rules: the staging (csvfile.py), the rules' SQL (rules.py) and
# this module, which writes the verdicts. A change to any of them judges every file anew once.
_JUDGED_BY = hashlib.sha256(b"".join(Path(module.__file__).read_bytes()
                                     for module in (csvfile, rules, sys.modules[__name__]))).hexdigest()


@dataclass(frozen=True)
class Judgement:
    """The SQL that judges a file with this header in this batch: its row rules (the site's), each
    REDCap instrument's rules (with the items the site's dictionary marks as identifiers as of the
    batch), its derived columns, and the history row it keeps."""

    header: tuple[str, ...]
    instruments: dict[str, tuple[str, str]]
    select: tuple[str, ...]
    history: str
    key_check: str  # an HMAC of a constant under the pseudonym key: which key, not the key
    keys: tuple[tuple[str, ...], ...] = ()  # whose counts over the file a rule reads (rules.counted)

    def source(self, staged: str, counted: bool) -> str:
        """The staged rows with the counts the rules read (worked out here unless `counted`)."""
        windows = ", ".join(f"count(*) over (partition by {', '.join(q(c) for c in key)}) as {rules.counted(key)}"
                            for key in self.keys)
        return staged if counted or not windows else f"(select *, {windows} from {staged})"

    @property
    def digest(self) -> str:
        parts = [_JUDGED_BY, self.header, self.select, self.instruments, self.history, self.key_check]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _judgement(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile, header: list[str],
               key: str) -> Judgement:
    identifiers = set(spec.identifiers) | _flagged_identifiers(con, batch, spec)
    row_rules = [rule for rule in spec.row_rules(batch.site) if rule.column in header]
    first, detail = rules.checked(row_rules)
    instruments = _instrument_checks(header, identifiers) if spec.table == "redcap_records" else {}
    select = [f"s.{q(c)}" for c in header] + [f"{first} as _first", f"{detail} as _detail"]
    # An instrument's detail is worked out for its quarantined rows only (_quarantine_rows).
    select += [f"{i_first} as {q('_i_' + instrument)}" for instrument, (i_first, _) in instruments.items()]
    select += [f"{d.sql} as {d.name}" for d in spec.derived]
    key_check = hmac.new(key.encode(), b"pod_pipeline judgement", hashlib.sha256).hexdigest()
    keys = tuple(dict.fromkeys(rule.key for rule in row_rules if rule.key))
    return Judgement(tuple(header), instruments, tuple(select),
                     _history_select(spec, header, instruments), key_check, keys)


def _judged_before(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile,
                   key: str) -> tuple[str, Judgement] | None:
    """(export, judgement): the newest of the site's exports already loaded with these bytes and judged
    as this batch would judge them; None when there is none and the file is to be read."""
    same_bytes = con.execute(
        "select j.export_id, j.judgement from audit.file_judgements j join audit.load_ledger l "
        "on l.site = j.site and l.export_id = j.export_id and l.file = j.file and l.sha256 = j.sha256 "
        "and l.status = 'loaded' where j.site = $site and j.file = $file and j.sha256 = $sha "
        "and j.export_id <> $export_id order by j.export_id desc",
        {"site": batch.site, "file": spec.file, "sha": batch.sha256, "export_id": batch.export_id}).fetchall()
    if not same_bytes:
        return None
    # The same bytes have the same header: the newest such export's, as it was staged.
    header = [c for (c,) in con.execute(
        "select \"column\" from audit.file_columns where site = $site and export_id = $e and file = $file "
        "order by position", {"site": batch.site, "e": same_bytes[0][0], "file": spec.file}).fetchall()]
    judgement = _judgement(con, spec, batch, header, key)
    return next(((export_id, judgement) for export_id, digest in same_bytes if digest == judgement.digest), None)


def _judged_alike(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile,
                  judgement: Judgement) -> str | None:
    """The newest other export of the site's file loaded and judged as this batch's would be (so with
    the same header): a row repeated from it has the verdict it had there."""
    found = con.execute(
        "select j.export_id from audit.file_judgements j join audit.load_ledger l on l.site = j.site "
        "and l.export_id = j.export_id and l.file = j.file and l.sha256 = j.sha256 and l.status = 'loaded' "
        "where j.site = $site and j.file = $file and j.judgement = $judgement and j.export_id <> $export_id "
        "order by j.export_id desc limit 1",
        {"site": batch.site, "file": spec.file, "judgement": judgement.digest, "export_id": batch.export_id},
    ).fetchall()
    return found[0][0] if found else None


def _load(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile, staged: StagedFile,
          key: str, run_id: str | None, repeated: str | None = None) -> FileOutcome:
    """Judge the staged rows and record them; `repeated`: the export whose rows the lines not staged
    repeat (their verdicts are copied, `_copy_repeated`)."""
    header = staged.header
    _record_columns(con, batch, spec, header)
    judgement = _judgement(con, spec, batch, header, key)
    instruments = judgement.instruments
    pads = dict(zip(("inner_pad", "outer_pad"), hmac_pads(key), strict=True))
    changed_lines = staged.method == csvfile.CHANGED_LINES
    source = judgement.source(STAGE, counted=changed_lines)
    # A line read against earlier rows keeps its digest with its history row (csvfile.line_digest):
    # the site's next export is compared with it without digesting the row's fields again.
    digest = ", s._line_digest" if changed_lines else ""
    con.execute(f"create temp table {CHECKED} as select s._line{digest}, {', '.join(judgement.select)} "
                f"from {source} s",
                {k: v for k, v in pads.items() if any(f"${k}" in part for part in judgement.select)})

    loaded_at = _now()
    where = dict(site=batch.site, export_id=batch.export_id, file=spec.file)
    # Rows loaded, rows quarantined, and each instrument's quarantined rows among those loaded:
    # the quarantine's inserts run only for what has rows (each binds its rules' detail
    # expressions, about 17 ms apiece for a REDCap export's twelve instruments, whatever its size).
    counts = con.execute(
        "select count(*) filter (where _first is null), count(*) filter (where _first is not null)"
        + "".join(f", count(*) filter (where _first is null and {q('_i_' + i)} is not null)"
                  for i in instruments) + f" from {CHECKED}"
    ).fetchall()[0]
    loaded, quarantined = counts[0], counts[1] + len(staged.malformed)
    flagged = {instrument: n for instrument, n in zip(instruments, counts[2:], strict=True) if n}
    _quarantine_rows(con, staged.malformed, {i: instruments[i] for i in flagged}, where, loaded_at, run_id,
                     any_row=counts[1] > 0)
    judged = f"select {judgement.history}{', _line_digest' if changed_lines else ''} from {CHECKED}"
    # The lines that repeat earlier rows take those rows' history rows. One insert for all: DuckDB
    # writes a large insert compressed as it goes, but one that follows another into the same table
    # in a transaction at the commit's checkpoint (about 7 s more for 460,000 REDCap rows).
    _append_history(con, spec, judgement, batch, loaded_at, judged if repeated is None else (
        f"{judged} union all by name select h.* exclude (_site, _export_id, _file, _loaded_at, _line, "
        "_line_digest), r._line, r._digest as _line_digest "
        f"from restricted.{spec.table}_history h join {repeats_of(STAGE)} r on h._line = r._from "
        f"where h._site = $site and h._export_id = {lit(repeated)}"))
    method, instruments_quarantined = staged.method, sum(flagged.values())
    if repeated is not None:
        copied = _copy_repeated(con, spec, batch, repeated, loaded_at, run_id)
        loaded, quarantined, instruments_quarantined = (
            loaded + copied[0], quarantined + copied[1], instruments_quarantined + copied[2])
        method = (f"plain: {staged.rows_read - staged.repeated} line(s) judged, {staged.repeated} repeating "
                  f"rows of {repeated}")
    ledger.append(con, ledger.Entry(batch.site, batch.export_id, spec.file, batch.sha256, "loaded",
                                    staged.rows_read, loaded, quarantined), run_id)
    _record_judgement(con, batch, spec, judgement, copied_from=None)
    return FileOutcome(batch, "loaded", staged.rows_read, loaded, quarantined, instruments_quarantined,
                       method, extra_columns=_extras(header, spec))


def _copy_repeated(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile, earlier: str,
                   at: dt.datetime, run_id: str | None) -> tuple[int, int, int]:
    """Quarantine each line that repeats a row of the earlier export as that row was, under its own
    line (its history row is copied with the judged rows'). Returns the rows loaded and quarantined,
    and the instruments quarantined, among them."""
    repeats = repeats_of(STAGE)
    where = {"site": batch.site, "earlier": earlier, "file": spec.file}
    con.execute(
        "insert into audit.quarantine select q.site, $export_id, q.file, r._line, q.\"column\", q.reason, "
        "q.detail, q.scope, q.instrument, $at, $run_id from audit.quarantine q "
        f"join {repeats} r on q.line = r._from where q.site = $site and q.export_id = $earlier "
        "and q.file = $file and q.scope in ('row', 'instrument')",
        {**where, "export_id": batch.export_id, "at": at, "run_id": run_id})
    loaded, quarantined = con.execute(
        f"select count(*) filter (where h._status = 'loaded'), count(*) filter (where h._status <> 'loaded') "
        f"from restricted.{spec.table}_history h join {repeats} r on h._line = r._from "
        "where h._site = $site and h._export_id = $earlier", {"site": batch.site, "earlier": earlier}).fetchall()[0]
    instruments = con.execute(
        f"select count(*) from audit.quarantine q join {repeats} r on q.line = r._line where q.site = $site "
        "and q.export_id = $export_id and q.file = $file and q.scope = 'instrument'",
        {"site": batch.site, "export_id": batch.export_id, "file": spec.file}).fetchall()[0][0]
    return loaded, quarantined, instruments


def _copy_verdicts(con: duckdb.DuckDBPyConnection, spec: FileSpec, batch: BatchFile, earlier: str,
                   judgement: Judgement, run_id: str | None) -> FileOutcome:
    """Record the file as the earlier export of the same bytes was recorded, judged alike: its
    history rows and its row and instrument quarantine, line for line, under this batch."""
    _record_columns(con, batch, spec, list(judgement.header))
    at = _now()
    con.execute(
        "insert into audit.quarantine select site, $export_id, file, line, \"column\", reason, detail, scope, "
        "instrument, $at, $run_id from audit.quarantine where site = $site and export_id = $earlier "
        "and file = $file and scope in ('row', 'instrument')",
        {"site": batch.site, "export_id": batch.export_id, "earlier": earlier, "file": spec.file, "at": at,
         "run_id": run_id})
    _append_history(con, spec, judgement, batch, at,
                    f"select * exclude (_site, _export_id, _file, _loaded_at) from restricted.{spec.table}_history "
                    f"where _site = $site and _export_id = {lit(earlier)}")
    read, loaded, quarantined = con.execute(
        "select rows_read, rows_loaded, rows_quarantined from audit.load_ledger where site = $site "
        "and export_id = $earlier and file = $file and status = 'loaded'",
        {"site": batch.site, "earlier": earlier, "file": spec.file}).fetchall()[0]
    instruments = con.execute(
        "select count(*) from audit.quarantine where site = $site and export_id = $export_id and file = $file "
        "and scope = 'instrument'", {"site": batch.site, "export_id": batch.export_id, "file": spec.file},
    ).fetchall()[0][0]
    ledger.append(con, ledger.Entry(batch.site, batch.export_id, spec.file, batch.sha256, "loaded",
                                    read, loaded, quarantined), run_id)
    origin = con.execute("select coalesce(copied_from, export_id) from audit.file_judgements where site = $site "
                         "and export_id = $earlier and file = $file",
                         {"site": batch.site, "earlier": earlier, "file": spec.file}).fetchall()[0][0]
    _record_judgement(con, batch, spec, judgement, copied_from=origin)
    return FileOutcome(batch, "loaded", read, loaded, quarantined, instruments, f"copied from {earlier}",
                       extra_columns=_extras(list(judgement.header), spec), copied_from=earlier)


def _record_columns(con: duckdb.DuckDBPyConnection, batch: BatchFile, spec: FileSpec, header: list[str]) -> None:
    con.executemany("insert into audit.file_columns values (?, ?, ?, ?, ?)",
                    [(batch.site, batch.export_id, spec.file, i, c) for i, c in enumerate(header, 1)])


def _record_judgement(con: duckdb.DuckDBPyConnection, batch: BatchFile, spec: FileSpec, judgement: Judgement,
                      copied_from: str | None) -> None:
    con.execute("insert into audit.file_judgements values ($site, $export_id, $file, $sha, $judgement, $copied)",
                {"site": batch.site, "export_id": batch.export_id, "file": spec.file, "sha": batch.sha256,
                 "judgement": judgement.digest, "copied": copied_from})


def _extras(header: list[str], spec: FileSpec) -> tuple[str, ...]:
    return tuple(c for c in header if c not in spec.required and not _known_redcap(c, spec))


def _known_redcap(column: str, spec: FileSpec) -> bool:
    return spec.table == "redcap_records" and column in {i.field_name for i in rules.instrument_items()}


def _flagged_identifiers(con: duckdb.DuckDBPyConnection, batch: BatchFile, spec: FileSpec) -> set[str]:
    """REDCap fields the site's dictionary marks `Identifier? = y` (as of this batch)."""
    if spec.table != "redcap_records" or not table_exists(con, "restricted", "redcap_dictionary_history"):
        return set()
    rows = con.execute(
        'select "Variable / Field Name" from restricted.redcap_dictionary_history '
        "where _site = $site and _status = 'loaded' and lower(trim(\"Identifier?\")) = 'y' "
        "and _export_id = (select max(export_id) from audit.load_ledger where site = $site "
        "and file = 'redcap_dictionary.csv' and status = 'loaded' and export_id <= $export_id)",
        {"site": batch.site, "export_id": batch.export_id},
    ).fetchall()
    return {name for (name,) in rows}


def _instrument_checks(header: list[str], identifiers: set[str]) -> dict[str, tuple[str, str]]:
    """Per REDCap instrument: SQL for its first broken rule and detail, on rows of its kind only."""
    checks: dict[str, tuple[str, str]] = {}
    items = [i for i in rules.instrument_items() if i.field_name in header]
    for instrument in dict.fromkeys(i.instrument for i in items):
        instrument_rules = []
        for item in (i for i in items if i.instrument == instrument):
            for rule in rules.item_rules(item):
                if item.field_name in identifiers:
                    rule = rules.Rule(rule.column, rule.verdict, f"'{item.field_name}: value withheld (identifier)'")
                instrument_rules.append(rule)
        if not instrument_rules:
            continue
        first, detail = rules.checked(instrument_rules)
        is_carer = "s.redcap_repeat_instrument is not distinct from 'carer_questionnaire'"
        applies = is_carer if instrument in rules.carer_instruments() else f"not ({is_carer})"
        checks[instrument] = (f"case when {applies} then {first} end", f"case when {applies} then {detail} end")
    return checks


def _quarantine_rows(con: duckdb.DuckDBPyConnection, malformed: list[tuple[int, str]],
                     instruments: dict[str, tuple[str, str]], where: dict[str, str],
                     at: dt.datetime, run_id: str | None, any_row: bool) -> None:
    """Quarantine the rows that broke a rule (`any_row`: some did), the malformed rows, and the
    rows of each instrument given that broke one of its rules."""
    params = {**where, "at": at, "run_id": run_id, "sep": SEP}
    if any_row:
        con.execute(
            "insert into audit.quarantine select $site, $export_id, $file, _line, "
            "split_part(_first, $sep, 1), split_part(_first, $sep, 2), "
            f"{rules.without_ten_digits('_detail')}, 'row', null, $at, $run_id "
            f"from {CHECKED} where _first is not null", params,
        )
    for line, detail in malformed:
        con.execute("insert into audit.quarantine values ($site, $export_id, $file, $line, null, "
                    "'malformed_row', $detail, 'row', null, $at, $run_id)",
                    {**where, "at": at, "run_id": run_id, "line": line, "detail": detail})
    for instrument, (_, detail) in instruments.items():
        flag = q("_i_" + instrument)
        con.execute(
            "insert into audit.quarantine select $site, $export_id, $file, _line, "
            f"split_part({flag}, $sep, 1), split_part({flag}, $sep, 2), "
            f"{rules.without_ten_digits(detail)}, 'instrument', {lit(instrument)}, $at, $run_id "
            f"from {CHECKED} s where _first is null and {flag} is not null", params,
        )


def _history_select(spec: FileSpec, header: list[str], instruments: dict[str, tuple[str, str]]) -> str:
    """The history row of a judged row (of CHECKED), its lineage aside."""
    # The hash drift is judged by: the contract's columns only (extra columns come and go).
    hashed = [c for c in header if c not in spec.identifiers and (c in spec.required or _known_redcap(c, spec))]
    row_hash = "md5(concat_ws(chr(31), " + ", ".join(f"coalesce({q(c)}, chr(0))" for c in hashed) + "))"
    quarantined = "''" if not instruments else "concat_ws(',', " + ", ".join(
        f"case when {q('_i_' + i)} is not null then {lit(i)} end" for i in instruments) + ")"
    return (f"{', '.join(q(c) for c in header)}, {''.join(d.name + ', ' for d in spec.derived)}_line, "
            "case when _first is null then 'loaded' else 'quarantined' end as _status, "
            "split_part(_first, $sep, 2) as _reason, "
            f"case when _first is null then {quarantined} else '' end as _quarantined_instruments, "
            f"{row_hash} as _row_hash")


def _append_history(con: duckdb.DuckDBPyConnection, spec: FileSpec, judgement: Judgement, batch: BatchFile,
                    at: dt.datetime, rows: str) -> None:
    """Append `rows` (history rows without their lineage) to the file's history, as this batch's."""
    history = f"restricted.{spec.table}_history"
    derived = {d.name: d.type for d in spec.derived}
    columns = {c: "varchar" for c in judgement.header} | {
        "_site": "varchar", "_export_id": "varchar", "_file": "varchar", "_line": "bigint",
        "_loaded_at": "timestamp", "_status": "varchar", "_reason": "varchar",
        "_quarantined_instruments": "varchar", "_row_hash": "varchar", "_line_digest": "uhugeint", **derived,
    }
    _ensure_table(con, history, columns)
    # History rows carry their line; written in any order, on every core (sql.in_any_order).
    with in_any_order(con):
        con.execute(
            f"insert into {history} by name select *, $site as _site, $export_id as _export_id, "
            f"$file as _file, $at as _loaded_at from ({rows})",
            {"site": batch.site, "export_id": batch.export_id, "file": batch.relative, "at": at,
             **({"sep": SEP} if "$sep" in rows else {})},
        )


def _ensure_table(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    schema, name = table.split(".")
    existing = {
        c for (c,) in con.execute(
            "select column_name from information_schema.columns where table_schema = $s and table_name = $t",
            {"s": schema, "t": name}).fetchall()
    }
    if not existing:
        con.execute(f"create table {table} ({', '.join(f'{q(c)} {t}' for c, t in columns.items())})")
        return
    for column, kind in columns.items():
        if column not in existing:
            con.execute(f"alter table {table} add column {q(column)} {kind}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
