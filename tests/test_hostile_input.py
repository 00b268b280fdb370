"""Hostile and malformed exports: ingestion never crashes, loses no row, explains every rejection,
and no CSV the pipeline writes can run a formula in a spreadsheet.

The property test mutates a valid synthetic batch (wrong encodings, truncation, dropped, duplicated
and renamed columns, unbalanced quotes, huge fields, control characters, formula-like cells,
negative and enormous numbers, impossible dates, blank lines, odd line ends, a broken manifest) and
runs the real ingestion on it (landing -> ledger -> load -> current snapshots, as
tests/landing_builder.ingest does). Python's csv module is the reference reading: for every file
not rejected whole, the records it reads (blank lines excluded) are exactly the rows loaded plus
the rows quarantined; a file rejected whole is rejected for the reason its bytes call for.
"""

import codecs
import csv
import datetime as dt
import io
import json
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import scenario
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from landing_builder import batch, episode, ingest, participant, quarantine, redcap, write_csv

from pod_devtools.synth import generate
from pod_pipeline import csvsafe
from pod_pipeline.app.runner import execute
from pod_pipeline.identifiers import find_nhs_numbers
from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.batch_manifest import KNOWN_FILES, MANIFEST, seal_batch
from pod_pipeline.ingest.checks import conservation_failures, schema_drift
from pod_pipeline.ingest.reasons import REASONS
from pod_pipeline.ingest.rules import MISSING_CODES, instrument_items
from pod_pipeline.ingest.specs import (
    CARER_INSTRUMENT,
    EPISODE_TYPES,
    ETHNIC_CODES,
    GENDER_CODES,
    HONOS_ITEMS,
    KEY_ELEMENTS,
    SPECS,
    WITHDRAWAL_TYPES,
)
from pod_pipeline.settings import SEEDS_DIR

SITE_BATCH = ("kmpt", "20261120T060000Z")
BOM = codecs.BOM_UTF8
FORMULAS = ("=cmd|' /C calc'!A0", "@SUM(1)", "+1+1", "-2+3", '=HYPERLINK("http://x","y")')
HOSTILE_VALUES = (
    *FORMULAS,
    "-1", "-0", "99999999999999999999999999999", "1e308", "-1e309", "NaN", "inf", "0x1F", " 3 ",
    "3.0", "\u0663", "\uff11", "2024-02-30", "0000-00-00", "9999-12-31", "2024-13-01",
    "31/02/2024", "2024-2-3", "20240101", "-2024-01-01", "2024-01-01T00:00:00", "\x00", "a\x00b",
    "\x1b[31mred", "\x7f", "\x0b\x0c", "tab\there", "line\nbreak", "cr\ronly", "\u2028", "\x85",
    '"', '""', 'quote"inside', "   ", "'", "\\", "NULL", "null", "UNK", "NASK", "\ufeffbom",
    "KMPT-0001", "999 999 9999", "9434765919",
)
CELLS = st.sampled_from(HOSTILE_VALUES) | st.text(max_size=12)
INDEX = st.integers(min_value=0, max_value=10_000)

CELL_MUTATIONS = st.tuples(st.just("set_cell"), INDEX, INDEX, CELLS)
ROW_MUTATIONS = st.one_of(
    st.tuples(st.just("drop_column"), INDEX),
    st.tuples(st.just("duplicate_column"), INDEX),
    st.tuples(st.just("rename_column"), INDEX),
    st.tuples(st.just("duplicate_row"), INDEX),
    st.tuples(st.just("drop_row"), INDEX),
    st.tuples(st.just("extra_field"), INDEX, CELLS),
    st.tuples(st.just("short_row"), INDEX),
    st.tuples(st.just("huge_field"), INDEX, INDEX, st.integers(10_000, 400_000)),
    st.tuples(st.just("blank_rows"), INDEX, st.sampled_from(["", "   ", ","])),
    st.tuples(st.just("header_only")),
)
BYTE_MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), INDEX),
    st.tuples(st.just("insert"), INDEX, st.sampled_from(
        [b'"', b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\r", b"\n", b"\n\n", b",", BOM,
         b"\x1b"])),
    st.tuples(st.just("reencode"), INDEX,
              st.sampled_from(["latin-1", "cp1252", "utf-16", "utf-16-le"])),
    st.tuples(st.just("line_ends"), st.sampled_from(["\r\n", "\r", "\n\r"])),
    st.tuples(st.just("empty")),
)


