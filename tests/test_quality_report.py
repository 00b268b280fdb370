"""The site completeness reports: one CSV per site of its due assessments not scored."""

import csv
from pathlib import Path

import dagster as dg
import duckdb
from synthetic_quality_warehouse import write_quality_warehouse

from pod_pipeline.quality import quality_assets
from pod_pipeline.quality.reports import SITE_REPORTS_KEY
from pod_pipeline.resources import Warehouse, connect
from pod_pipeline.settings import SEEDS_DIR, Settings

HEADER = ["Study ID", "Timepoint", "Questionnaire", "What is missing", "Visit window closed on",
          "Days overdue"]


def test_each_site_gets_a_sorted_formula_safe_csv_of_its_missing_assessments(pod_env: Path) -> None:
    settings = Settings.from_env()
    con = connect(settings)
    try:
        write_quality_warehouse(con, participants=80)
        # A study id a spreadsheet would run as a formula, and a site with nothing outstanding.
        con.execute("update marts.missing_assessments set participant_id = '=HYPERLINK(1)' "
                    "where participant_id = (select min(participant_id) "
                    "from marts.missing_assessments where site = 's01')")
        con.execute("insert into marts.participants (participant_id, site, arm, consent_date, "
                    "has_nhs_number, has_baseline) values ('S03-000001', 's03', 'POD', "
                    "date '2026-01-01', true, true)")
        expected = dict(con.execute("select site, count(*) from marts.missing_assessments "
                                    "group by site").fetchall())
    finally:
        con.close()

    result = dg.materialize(quality_assets, resources={"warehouse": Warehouse()})
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == SITE_REPORTS_KEY
    metadata = event.materialization.metadata
    with (SEEDS_DIR / "instruments.csv").open(newline="", encoding="utf-8") as handle:
        labels = {row["label"] for row in csv.DictReader(handle)}

    folder = settings.warehouse_dir / "reports" / "sites"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["s01", "s02", "s03"]
    for site in ("s01", "s02", "s03"):
        path = folder / site / "missing_assessments_2026-11-25.csv"
        with path.open(newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle))
        assert header == HEADER
        assert len(rows) == expected.get(site, 0) == metadata[f"{site}_rows"].value
        assert metadata[f"{site}_path"].value == str(path)
        order = {"Baseline": 0, "Month 3": 1, "Month 6": 2}
        keys = [(row[0].lstrip("'"), order[row[1]]) for row in rows]
        assert keys == sorted(keys)
        assert all(not row[0].startswith(("=", "+", "-", "@")) for row in rows)
        assert {row[2] for row in rows} <= labels
    with (folder / "s01" / "missing_assessments_2026-11-25.csv").open(encoding="utf-8") as handle:
        text = handle.read()
    assert "'=HYPERLINK(1)" in text
    assert "POD" not in text and "TAU" not in text  # no arm: site assessors may be blinded
    assert metadata["dagster/row_count"].value == sum(expected.values())


def test_reason_codes_read_as_plain_english(pod_env: Path) -> None:
    settings = Settings.from_env()
    con = connect(settings)
    try:
        write_quality_warehouse(con, participants=40)
        con.execute("update marts.missing_assessments set reason = 'quarantined_at_ingestion', "
                    "is_quarantined = true where site = 's02'")
    finally:
        con.close()
    dg.materialize(quality_assets, resources={"warehouse": Warehouse()})
    path = settings.warehouse_dir / "reports/sites/s02/missing_assessments_2026-11-25.csv"
    with duckdb.connect() as scratch:
        reasons = {r for (r,) in scratch.execute(
            f"select distinct \"What is missing\" from read_csv('{path}')").fetchall()}
    assert reasons == {"Received, but rejected when loaded (see the quarantine report)"}


def test_a_site_file_is_written_again_only_when_its_rows_changed(pod_env: Path) -> None:
    settings = Settings.from_env()
    con = connect(settings)
    try:
        write_quality_warehouse(con, participants=60)
    finally:
        con.close()
    folder = settings.warehouse_dir / "reports" / "sites"

    def materialize() -> tuple[dict[str, int], list[str]]:
        result = dg.materialize(quality_assets, resources={"warehouse": Warehouse()})
        (event,) = result.get_asset_materialization_events()
        written = {site.name: (site / "missing_assessments_2026-11-25.csv").stat().st_mtime_ns
                   for site in folder.iterdir() if site.is_dir()}
        return written, event.materialization.metadata["sites_unchanged"].value

    first, unchanged = materialize()
    assert unchanged == [] and sorted(first) == ["s01", "s02"]
    again, unchanged = materialize()
    assert again == first and unchanged == ["s01", "s02"]

    # One site's rows change, and the other site's file is changed by hand: both are written again.
    con = connect(settings)
    try:
        con.execute("update marts.missing_assessments set days_since_window_closed = days_since_window_closed + 1 "
                    "where site = 's01'")
        expected = con.execute("select count(*) from marts.missing_assessments where site = 's02'").fetchone()[0]
    finally:
        con.close()
    (folder / "s02" / "missing_assessments_2026-11-25.csv").write_text("tampered\n", encoding="utf-8")
    later, unchanged = materialize()
    assert unchanged == [] and later["s01"] != first["s01"]
    with (folder / "s02" / "missing_assessments_2026-11-25.csv").open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == HEADER and len(rows) == expected
    # Nothing changed since: both kept.
    _, unchanged = materialize()
    assert unchanged == ["s01", "s02"]


def test_no_participants_yet_writes_no_site_file(pod_env: Path) -> None:
    settings = Settings.from_env()
    con = connect(settings)
    try:
        write_quality_warehouse(con, participants=10)
        con.execute("delete from marts.missing_assessments; delete from marts.participants")
    finally:
        con.close()
    result = dg.materialize(quality_assets, resources={"warehouse": Warehouse()})
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 0
    assert [p.name for p in (settings.warehouse_dir / "reports" / "sites").iterdir()] == [".written.json"]
