"""dbt's events reach Dagster while dbt runs, each table's with its row count (macros/row_counts.sql)."""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pod_pipeline.quality.checks import DBT_MARTS
from pod_pipeline.transform.assets import RowCounts

MANIFEST = {"nodes": {
    "model.pod.a_table": {"schema": "marts", "alias": "a_table", "config": {"materialized": "table"}},
    "model.pod.a_view": {"schema": "staging", "alias": "a_view", "config": {"materialized": "view"}},
    "model.pod.later": {"schema": "marts", "alias": "later", "config": {"materialized": "incremental"}},
}}


def _output(unique_id: str) -> dg.Output:
    return dg.Output(None, output_name=unique_id.split(".")[-1], metadata={"unique_id": unique_id})


def _check(name: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, asset_key=dg.AssetKey(["marts", "a_table"]), check_name=name)


def test_events_pass_on_with_their_row_counts_and_wait_in_order_when_a_count_is_missing(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "marts.later.count").write_text("99\n")
    counts = RowCounts(tmp_path / "old")
    assert list(counts.folder.iterdir()) == []  # a previous build's counts are gone
    (counts.folder / "marts.a_table.count").write_text("42\n")
    events = [_output("model.pod.a_view"), _output("model.pod.a_table"), _check("first"),
              _output("model.pod.later"), _check("second")]
    held: list = []
    passed = list(counts.relay(MANIFEST, iter(events), held))
    # The view has no count; the table gets the one its build wrote; the check follows it.
    assert [e.metadata.get("dagster/row_count") for e in passed[:2]] == [None, dg.MetadataValue.int(42)]
    assert passed[2] is events[2]
    # The incremental model's count is missing: it waits, and the check after it too.
    assert held == events[3:]


@pytest.mark.slow
def test_every_dbt_table_materialization_carries_the_row_count_the_table_holds(
        sample_run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = sample_run
    con = duckdb.connect(str(data / "warehouse" / "pod_work.duckdb"), read_only=True)
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        records = instance.get_records_for_run(
            instance.get_runs(limit=1)[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    counted = {}
    for record in records:
        if record.event_log_entry.step_key != "pod_dbt_models":
            continue
        materialization = record.event_log_entry.asset_materialization
        if "dagster/row_count" in materialization.metadata:
            counted[tuple(materialization.asset_key.path)] = materialization.metadata["dagster/row_count"].value
    tables = {tuple(row) for row in con.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
        "and table_schema in ('seeds', 'intermediate', 'marts')").fetchall()}
    # Every table dbt built: seeds, intermediate tables and dbt's marts (not the Python ones).
    assert set(counted) >= {t for t in tables if t[0] != "marts"} | {("marts", m) for m in DBT_MARTS}
    written = data / "warehouse" / "dbt_target" / "row_counts"
    for (schema, name), rows in counted.items():
        assert rows == con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0], (schema, name)
        # ... counted by the table's own build, so its events did not wait for dbt to exit.
        assert (written / f"{schema}.{name}.count").read_text().strip() == str(rows), (schema, name)
