"""The site completeness reports: per site, the due assessments still missing, as a CSV to send."""

import dagster as dg

from pod_pipeline.csvsafe import copy_csv
from pod_pipeline.markdown import markdown_table
from pod_pipeline.resources import Warehouse
from pod_pipeline.seeds import sql as seed
from pod_pipeline.sql import lit

GROUP = "quality"
SITE_REPORTS_KEY = dg.AssetKey(["quality", "site_completeness_reports"])
# What the site should look at, in the words of a trial manager (marts.missing_assessments.reason).
REASON_LABELS = {
    "not_received": "Not received",
    "too_many_items_missing": "Received, but too many questions unanswered to score",
    "quarantined_at_ingestion": "Received, but rejected when loaded (see the quarantine report)",
}


def _report_sql(site_literal: str) -> str:
    """One site's missing assessments with plain headers, by participant, timepoint, instrument.

    No arm: outcome assessors at sites may be blind to allocation.
    """
    reasons = " ".join(f"when '{code}' then '{label}'" for code, label in REASON_LABELS.items())
    return f"""
        select
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
        where m.site = {site_literal}
        order by m.participant_id, m.timepoint_order, m.instrument
    """


@dg.asset(
    key=SITE_REPORTS_KEY, group_name=GROUP, pool="duckdb_writer", kinds={"duckdb", "csv"},
    deps=[dg.AssetKey(["marts", "missing_assessments"]), dg.AssetKey(["marts", "participants"])],
)
def site_completeness_reports(warehouse: Warehouse) -> dg.MaterializeResult:
    """Per site, a CSV of its due assessments not scored: one row per participant × timepoint ×
    questionnaire, at reports/sites/<site>/missing_assessments_<reference date>.csv."""
    settings = warehouse.settings
    reference = settings.reference_date.isoformat()
    written = []
    with warehouse.connect() as con:
        # Every site with participants gets a file: an empty one says nothing is outstanding.
        sites = [site for (site,) in con.execute(
            "select site from marts.participants union select site from marts.missing_assessments "
            "order by site").fetchall()]
        for site in sites:
            folder = settings.warehouse_dir / "reports" / "sites" / site
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"missing_assessments_{reference}.csv"
            # copy_csv reads a table or view by name: the site's rows as a temporary view.
            literal = lit(site)
            con.execute(f"create or replace temp view _pod_site_report as {_report_sql(literal)}")
            rows = copy_csv(con, "_pod_site_report", path)
            written.append((site, rows, str(path)))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(rows for _, rows, _ in written),
        "reference_date": reference,
        "sites": dg.MetadataValue.md(markdown_table(["site", "rows", "path"], written)),
        **{f"{site}_rows": rows for site, rows, _ in written},
        **{f"{site}_path": dg.MetadataValue.path(path) for site, _, path in written},
    })
