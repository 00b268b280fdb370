"""Asset checks of the ingest group: nothing lost, the audit trail intact, schema drift reported."""

import dagster as dg
import duckdb

from pod_pipeline.ingest import ledger, rules
from pod_pipeline.ingest.assets import LEDGER_KEY, RAW_KEYS
from pod_pipeline.ingest.current import current_exports
from pod_pipeline.ingest.specs import REDCAP_PLUMBING, SPECS
from pod_pipeline.metadata import markdown_table
from pod_pipeline.resources import Warehouse


def conservation_failures(con: duckdb.DuckDBPyConnection, file: str) -> list[tuple]:
    """Loaded files whose rows read differ from rows in history plus rows in quarantine."""
    table = SPECS[file].table
    exists = con.execute("select 1 from information_schema.tables where table_schema = 'restricted' "
                         "and table_name = $t", {"t": f"{table}_history"}).fetchall()
    history_rows = (f"select _site as site, _export_id as export_id, count(*) filter "
                    f"(where _status = 'loaded') as loaded from restricted.{table}_history group by all"
                    if exists else "select '' as site, '' as export_id, 0 as loaded where false")
    return con.execute(f"""
        with entries as (
            select site, export_id, rows_read, rows_loaded, rows_quarantined
            from audit.load_ledger where file = $file and status = 'loaded'
        ),
        history as ({history_rows}),
        quarantined as (
            select site, export_id, count(*) as quarantined
            from audit.quarantine where file = $file and scope = 'row' group by all
        )
        select e.site, e.export_id, e.rows_read, coalesce(h.loaded, 0), coalesce(q.quarantined, 0)
        from entries e
        left join history h using (site, export_id)
        left join quarantined q using (site, export_id)
        where e.rows_read <> coalesce(h.loaded, 0) + coalesce(q.quarantined, 0)
           or e.rows_loaded <> coalesce(h.loaded, 0) or e.rows_quarantined <> coalesce(q.quarantined, 0)
        order by all
    """, {"file": file}).fetchall()


def _conservation_check(file: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=RAW_KEYS[file], name="every_row_loaded_or_quarantined", blocking=True,
                    description=f"For every loaded {file}: rows read = rows in history + rows quarantined.")
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect(read_only=False) as con:
            files = con.execute("select count(*) from audit.load_ledger where file = $f and status = 'loaded'",
                                {"f": file}).fetchall()[0][0]
            failures = conservation_failures(con, file) if files else []
        return dg.AssetCheckResult(
            passed=not failures, severity=dg.AssetCheckSeverity.ERROR,
            description=None if not failures else f"{len(failures)} file(s) lost or double-counted rows",
            metadata={"files_checked": files, "failures": dg.MetadataValue.md(markdown_table(
                ["site", "export", "rows read", "loaded", "quarantined"], failures))},
        )

    _check.__name__ = f"conservation_{SPECS[file].table}"
    return _check


conservation_checks = [_conservation_check(file) for file in RAW_KEYS]


@dg.asset_check(asset=LEDGER_KEY, name="ledger_hash_chain_intact", blocking=True,
                description="Every ledger entry still hashes to what was written: nothing altered or removed.")
def ledger_integrity(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        problems = ledger.verify(con)
        entries = con.execute("select count(*) from audit.load_ledger").fetchall()[0][0]
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"entries": entries, "problems": dg.MetadataValue.json(problems)})


def schema_drift(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(site, field, problem) for each current REDCap export against its dictionary and our items."""
    items = {i.field_name: i for i in rules.instrument_items()}
    records, dictionaries = current_exports(con, "redcap_records.csv"), current_exports(con, "redcap_dictionary.csv")
    drift = []
    for site, export_id in sorted(records.items()):
        exported = {c for (c,) in con.execute(
            'select "column" from audit.file_columns where site = $s and export_id = $e '
            "and file = 'redcap_records.csv'", {"s": site, "e": export_id}).fetchall()}
        if site not in dictionaries:
            drift.append((site, "(all)", "no data dictionary has been delivered"))
            continue
        dictionary = {name: (kind, validation_min, validation_max, choices) for name, kind, validation_min,
                      validation_max, choices in con.execute(
            'select "Variable / Field Name", "Field Type", "Text Validation Min", "Text Validation Max", '
            '"Choices, Calculations, OR Slider Labels" from raw.redcap_dictionary where site = $s',
            {"s": site}).fetchall()}
        for column in sorted(exported - set(REDCAP_PLUMBING) - set(dictionary)):
            if not column.endswith("_complete"):
                drift.append((site, column, "exported but not in the data dictionary"))
        for name, item in items.items():
            if item.role == "completion":
                continue
            if name not in dictionary:
                drift.append((site, name, "needed by the instrument definitions but not in the dictionary"))
                continue
            limits = _dictionary_limits(*dictionary[name])
            if item.value_type == "integer" and limits and limits != (item.min_value, item.max_value):
                drift.append((site, name, f"dictionary limits {limits} differ from ours "
                                          f"({item.min_value}, {item.max_value})"))
    return drift


def _dictionary_limits(kind: str | None, low: str | None, high: str | None,
                       choices: str | None) -> tuple[int | None, int | None] | None:
    """The range a dictionary row allows: validation min/max, or the codes of a choice list."""
    if kind in ("radio", "dropdown") and choices:
        codes = [c.split(",", 1)[0].strip() for c in choices.split("|")]
        numbers = [int(c) for c in codes if c.lstrip("-").isdigit()]
        return (min(numbers), max(numbers)) if numbers else None
    if low is None and high is None:
        return None
    as_int = [int(v) if v is not None and v.lstrip("-").isdigit() else None for v in (low, high)]
    return as_int[0], as_int[1]


@dg.asset_check(asset=RAW_KEYS["redcap_records.csv"], name="redcap_schema_drift", blocking=False,
                description="Export fields the dictionary does not know, and fields our instrument "
                            "definitions need that the dictionary lacks or limits differently (warning).")
def redcap_schema_drift(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        drift = schema_drift(con)
    return dg.AssetCheckResult(
        passed=not drift, severity=dg.AssetCheckSeverity.WARN,
        metadata={"drifted_fields": len(drift),
                  "drift": dg.MetadataValue.md(markdown_table(["site", "field", "problem"], drift))},
    )


ingest_checks = [*conservation_checks, ledger_integrity, redcap_schema_drift]
