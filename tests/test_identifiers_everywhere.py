"""No direct identifier, and never the pseudonym key, in anything the pipeline writes.

The shared story (tests/scenario.py) runs the whole pipeline five times under POD_ENV=production
with a recognisable secret key: two data folders, each with a working database, a published file,
Parquet releases, deliveries, reports, figures, run logs and a Dagster instance (SQLite event logs
with asset metadata, compute logs). Everything in them is scanned:

- for NHS numbers: any ten digits standing alone (spaces allowed) that pass the modulus-11 check
  (identifiers.find_nhs_numbers), and the zone's own NHS numbers wherever they stand;
- for the zone's dates of birth;
- for the key.

The working database's `restricted` schema is the one place identifiers are kept; it is scanned
for the key only. test_pipeline_e2e.py scans the working database's tables of a messy zone; this
scan covers every file.
"""

import contextlib
import csv
import io
import re
import sqlite3
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import scenario
from landing_builder import batch, honos, ingest, meeting, participant, redcap

from pod_pipeline.identifiers import find_nhs_numbers, normalise_nhs_number, pseudonym
from pod_pipeline.settings import DBT_PROJECT_DIR, DEMO_PSEUDONYM_KEY, SAMPLE_LANDING_DIR

# Dagster writes times as Unix timestamps ("1764105600.123"): ten digits, one in eleven of which
# passes the check. A number with a decimal part is no NHS number; the zone's own numbers are
# searched for separately, digits only, so "9434765919.0" would still be found.
DECIMAL = re.compile(r"[0-9]+\.[0-9]+")


@pytest.fixture(scope="module")
def zone_identifiers(story) -> dict[str, set[str]]:
    numbers, births, elsewhere = set(), set(), set()
    for path in sorted(story.landing.rglob("*.csv")):
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
        for row in reader:
            for column, value in row.items():
                if column == "nhs_number" and value:
                    numbers.add(normalise_nhs_number(value))
                elif column == "date_of_birth":
                    births.add(value)
                elif value:
                    elsewhere.add(value)
    assert numbers and births == story.dates_of_birth
    # A date of birth must not also be some other value of the zone (a consent or visit date), or
    # finding it downstream would prove nothing.
    assert not births & elsewhere
    return {"nhs_numbers": numbers, "dates_of_birth": births}


class Scanner:
    def __init__(self, identifiers: dict[str, set[str]]) -> None:
        self.numbers = identifiers["nhs_numbers"]
        self.births = identifiers["dates_of_birth"]
        self.found: list[tuple[str, str]] = []
        self.scanned: dict[str, int] = {}

    def text(self, where: str, text: str, identifiers: bool = True, any_valid_number: bool = True) -> None:
        if scenario.KEY in text:
            self.found.append((where, "the pseudonym key"))
        if not identifiers:
            return
        if any_valid_number and find_nhs_numbers(DECIMAL.sub(" ", text)):
            self.found.append((where, "a valid NHS number"))
        digits = text.replace(" ", "")
        if any(number in digits for number in self.numbers):
            self.found.append((where, "an NHS number of the zone"))
        if any(birth in text for birth in self.births):
            self.found.append((where, "a date of birth of the zone"))

    def cells(self, where: str, rows: Iterator[tuple], identifiers: bool = True) -> None:
        self.text(where, "\n".join("\x1f".join(_text(v) for v in row) for row in rows), identifiers)

    def duckdb_file(self, path: Path, label: str) -> None:
        with duckdb.connect(str(path), read_only=True) as con:
            relations = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "order by all").fetchall()
            for schema, table in relations:
                rows = con.execute(f'select * from "{schema}"."{table}"').fetchall()
                # The restricted schema is where identifiers are kept: only the key may not be.
                self.cells(f"{label}:{schema}.{table}", iter(rows),
                           identifiers=schema != "restricted")
                self.scanned["duckdb tables"] = self.scanned.get("duckdb tables", 0) + 1

    def sqlite_file(self, path: Path, label: str) -> None:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            tables = [t for (t,) in con.execute(
                "select name from sqlite_master where type = 'table'")]
            for table in tables:
                self.cells(f"{label}:{table}", con.execute(f'select * from "{table}"'))
                self.scanned["sqlite tables"] = self.scanned.get("sqlite tables", 0) + 1

    def folder(self, folder: Path) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            label = str(path.relative_to(folder.parent))
            data = path.read_bytes()
            # Whatever the format, the key must not be in the bytes (nor any derivation sites see),
            # nor the zone's own NHS numbers. Any ten digits passing the modulus-11 check are looked
            # for in a database's cells (below), not its raw pages: bit-packed pages hold runs such
            # as ten 0x33 bytes, "3333333333", which passes the check.
            database = path.suffix == ".duckdb" or data.startswith(b"SQLite format 3")
            self.text(label, data.decode("utf-8", errors="replace"),
                      identifiers=path.name != "pod_work.duckdb", any_valid_number=not database)
            if path.suffix == ".duckdb":
                self.duckdb_file(path, label)
            elif path.suffix == ".parquet":
                con = duckdb.connect()
                rows = con.execute(f"select * from read_parquet('{path}')").fetchall()
                self.cells(label, iter(rows))
            elif data.startswith(b"SQLite format 3"):
                self.sqlite_file(path, label)
            kind = path.suffix or path.name
            self.scanned[kind] = self.scanned.get(kind, 0) + 1


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        with contextlib.suppress(zlib.error):
            data = zlib.decompress(data)  # Dagster's snapshots are stored compressed
        return data.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