@dataclass(frozen=True)
class FilePlan:
    """Hostile cells first, then structural faults, then faults in the bytes as written."""

    rows: tuple
    quoting: int = csv.QUOTE_MINIMAL
    terminator: str = "\n"
    bom: bool = False
    bytes_: tuple = ()


FILE_PLANS = st.builds(
    FilePlan,
    # Most of the hostile content is in cells; a file whose bytes are broken is rejected whole,
    # so byte-level faults come in one plan out of three, leaving most files to be read row by row.
    rows=st.tuples(st.lists(CELL_MUTATIONS, max_size=8), st.lists(ROW_MUTATIONS, max_size=2)).map(
        lambda parts: tuple(parts[0] + parts[1])),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    bytes_=st.one_of(st.just(()), st.just(()),
                     st.lists(BYTE_MUTATIONS, min_size=1, max_size=2).map(tuple)),
)
ZONE_PLANS = st.fixed_dictionaries({
    "files": st.dictionaries(st.sampled_from(KNOWN_FILES), FILE_PLANS, min_size=1, max_size=5),
    # Mostly an intact manifest: a broken one rejects the whole batch and reads nothing else.
    "manifest": st.sampled_from(["sealed"] * 9 + ["truncated", "not_json", "wrong_site"]),
})


def mutate_rows(rows: list[list[str]], mutation: tuple) -> list[list[str]]:
    kind, *args = mutation
    rows = [list(r) for r in rows]
    width = len(rows[0]) if rows and rows[0] else 1
    body = len(rows) - 1
    if kind == "set_cell" and body > 0:
        r, c, value = args
        row = rows[1 + r % body]
        if row:
            row[c % len(row)] = value
    elif kind == "drop_column":
        c = args[0] % width
        rows = [[v for i, v in enumerate(r) if i != c] for r in rows]
    elif kind == "duplicate_column":
        c = args[0] % width
        rows = [r[: c + 1] + r[c:] if len(r) > c else r for r in rows]
    elif kind == "rename_column" and rows and rows[0]:
        c = args[0] % width
        rows[0][c] = rows[0][c].upper() if rows[0][c] != rows[0][c].upper() else rows[0][c] + " "
    elif kind == "duplicate_row" and body > 0:
        r = 1 + args[0] % body
        rows.insert(r, list(rows[r]))
    elif kind == "drop_row" and body > 0:
        del rows[1 + args[0] % body]
    elif kind == "extra_field" and body > 0:
        rows[1 + args[0] % body].append(args[1])
    elif kind == "short_row" and body > 0:
        row = rows[1 + args[0] % body]
        del row[len(row) // 2:]
    elif kind == "huge_field" and body > 0:
        r, c, size = args
        row = rows[1 + r % body]
        if row:
            row[c % len(row)] = ("x" * 63 + "\n") * (size // 64)
    elif kind == "blank_rows":
        at = 1 + args[0] % max(body, 1)
        rows[at:at] = [[args[1]] if args[1] else [], []]
    elif kind == "header_only":
        rows = rows[:1]
    return rows


def mutate_bytes(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    if kind == "truncate":
        return data[: args[0] % (len(data) + 1)]
    if kind == "insert":
        at = args[0] % (len(data) + 1)
        return data[:at] + args[1] + data[at:]
    if kind == "reencode":
        text = data.decode("utf-8", errors="replace")
        at = args[0] % (len(text) + 1)
        return (text[:at] + "café – ünïcode" + text[at:]).encode(args[1], errors="replace")
    if kind == "line_ends":
        return data.replace(b"\r\n", b"\n").replace(b"\n", args[0].encode())
    if kind == "empty":
        return b""
    raise ValueError(kind)


def write_file(path: Path, plan: FilePlan) -> None:
    original = path.read_bytes().removeprefix(BOM).decode("utf-8")
    rows = list(csv.reader(io.StringIO(original, newline="")))
    for mutation in plan.rows:
        rows = mutate_rows(rows, mutation)
    buffer = io.StringIO()
    csv.writer(buffer, quoting=plan.quoting, lineterminator=plan.terminator).writerows(rows)
    data = (BOM if plan.bom else b"") + buffer.getvalue().encode("utf-8")
    for mutation in plan.bytes_:
        data = mutate_bytes(data, mutation)
    path.write_bytes(data)


def reference_reading(data: bytes, required: tuple[str, ...]) -> tuple[str, int]:
    """What the contract says becomes of a file: ("loaded", records read) or ("rejected", reason).

    Python's csv module reads the records; blank lines are not records, and a record the module
    cannot read counts as one (malformed) record.
    """
    try:
        text = data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", 0
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return "empty_file", 0
    if header in ([], [""]):
        return "empty_file", 0
    if "" in header:
        return "unnamed_column", 0
    if len({name.encode().lower() for name in header}) != len(header):  # SQL: ASCII case-insensitive
        return "duplicate_column", 0
    if not set(required) <= set(header):
        return "missing_column", 0
    records = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return "loaded", records
        except csv.Error:
            records += 1
            continue
        records += bool(record)


def _date(value: str, uk_allowed: bool = False) -> bool:
    for form, shape in (("%Y-%m-%d", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
                        ("%d/%m/%Y", r"[0-9]{2}/[0-9]{2}/[0-9]{4}")):
        if re.fullmatch(shape, value, re.ASCII):
            try:
                return 1900 <= dt.datetime.strptime(value, form).year <= 2100
            except ValueError:
                return False
        if not uk_allowed:
            return False
    return False


def _whole(value: str, low: int | None, high: int | None) -> bool:
    if not re.fullmatch(r"[0-9]{1,9}", value, re.ASCII):
        return False
    return (low is None or int(value) >= low) and (high is None or int(value) <= high)


def raw_layer_violations(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Values in the raw layer that the contract would not let through (architecture.md, raw layer).

    Written from the contract, not from the pipeline's SQL rules: whole numbers in range or a
    missing-data code, real dates, codes from their lists, and a REDCap row holding values only for
    the instruments it collects (a carer row the carer questionnaire, any other row the rest).
    """
    def rows(table: str) -> list[dict]:
        cursor = con.execute(f"select * from raw.{table}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    bad = []
    # The instruments a carer answers (in the repeating carer questionnaire), read from the seed.
    with (SEEDS_DIR / "instruments.csv").open(newline="", encoding="utf-8") as handle:
        carers_answer = {r["instrument"] for r in csv.DictReader(handle) if r["respondent"] == "carer"}
    for row in rows("redcap_records"):
        carer = row["redcap_repeat_instrument"] == CARER_INSTRUMENT
        for item in instrument_items():
            value = row[item.field_name]
            if value is None:
                continue
            if (item.instrument in carers_answer) != carer:
                bad.append(("redcap_records", row["line_number"], item.field_name, "not collected"))
            elif value in MISSING_CODES:
                continue
            elif not (_whole(value, item.min_value, item.max_value) if item.value_type == "integer"
                      else _date(value) if item.value_type == "date" else True):
                bad.append(("redcap_records", row["line_number"], item.field_name, value))
    checks = {
        "register": {"study_id": lambda v: re.fullmatch(r"[A-Z][A-Z0-9]*-[0-9]{3,6}", v, re.ASCII),
                     "gender": lambda v: v in GENDER_CODES, "arm": lambda v: v in ("POD", "TAU"),
                     "ethnic_category": lambda v: v in ETHNIC_CODES, "consent_date": _date,
                     "withdrawal_date": _date, "withdrawal_type": lambda v: v in WITHDRAWAL_TYPES},
        "honos": {"assessment_date": lambda v: _date(v, uk_allowed=True),
                  **{item: lambda v: v in ("0", "1", "2", "3", "4", "9") for item in HONOS_ITEMS},
                  "honos_08_problem_type": lambda v: v in tuple("ABCDEFGHIJ")},
        "network_meetings": {"meeting_date": _date, "duration_minutes": lambda v: _whole(v, 1, 480),
                             "service_user_present": lambda v: v in ("0", "1"),
                             "peer_support_worker_present": lambda v: v in ("0", "1"),
                             **{c: lambda v: _whole(v, 0, None) for c in (
                                 "family_members_present", "other_network_members_present",
                                 "clinicians_present")},
                             **{k: lambda v: v in ("0", "1", "2") for k in KEY_ELEMENTS}},
        "acute_care": {"episode_type": lambda v: v in EPISODE_TYPES,
                       "start_date": lambda v: _date(v, uk_allowed=True),
                       "end_date": lambda v: _date(v, uk_allowed=True), "detained": lambda v: v in ("0", "1")},
    }
    for table, columns in checks.items():
        for row in rows(table):
            bad += [(table, row["line_number"], column, row[column])
                    for column, ok in columns.items()
                    if row[column] is not None and not ok(row[column])]
        required = {"register": ("study_id", "consent_date", "gender", "arm"),
                    "honos": ("assessment_id", "study_id", "assessment_date"),
                    "network_meetings": ("meeting_id", "study_id", "meeting_date"),
                    "acute_care": ("episode_id", "study_id", "episode_type", "start_date")}[table]
        bad += [(table, row["line_number"], column, None)
                for row in rows(table) for column in required if row[column] is None]
    return bad


@pytest.fixture(scope="module")
def valid_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid synthetic batch of one site: every file of the contract, a few rows each."""
    zone = tmp_path_factory.mktemp("valid") / "landing"
    generate(zone, sites=1, participants_per_site=6, seed=3, batches=1, messy=False, preset=None)
    (folder,) = [p for p in zone.glob("*/*") if p.is_dir()]
    assert (folder.parent.name, folder.name) == SITE_BATCH
    add_acute_care(folder)
    return folder


def add_acute_care(folder: Path) -> None:
    """The synthetic generator writes no acute_care.csv yet: a few valid episodes of the batch's
    registered NHS numbers, in both date formats, one open, so every known file is mutated."""
    if (folder / "acute_care.csv").exists():
        return
    with (folder / "register.csv").open(encoding="utf-8-sig", newline="") as handle:
        numbers = [row["nhs_number"] for row in csv.DictReader(handle) if row["nhs_number"]]
    rows = [episode(f"EP{i}", number, "2024-03-10" if i % 2 else "10/03/2024", "" if i % 3 == 0 else "2024-03-20",
                    EPISODE_TYPES[i % 2]) for i, number in enumerate(numbers)]
    write_csv(folder / "acute_care.csv", list(SPECS["acute_care.csv"].required), rows)


def build_zone(valid: Path, root: Path, plan: dict) -> dict[str, bytes]:
    folder = root / SITE_BATCH[0] / SITE_BATCH[1]
    shutil.copytree(valid, folder)
    for file, file_plan in plan["files"].items():
        write_file(folder / file, file_plan)
    seal_batch(folder)
    manifest = folder / MANIFEST
    if plan["manifest"] == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:40])
    elif plan["manifest"] == "not_json":
        manifest.write_bytes(b"\xff\xfe{not json")
    elif plan["manifest"] == "wrong_site":
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"site": "other"}))
    return {file: (folder / file).read_bytes() for file in KNOWN_FILES}


