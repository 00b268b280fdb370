"""The site completeness reports: per site, the due assessments still missing, as a CSV to send.

A site's file is written again only when what it would hold changed: each report's rows are
digested by site in one pass (count and order-free digest of every column), and a file whose
site's rows, path and code (this module and csvsafe.py) equal those recorded when it was written,
and which is still as written (size and modification time), is kept. The record is
`reports/sites/.written.json`. A new batch at one site rewrites that site's file; a new reference
date names new files, so every site's is written.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb

from pod_pipeline import csvsafe
from pod_pipeline.csvsafe import copy_csv
from pod_pipeline.markdown import markdown_table
from pod_pipeline.resources import Warehouse
from pod_pipeline.seeds import sql as seed
from pod_pipeline.sql import lit, rows_digest

GROUP = "quality"
SITE_REPORTS_KEY = dg.AssetKey(["quality", "site_completeness_reports"])
# What the site should look at, in the words of a trial manager (marts.missing_assessments.reason).
REASON_LABELS = {
    "not_received": "Not received",
    "too_many_items_missing": "Received, but too many questions unanswered to score",
    "quarantined_at_ingestion": "Received, but rejected when loaded (see the quarantine report)",
}


# What the files are written by: a change to either writes every file again.
CODE = hashlib.sha256(Path(__file__).read_bytes() + Path(str(csvsafe.__file__)).read_bytes()).hexdigest()
WRITTEN = ".written.json"
COLUMNS = ["Study ID", "Timepoint", "Questionnaire", "What is missing", "Visit window closed on",
           "Days overdue"]


def _report_sql(site_literal: str | None) -> str:
    """One site's missing assessments with plain headers, by participant, timepoint, instrument
    (`site_literal` None: every site's, with their site first and in no order).

    No arm: outcome assessors at sites may be blind to allocation.
    """
    reasons = " ".join(f"when '{code}' then '{label}'" for code, label in REASON_LABELS.items())
    if site_literal is None:
        first, where, order = "m.site as site,", "", ""
    else:
        first, where = "", f"where m.site = {site_literal}"
        order = "order by m.participant_id, m.timepoint_order, m.instrument"
    return f"""
        select {first}
            m.participant_id as "Study ID",
            case m.timepoint when 'baseline' then 'Baseline'
                else 'Month ' || replace(m.timepoint, 'month_', '') end as "Timepoint",
            coalesce(i.label, m.instrument) as "Questionnaire",
            case m.reason {reasons} else m.reason end as "What is missing",
            m.window_closed_date as "Visit window closed on",
            m.days_since_window_closed as "Days overdue"
        from marts.missing_assessments as m
        left join {seed('instruments')} as i
            on m.instrument = i.instrument
        {where}
        {order}
    """


def _digests_by_site(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Each site's report rows: [count, digest] (a site without rows has none)."""
    rows = con.execute(f"select site, {rows_digest(COLUMNS)} from ({_report_sql(None)}) group by site").fetchall()
    return {site: [n, str(digest)] for site, n, digest in rows}


def _written(folder: Path) -> dict:
    try:
        record = json.loads((folder / WRITTEN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _still_written(path: Path, recorded: object, wanted: dict) -> bool:
    """Whether the file at `path` was written from the rows `wanted` describes and is as written."""
    if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in wanted.items()):
        return False
    try:
        stat = path.stat()
    except OSError:
        return False
    return [stat.st_size, stat.st_mtime_ns] == recorded.get("file")


@dg.asset(
    key=SITE_REPORTS_KEY, group_name=GROUP, pool="duckdb_writer", kinds={"duckdb", "csv"},
    deps=[dg.AssetKey(["marts", "missing_assessments"]), dg.AssetKey(["marts", "participants"])],
)
def site_completeness_reports(warehouse: Warehouse) -> dg.MaterializeResult:
    """Per site, a CSV of its due assessments not scored: one row per participant × timepoint ×
    questionnaire, at reports/sites/<site>/missing_assessments_<reference date>.csv."""
    settings = warehouse.settings
    reference = settings.reference_date.isoformat()
    written, kept = [], []
    reports = settings.warehouse_dir / "reports" / "sites"
    before, record = _written(reports), {}
    with warehouse.connect() as con:
        # Every site with participants gets a file: an empty one says nothing is outstanding.
        sites = [site for (site,) in con.execute(
            "select site from marts.participants union select site from marts.missing_assessments "
            "order by site").fetchall()]
        digests = _digests_by_site(con)
        for site in sites:
            folder = reports / site
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"missing_assessments_{reference}.csv"
            wanted = {"path": str(path), "rows": digests.get(site, [0, "0"]), "code": CODE}
            if _still_written(path, before.get(site), wanted):
                rows = wanted["rows"][0]
                kept.append(site)
            else:
                # copy_csv reads a table or view by name: the site's rows as a temporary view.
                con.execute(f"create or replace temp view _pod_site_report as {_report_sql(lit(site))}")
                rows = copy_csv(con, "_pod_site_report", path)
            stat = path.stat()
            record[site] = {**wanted, "file": [stat.st_size, stat.st_mtime_ns]}
            written.append((site, rows, str(path)))
    reports.mkdir(parents=True, exist_ok=True)  # no site yet: the record says so
    (reports / WRITTEN).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(rows for _, rows, _ in written),
        "reference_date": reference,
        # Sites whose file already held their rows as they are now, kept as it was.
        "sites_unchanged": dg.MetadataValue.json(kept),
        "sites": dg.MetadataValue.md(markdown_table(["site", "rows", "path"], written)),
        **{f"{site}_rows": rows for site, rows, _ in written},
        **{f"{site}_path": dg.MetadataValue.path(path) for site, _, path in written},
    })
