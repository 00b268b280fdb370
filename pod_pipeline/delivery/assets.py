"""Dagster assets of the delivery group: the published marts and the trial's deliveries."""

import dagster as dg
import duckdb

from pod_pipeline.analysis import analysis_assets
from pod_pipeline.delivery import deliveries, publication, serving
from pod_pipeline.delivery.dictionary import dbt_docs, model_descriptions
from pod_pipeline.ingest.fingerprint import record_publication
from pod_pipeline.markdown import markdown_table
from pod_pipeline.resources import Warehouse
from pod_pipeline.settings import Settings
from pod_pipeline.transform.assets import ensure_dbt_manifest, pod_dbt_models

GROUP = "delivery"
PUBLISHED_KEY = dg.AssetKey(["delivery", "published_marts"])
DELIVERY_KEY = dg.AssetKey(["delivery", "trial_delivery"])
# Every mart: a blocking check that fails on any of them (or upstream) skips the publication.
MART_KEYS = sorted(
    {spec.key for spec in pod_dbt_models.specs if spec.group_name == "dbt_marts"}
    | {key for assets in analysis_assets for key in assets.keys if key.path[0] == "marts"},
    key=lambda key: key.path,
)


def postgres_target(settings: Settings) -> serving.Target | None:
    """Where the marts are also served (POD_PUBLISH_POSTGRES_URL), with the docs for its comments:
    dbt's for the dbt marts, the asset descriptions for those the analysis computes."""
    if not settings.publish_postgres_url:
        return None
    manifest = ensure_dbt_manifest()
    tables = {spec.key.path[1]: spec.description for assets in analysis_assets for spec in assets.specs
              if spec.key.path[0] == "marts" and spec.description}
    return serving.Target(settings.publish_postgres_url, table_docs=tables | model_descriptions(manifest),
                          column_docs=dbt_docs(manifest))


def _served_metadata(served: serving.Served | None) -> dict:
    if served is None:
        return {}
    return {
        "postgres": dg.MetadataValue.text(served.url),
        "postgres_sites": dg.MetadataValue.text(", ".join(served.sites)),
        "postgres_waited_for_readers_s": round(served.waited_seconds, 1),
        "postgres_columns_without_comment": served.columns_without_comment,
    }


class DeliveryConfig(dg.Config):
    new_folder: bool = False  # deliver again on a day that has a delivery, into <date>_2, _3, …


@dg.asset(
    key=PUBLISHED_KEY,
    group_name=GROUP,
    deps=MART_KEYS,
    pool="duckdb_writer",
    kinds={"duckdb", "parquet"},
)
def published_marts(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Analysts' copy of every mart: pod_marts.duckdb, marts/*.parquet (and PostgreSQL), swapped in atomically."""
    settings = warehouse.settings
    try:
        with warehouse.connect() as con:
            done = publication.publish(con, settings.published_db, context.run_id,
                                       postgres=postgres_target(settings))
            fingerprint = record_publication(con, settings, context.run_id)
    except serving.ServingError as exc:
        raise dg.Failure(description=str(exc)) from exc
    return dg.MaterializeResult(
        metadata={
            "tables": len(done.rows),
            "rows": sum(done.rows.values()),
            "path": dg.MetadataValue.path(str(done.database)),
            "parquet": dg.MetadataValue.path(str(done.parquet_dir)),
            "release": dg.MetadataValue.path(str(done.release)),
            "published_at": dg.MetadataValue.timestamp(done.published_at),
            "fingerprint": fingerprint,
            "rows_by_table": dg.MetadataValue.md(
                markdown_table(["table", "rows"], sorted(done.rows.items()))
            ),
            # Marts whose rows were replaced site by site (the others were written whole).
            "sites_replaced_by_table": dg.MetadataValue.json(done.by_site),
            # Parquet files linked unchanged from the previous release (the others were written).
            "parquet_files_kept": dg.MetadataValue.json(done.parquet_kept),
            "query": dg.MetadataValue.text(f"duckdb -readonly {done.database}"),
            **_served_metadata(done.served),
        }
    )


@dg.asset(
    key=DELIVERY_KEY,
    group_name=GROUP,
    deps=[PUBLISHED_KEY],
    kinds={"csv", "parquet"},
    # Reads the working database, which DuckDB locks against other processes while one writes.
    pool="duckdb_writer",
)
def trial_delivery(
    context: dg.AssetExecutionContext, config: DeliveryConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Trial delivery: a dated folder of published marts (CSV, Parquet), dictionary and manifest."""
    settings = warehouse.settings
    try:
        folder = deliveries.delivery_folder(
            settings.warehouse_dir / "deliveries", deliveries.delivery_day(), config.new_folder
        )
        with warehouse.connect(read_only=True) as con:
            erased = deliveries.erased_participants(con)
            source = deliveries.provenance(con, settings, context.run_id, len(erased))
        if not settings.published_db.exists():
            raise deliveries.DeliveryRefused(
                f"{settings.published_db} does not exist: nothing to deliver"
            )
        docs = dbt_docs(ensure_dbt_manifest())
        with duckdb.connect(str(settings.published_db), read_only=True) as published:
            manifest = deliveries.write_delivery(published, folder, source, docs, erased)
    except deliveries.DeliveryRefused as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    tables = manifest["tables"]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "files": len(manifest["files"]) + 1,
            "rows": sum(entry["rows"] for entry in tables.values()),
            "rows_by_table": dg.MetadataValue.md(
                markdown_table(
                    ["table", "rows", "columns"],
                    [(t, e["rows"], e["columns"]) for t, e in tables.items()],
                )
            ),
            "landing_batches": len(manifest["landing_batches"]),
            "participants_erased_all_data": manifest["participants_erased_all_data"],
            "columns_without_description": sum(
                e["columns_without_description"] for e in tables.values()
            ),
            "value_set": manifest["value_set"],
            "price_year": manifest["price_year"],
        }
    )


delivery_assets = [published_marts, trial_delivery]