def assert_every_row_accounted_for(con: duckdb.DuckDBPyConnection, files: dict[str, bytes],
                                   manifest: str) -> None:
    quarantined = con.execute("select file, reason, scope from audit.quarantine").fetchall()
    unknown = {reason for _, reason, _ in quarantined} - set(REASONS)
    assert not unknown, f"quarantine reasons outside REASONS: {unknown}"
    assert {scope for _, _, scope in quarantined} <= {"batch", "file", "row", "instrument"}
    details = [d for (d,) in con.execute("select detail from audit.quarantine").fetchall() if d]
    assert not [d for d in details if find_nhs_numbers(d)], "an NHS number in a quarantine detail"
    assert ledger.verify(con) == []
    entries = {file: (status, rows_read, rows_loaded, rows_quarantined, error)
               for file, status, rows_read, rows_loaded, rows_quarantined, error in con.execute(
                   "select file, status, rows_read, rows_loaded, rows_quarantined, error "
                   "from audit.load_ledger where file <> $m", {"m": MANIFEST}).fetchall()}
    if manifest != "sealed":
        assert entries == {} and [r for _, r, s in quarantined if s == "batch"] == [
            "manifest_mismatch" if manifest == "wrong_site" else "manifest_invalid"]
        return
    assert set(entries) == set(KNOWN_FILES), "every file of the batch has exactly one ledger entry"
    for file, data in files.items():
        outcome, records = reference_reading(data, SPECS[file].required)
        status, rows_read, loaded, held, error = entries[file]
        if outcome != "loaded":
            assert (status, error.split(":")[0]) == ("rejected", outcome), (file, error)
            assert (file, outcome, "file") in quarantined
            event(f"file rejected: {outcome}")
            continue
        assert status == "loaded", (file, error)
        event(f"{file}: {'some' if held else 'no'} rows quarantined")
        assert rows_read == records, f"{file}: read {rows_read} rows, Python's csv {records}"
        assert loaded + held == rows_read, file
        assert conservation_failures(con, file) == [], file


