"""Dagster assets of the ingest group: landing batches in, raw tables and audit trail out."""

import dagster as dg

from pod_pipeline.ingest import current, landing, ledger, pipeline
from pod_pipeline.ingest.fingerprint import fingerprint, last_published_fingerprint
from pod_pipeline.ingest.specs import SPECS
from pod_pipeline.markdown import markdown_table
from pod_pipeline.resources import Warehouse

GROUP = "ingestion"
LANDING_KEY = dg.AssetKey(["ingest", "landing_batches"])
RAW_KEYS = {file: dg.AssetKey(["raw", spec.table]) for file, spec in SPECS.items()}
QUARANTINE_KEY = dg.AssetKey(["raw", "quarantine"])
LEDGER_KEY = dg.AssetKey(["raw", "load_ledger"])


class LandingConfig(dg.Config):
    force: bool = False  # rebuild everything even when nothing new has landed


LANDING_OP = "ingest__landing_batches"  # run config is keyed by op name: ["ingest", "landing_batches"]
# The run config of a run that rebuilds everything even when nothing new has landed: every row of
# every dbt model too, not only the sites whose inputs changed (transform/partitions.py), and every
# cohort-level analysis, even one whose inputs are those of its last result (analysis/memo.py).
FULL_REFRESH = {"ops": {LANDING_OP: {"config": {"force": True}},
                        "pod_dbt_models": {"config": {"full_refresh": True}},
                        **{op: {"config": {"recompute": True}}
                           for op in ("marts__outcome_summary", "cost_effectiveness", "relapse_summary")}}}


@dg.asset(key=LANDING_KEY, group_name=GROUP, output_required=False, pool="duckdb_writer")
def landing_batches(context: dg.AssetExecutionContext, config: LandingConfig, warehouse: Warehouse):
    """Sealed export batches, each verified against its manifest and recorded once in the ledger (one row per batch)."""
    settings = warehouse.settings
    with warehouse.connect() as con:
        found, report = pipeline.record_landing(con, settings.landing_dir, context.run_id)
        pending = sum(len(landing.pending_files(con, settings.landing_dir, f)) for f in SPECS)
        gone = landing.gone_batches(con, settings.landing_dir)
        state = fingerprint(con, settings)
        unchanged = state == last_published_fingerprint(con)
        batches = con.execute(
            "select site, export_id, status, error from audit.load_ledger where file = 'manifest.json' "
            "order by site, export_id, entry_id"
        ).fetchall()
    for warning in report.warnings + found.ignored:
        context.log.warning(warning)
    for batch in gone:
        context.log.warning(f"batch {batch} is in the load ledger but no longer in the landing zone: what "
                            "was loaded from it stays; a file of it not loaded yet cannot be")
    for batch, error in report.rejected:
        context.log.error(f"batch {batch} rejected: {error}")
    metadata = {
        "batches_sealed": len(found.sealed),
        "batches_new": len(report.new_accepted),
        "batches_rejected_now": len(report.rejected),
        "batches_unsealed_waiting": dg.MetadataValue.json([str(p.relative_to(settings.landing_dir))
                                                           for p in found.unsealed]),
        "batches_gone_from_landing_zone": dg.MetadataValue.json(gone),
        "files_pending": pending,
        "landing_dir": dg.MetadataValue.path(str(settings.landing_dir)),
        "reference_date": settings.reference_date.isoformat(),
        "batches": dg.MetadataValue.md(markdown_table(["site", "export", "status", "error"], batches)),
    }
    if settings.uses_demo_key:
        context.log.warning(settings.demo_key_warning())
    if not config.force and pending == 0 and unchanged:
        context.log.info("Nothing new since the last published run: skipping every downstream asset.")
        return
    yield dg.Output(None, metadata=metadata)