@pytest.fixture(scope="module")
def scan(story, zone_identifiers) -> Scanner:
    scanner = Scanner(zone_identifiers)
    for data in (story.data, story.clean):
        scanner.folder(data)
    # dbt's compiled SQL, run results and logs are in each warehouse (dbt_target), scanned above.
    log = DBT_PROJECT_DIR / "logs" / "dbt.log"
    if log.exists():  # shared by every dbt run on this machine: the key only
        scanner.text("dbt_project/logs/dbt.log", log.read_text(errors="replace"), identifiers=False)
    return scanner


@pytest.mark.slow
def test_the_scan_reaches_every_kind_of_output(scan) -> None:
    kinds = scan.scanned
    assert kinds[".duckdb"] == 4 and kinds[".parquet"] >= 2 * 15 + 9
    assert kinds[".csv"] >= 2 * 10 and kinds[".html"] >= 4 and kinds[".png"] >= 4
    assert kinds[".log"] >= 4, "the run logs under <warehouse>/logs"
    assert kinds[".db"] >= 3 and kinds["sqlite tables"] > 10, "the Dagster instances"
    assert kinds[".out"] + kinds[".err"] >= 2, "compute logs"
    assert kinds["duckdb tables"] > 100


@pytest.mark.slow
def test_no_nhs_number_date_of_birth_or_key_anywhere_the_pipeline_writes(scan) -> None:
    assert scan.found == []


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    """A scan that cannot find a planted identifier proves nothing."""
    number, birth = "9434765919", "1980-05-01"
    planted = tmp_path / "data"
    (planted / "logs").mkdir(parents=True)
    (planted / "logs" / "a.log").write_text("x 943 476 5919 y")
    (planted / "logs" / "b.log").write_text(f'{{"t": 1764105600.5, "dob": "{birth}"}}')
    (planted / "logs" / "c.log").write_text(f"{number}.0 {scenario.KEY[:-1]}")
    with sqlite3.connect(planted / "runs.db") as con:
        con.execute("create table event_logs (event text)")
        con.execute("insert into event_logs values (?)", [f"metadata: {scenario.KEY}"])
    duckdb.connect(str(planted / "x.duckdb")).execute(
        f"create table t as select '{number}' as n").close()
    scanner = Scanner({"nhs_numbers": {number}, "dates_of_birth": {birth}})
    scanner.folder(planted)
    found = set(scanner.found)
    assert found >= {
        ("data/logs/a.log", "a valid NHS number"), ("data/logs/a.log", "an NHS number of the zone"),
        ("data/logs/b.log", "a date of birth of the zone"),
        ("data/logs/c.log", "an NHS number of the zone"),
        ("data/runs.db:event_logs", "the pseudonym key"), ("data/runs.db", "the pseudonym key"),
        ("data/x.duckdb:main.t", "a valid NHS number"),
        ("data/x.duckdb:main.t", "an NHS number of the zone"),
    }
    # Neither a timestamp nor most of the key is taken for what it is not.
    assert not {("data/logs/b.log", "a valid NHS number"), ("data/logs/c.log", "the pseudonym key"),
                ("data/logs/c.log", "a valid NHS number")} & found