# No shrinking: it can take minutes on this test; the failing plan is printed as drawn.
@settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(plan=ZONE_PLANS)
# Beyond the csv module's field limit (16 MiB): one malformed record, not a crash.
@example(plan={"files": {"honos.csv": FilePlan((("huge_field", 0, 3, 17 << 20),))},
               "manifest": "sealed"})
# A NUL inside a quoted field, and an unbalanced quote.
@example(plan={"files": {"network_meetings.csv": FilePlan(
    (("set_cell", 1, 0, "a\x00b"),), csv.QUOTE_ALL, "\r\n", True, (("insert", 900, b'"'),))},
    "manifest": "sealed"})
# Values in fields of an instrument the row does not collect: "UNK" in a service-use field of a
# carer row (row 4), junk in a carer field of a participant row (row 0). Both once reached the raw
# layer unchecked and broke the dbt build.
@example(plan={"files": {"redcap_records.csv": FilePlan(
    (("set_cell", 4, 44, "UNK"), ("set_cell", 0, 92, "\x1b[31mred")))}, "manifest": "sealed"})
# The header cut just after the opening quote of its 8th name (QUOTE_ALL, byte 90): a column
# with no name is the reason the file is rejected for, though required columns are missing too
# (hypothesis found such a cut in a clean clone's run).
@example(plan={"files": {"register.csv": FilePlan((), csv.QUOTE_ALL, "\r\n", True, (("truncate", 90),))},
               "manifest": "sealed"})