def _raw_asset(file: str, deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    spec = SPECS[file]

    @dg.asset(key=RAW_KEYS[file], group_name=GROUP, deps=deps, pool="duckdb_writer",
              description=f"Current snapshot of {file}: one row per accepted row of each site's newest "
                          f"batch that delivered it (and, where it refers to participants, that the "
                          f"site's current register knows), without direct identifiers. History and "
                          f"quarantine keep every row of every batch.")
    def _asset(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        settings = warehouse.settings
        with warehouse.connect() as con:
            done = pipeline.ingest_file(con, settings.landing_dir, file, settings.pseudonym_key, context.run_id)
            outcomes, rows = done.outcomes, done.rows
            by_reason = con.execute(
                "select reason, count(*) from audit.quarantine where file = $f and run_id = $r "
                "group by reason order by 2 desc", {"f": file, "r": context.run_id}).fetchall()
            cross_file = con.execute(
                "select reason, count(*) from audit.cross_file_quarantine where file = $f "
                "group by reason order by 2 desc", {"f": file}).fetchall()
            # Counts only: no participant's rows in metadata, where no erasure could reach them.
            preview = con.execute(f"select site, export_id, count(*), min(line_number), max(line_number) "
                                  f"from raw.{spec.table} group by all order by all").fetchall()
        for outcome in outcomes:
            if outcome.status == "rejected":
                context.log.error(f"{outcome.file.relative} rejected: {outcome.error}")
            if outcome.extra_columns:
                context.log.warning(f"{outcome.file.relative}: extra columns kept in the raw layer only: "
                                    f"{', '.join(outcome.extra_columns)}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "files_loaded": sum(o.status == "loaded" for o in outcomes),
            "files_rejected": sum(o.status == "rejected" for o in outcomes),
            # Loaded by copying the verdicts of an earlier export of the same bytes, judged alike.
            "files_repeated": sum(o.copied_from is not None for o in outcomes),
            "rows_read": sum(o.rows_read for o in outcomes),
            "rows_loaded": sum(o.rows_loaded for o in outcomes),
            "rows_quarantined": sum(o.rows_quarantined for o in outcomes),
            "instruments_quarantined": sum(o.instruments_quarantined for o in outcomes),
            "quarantined_by_reason": dg.MetadataValue.json(dict(by_reason)),
            # Re-judged on every run against the current register, so a count for now, not for this run.
            "cross_file_quarantine_now": dg.MetadataValue.json(dict(cross_file)),
            "read_methods": dg.MetadataValue.json({o.file.relative: o.method for o in outcomes if o.method}),
            "current_snapshot": dg.MetadataValue.md(markdown_table(
                ["site", "export", "rows", "first line", "last line"], preview)),
        })

    _asset.__name__ = f"raw_{spec.table}"
    return _asset


raw_assets = [_raw_asset(file, [RAW_KEYS[read] for read in spec.reads] or [LANDING_KEY])
              for file, spec in SPECS.items()]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(QUARANTINE_KEY, group_name=GROUP, deps=list(RAW_KEYS.values()),
                     description="One row per rejected batch, file, row or REDCap instrument, with file, "
                                 "line, column and reason; never an identifier's value."),
        dg.AssetSpec(LEDGER_KEY, group_name=GROUP, deps=list(RAW_KEYS.values()),
                     description="The load ledger: one row per batch and file the pipeline saw, append-only "
                                 "and hash-chained."),
    ],
    pool="duckdb_writer",
)
def audit_trail(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """The quarantine and the load ledger as dbt sources (one row per quarantined unit / ledger entry)."""
    with warehouse.connect() as con:
        current.refresh_audit_views(con)
        reasons = con.execute(
            "select reason, count(*) from raw.quarantine where is_current_export group by 1 order by 2 desc"
        ).fetchall()
        quarantined = con.execute("select count(*) from raw.quarantine").fetchall()[0][0]
        entries = con.execute("select count(*) from raw.load_ledger").fetchall()[0][0]
        head = ledger.head(con)
    yield dg.MaterializeResult(asset_key=QUARANTINE_KEY, metadata={
        "dagster/row_count": quarantined,
        "current_by_reason": dg.MetadataValue.md(markdown_table(["reason", "rows"], reasons)),
    })
    yield dg.MaterializeResult(asset_key=LEDGER_KEY, metadata={
        "dagster/row_count": entries, "chain_head": head})