@pytest.mark.slow
def test_pseudonyms_are_hmac_sha256_under_the_configured_key(story) -> None:
    with duckdb.connect(str(story.warehouse / "pod_work.duckdb"), read_only=True) as con:
        pairs = con.execute("select nhs_number, _pseudonym from restricted.register_history "
                            "where nhs_number is not null").fetchall()
        linked = con.execute("select count(*), count(study_id) from raw.honos").fetchall()[0]
    assert len(pairs) > 20
    assert all(stored == pseudonym(number, scenario.KEY) for number, stored in pairs)
    assert all(stored != pseudonym(number, DEMO_PSEUDONYM_KEY) for number, stored in pairs)
    assert linked[0] > 0 and linked[0] == linked[1], "HoNOS ratings link through the same key"


@pytest.mark.parametrize("key", [None, DEMO_PSEUDONYM_KEY, "short-secret"])
def test_production_refuses_to_run_without_a_real_key(tmp_path: Path, key: str | None) -> None:
    env = scenario.subprocess_env(tmp_path / "data", SAMPLE_LANDING_DIR)
    env.pop("POD_PSEUDONYM_KEY")
    if key is not None:
        env["POD_PSEUDONYM_KEY"] = key
    result = subprocess.run([str(scenario.POD), "run"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("pod run: POD_PSEUDONYM_KEY")
    assert "POD_ENV=production" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "nothing was loaded or written"
    if key:
        assert key not in result.stdout + result.stderr


@pytest.mark.slow
def test_the_key_is_not_in_what_the_commands_print(story) -> None:
    assert story.second.returncode == 0
    printed = story.second.stdout + story.second.stderr
    printed += (story.root / "outputs" / "killed.out").read_text()
    assert scenario.KEY not in printed
    assert "PUBLIC DEMO KEY" not in printed


def test_an_nhs_number_typed_into_the_wrong_field_stays_out_of_quarantine_details(
    tmp_path: Path,
) -> None:
    """A detail quotes the offending value; ten digits are withheld from it, whatever the rule."""
    nhs = "943 476 5919"
    root = tmp_path / "lz"
    batch(root, "kmpt", "20250101T060000Z",
          register=[participant("KMPT-0001"), participant("KMPT-0002", withdrawal_type=nhs)],
          redcap_rows=[redcap("KMPT-0001", wemwbs_01=nhs),
                       redcap("KMPT-0001", redcap_repeat_instrument="carer_questionnaire",
                              redcap_repeat_instance=nhs.replace(" ", ""), carer_id="C1")],
          honos_rows=[honos("H1", "", assessment_date=nhs)],
          meetings=[meeting("M1", "KMPT-0001", duration_minutes=nhs)])
    con = ingest(root, tmp_path / "w.duckdb")
    quarantined = con.execute('select file, "column", reason, detail from audit.quarantine '
                              "order by all").fetchall()
    assert {(file, column) for file, column, _, _ in quarantined} >= {
        ("register.csv", "withdrawal_type"), ("redcap_records.csv", "wemwbs_01"),
        ("redcap_records.csv", "redcap_repeat_instance"),
        ("network_meetings.csv", "duration_minutes")}
    assert all("(10 digits withheld)" in detail for file, _, _, detail in quarantined
               if file != "honos.csv"), quarantined
    outside = con.execute("select table_schema, table_name from information_schema.tables "
                          "where table_schema <> 'restricted'").fetchall()
    for schema, table in outside:
        cells = con.execute(f'select * from "{schema}"."{table}"').fetchall()
        assert not find_nhs_numbers(" ".join(_text(v) for row in cells for v in row)), table