def test_mutated_exports_are_loaded_or_quarantined_never_lost(valid_batch: Path,
                                                              plan: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = build_zone(valid_batch, root / "landing", plan)
        con = ingest(root / "landing", root / "work.duckdb")
        try:
            assert_every_row_accounted_for(con, files, plan["manifest"])
            assert raw_layer_violations(con) == []
            schema_drift(con)  # the drift check reads what was loaded without failing on it
            for file in KNOWN_FILES:
                columns = {c for (c,) in con.execute(
                    "select column_name from information_schema.columns where table_schema = 'raw' "
                    "and table_name = $t", {"t": SPECS[file].table}).fetchall()}
                assert not columns & {"nhs_number", "date_of_birth"}
        finally:
            con.close()


def test_a_value_in_a_field_the_row_does_not_collect_is_quarantined(tmp_path: Path) -> None:
    """It once reached the raw layer unchecked: junk broke staging's casts, and a valid "UNK" in
    a carer row's service-use field made a second service-use response (a duplicate key)."""
    rows = [redcap("KMPT-0001", cws_sp_07="\x1b[31mred", visit_date="2024-03-02"),
            redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire",
                   redcap_repeat_instance="1", carer_id="C1", su_gp_visits="UNK"),
            redcap("KMPT-0001", "month_3_arm_1", redcap_repeat_instrument="carer_questionnaire",
                   redcap_repeat_instance="1", carer_id="C1", cws_wb_01="3")]
    batch(tmp_path / "lz", "kmpt", "20250101T060000Z", register=[participant("KMPT-0001")],
          redcap_rows=rows)
    con = ingest(tmp_path / "lz", tmp_path / "w.duckdb")
    assert [q[:5] for q in quarantine(con) if q[0] == "redcap_records.csv"] == [
        ("redcap_records.csv", 2, "cws_sp_07", "inconsistent_value", "row"),
        ("redcap_records.csv", 3, "su_gp_visits", "inconsistent_value", "row")]
    assert con.execute("select line_number from raw.redcap_records").fetchall() == [(4,)]
    assert raw_layer_violations(con) == []


def heavy_plan(rng: random.Random) -> FilePlan:
    """Many hostile cells and a few structural faults in one file; sometimes a byte-level fault."""
    rows = [("set_cell", rng.randrange(10_000), rng.randrange(10_000), rng.choice(HOSTILE_VALUES))
            for _ in range(15)]
    rows += [(kind, rng.randrange(10_000)) for kind in rng.sample(
        ["duplicate_row", "drop_row", "short_row", "duplicate_row"], 2)]
    rows += [("extra_field", rng.randrange(10_000), "=1+1"),
             ("blank_rows", rng.randrange(10_000), "")]
    if rng.random() < 0.3:
        rows.append(("huge_field", rng.randrange(10_000), rng.randrange(10_000), 200_000))
    faults = [("insert", rng.randrange(10_000), b'"'), ("insert", rng.randrange(10_000), b"\x00")]
    return FilePlan(tuple(rows), rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
                    rng.choice(["\n", "\r\n"]), rng.random() < 0.5,
                    tuple(rng.sample(faults, rng.randrange(3))))


@pytest.mark.slow
def test_whole_pipeline_survives_a_heavily_mutated_zone(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file of a two-site zone mutated at once, then the whole refresh job.

    One batch per site: with two, the mutations of the newer one would (rightly) block as export
    drift before dbt, and what this test is after is whether hostile values that pass ingestion
    also pass the dbt build. A blocking check may still stop the run (too little is left to be
    complete); nothing may fail any other way.
    """
    zone = tmp_path / "landing"
    generate(zone, sites=2, participants_per_site=30, seed=17, batches=1, messy=False, preset=None)
    rng = random.Random(8)
    batches = sorted(p for p in zone.glob("*/*") if p.is_dir())
    for folder in batches:
        add_acute_care(folder)
        for file in KNOWN_FILES:
            write_file(folder / file, heavy_plan(rng))
    # File-level faults the property test also draws, here once each.
    honos = batches[0] / "honos.csv"
    honos.write_bytes(mutate_bytes(honos.read_bytes(), ("reencode", 500, "cp1252")))
    write_file(batches[1] / "network_meetings.csv", FilePlan((("drop_column", 2),)))
    for folder in batches:
        seal_batch(folder)
    data = tmp_path / "data"
    monkeypatch.setenv("POD_LANDING_DIR", str(zone))
    monkeypatch.setenv("POD_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    monkeypatch.setenv("POD_REFERENCE_DATE", "2026-11-25")
    for name in ("POD_WAREHOUSE_DIR", "POD_PSEUDONYM_KEY", "POD_ENV"):
        monkeypatch.delenv(name, raising=False)

    summary = execute(quiet=True)

    assert all("blocking asset check failed" in error for error in summary.errors), summary.errors
    assert "pod_dbt_models" not in summary.failed_steps + summary.skipped_steps
    assert [c for c in summary.checks
            if c[0].startswith("raw/") and not c[2] and c[3] == "ERROR"] == []
    with duckdb.connect(str(data / "warehouse" / "pod_work.duckdb"), read_only=True) as con:
        quarantined = dict(con.execute(
            "select scope, count(*) from audit.quarantine group by all").fetchall())
        assert raw_layer_violations(con) == []
        assert con.execute("select count(*) from marts.participants").fetchall()[0][0] > 20
        details = con.execute("select string_agg(detail, ' ') from marts.quarantine").fetchall()
        assert "(10 digits withheld)" in details[0][0] and not find_nhs_numbers(details[0][0])
    assert quarantined["row"] > 30 and quarantined["file"] == 2, quarantined


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.slow
def test_no_csv_the_pipeline_writes_can_run_a_formula(story) -> None:
    """The story planted `=cmd|' /C calc'!A0` (carer_id, rater_role) and `@SUM(1)` (cluster_id)."""
    written = sorted(p for data in (story.data, story.clean) for p in data.rglob("*.csv"))
    deliveries = [p for p in written if "deliveries" in p.parts]
    site_reports = [p for p in written if "sites" in p.relative_to(story.root).parts]
    # dbt's copies of the project's own seeds, in each warehouse's dbt target folder (no site data).
    seeds = {p.name for p in SEEDS_DIR.glob("*.csv")}
    dbt_seed_copies = [p for p in written if "dbt_target" in p.parts and p.name in seeds]
    assert len(deliveries) == 2 * 11 and set(written) == set(deliveries + site_reports + dbt_seed_copies), \
        written
    # Site reports (<warehouse>/reports/sites/) are new from the quality team: read when present.
    unsafe = []
    for path in written:
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.reader(handle), start=1):
                unsafe += [(path.name, line, cell) for cell in row
                           if cell.startswith(csvsafe.TRIGGERS) and not _is_number(cell)]
    assert unsafe == []
    latest = story.deliveries[-1]
    assert "'" + scenario.CLUSTER_FORMULA in (latest / "participants.csv").read_text()
    assert "'" + scenario.CLUSTER_FORMULA in (latest / "cost_effectiveness.csv").read_text()
    assert "'" + scenario.CALC in (latest / "carer_timepoints.csv").read_text()
