"""Trial deliveries: verifiable manifest, never rewritten, erased participants absent, CSVs safe."""

import csv
import json
import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pod_pipeline import __version__, csvsafe
from pod_pipeline.delivery import deliveries
from pod_pipeline.delivery.assets import published_marts, trial_delivery
from pod_pipeline.delivery.dictionary import dbt_docs
from pod_pipeline.ingest import landing, ledger
from pod_pipeline.ingest.batch_manifest import seal_batch, sha256_file
from pod_pipeline.resources import Warehouse, connect
from pod_pipeline.settings import Settings

ERASED = ("KMPT-0901", "KMPT-0902")
FORMULAS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)")


def seed_warehouse(settings: Settings, landing_dir: Path) -> dict[str, str]:
    """Ledger of two sealed batches (a third unsealed), raw.register and every deliverable mart."""
    manifests = {}
    for export_id in ("20260101T060000Z", "20260201T060000Z", "20260301T060000Z"):
        batch = landing_dir / "kmpt" / export_id
        batch.mkdir(parents=True)
        (batch / "register.csv").write_text(f"study_id\nKMPT-0001\n# {export_id}\n")
        if export_id != "20260301T060000Z":  # the last one is still being delivered
            manifests[f"kmpt/{export_id}"] = sha256_file(seal_batch(batch))
    with connect(settings) as con:
        ledger.ensure(con)
        landing.record_batches(con, landing.discover(landing_dir).sealed, "run-ingest")
        for name in manifests:
            export_id = name.split("/")[1]
            digest = sha256_file(landing_dir / name / "register.csv")
            entry = ledger.Entry("kmpt", export_id, "register.csv", digest, "loaded", 2, 2, 0)
            ledger.append(con, entry)
        con.execute("create schema raw; create schema marts")
        con.execute(
            "create table raw.register as select * from (values ('KMPT-0001', ''), "
            "('KMPT-0002', 'follow_up'), ('KMPT-0901', 'all_data'), ('KMPT-0902', 'all_data')) "
            "t(study_id, withdrawal_type)"
        )
        con.execute(
            "create table marts.participants as select * from (values "
            + ", ".join(
                f"('KMPT-000{i}', 'POD', '{formula}', {-i}, date '2026-01-0{i}')"
                for i, formula in enumerate(FORMULAS, start=1)  # no quotes to escape
            )
            + ") t(participant_id, arm, cluster_id, age_change, consent_date)"
        )
        for table in (
            "participant_timepoints",
            "outcome_scores",
            "carer_timepoints",
            "network_meetings",
            "service_use_costs",
            "time_to_relapse",
        ):
            con.execute(
                f"create table marts.{table} as select participant_id, 'baseline' as timepoint, "
                "-1.25 as value from marts.participants"
            )
        con.execute(
            "create table marts.cost_effectiveness as select participant_id, 0.41 as qaly, "
            "'uk_2026' as value_set, '2024/25' as price_year from marts.participants"
        )
        con.execute(
            "create table marts.completeness as select 'kmpt' as site, 12 as expected, 9 as scored"
        )
        con.execute(
            "create table marts.participant_flow as "
            "select 'POD' as arm, 'consented' as stage, 4 as n"
        )
        con.execute("create table marts.quarantine as select 'kmpt' as site, 'bad row' as reason")
    return manifests


@pytest.fixture
def delivered(pod_env: Path, tmp_path: Path) -> tuple[Settings, dict[str, str], Path]:
    settings = Settings.from_env()
    manifests = seed_warehouse(settings, tmp_path / "landing")
    assert dg.materialize([published_marts], resources={"warehouse": Warehouse()}).success
    assert deliver().success
    return (
        settings,
        manifests,
        settings.warehouse_dir / "deliveries" / deliveries.delivery_day().isoformat(),
    )


def deliver(new_folder: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [trial_delivery],
        resources={"warehouse": Warehouse()},
        raise_on_error=False,
        run_config={"ops": {"delivery__trial_delivery": {"config": {"new_folder": new_folder}}}},
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_delivery_manifest_verifies_against_its_files(delivered) -> None:
    settings, manifests, folder = delivered
    assert deliveries.verify_delivery(folder) == []
    names = sorted(os.listdir(folder))
    assert names == sorted(
        [f"{t}.{s}" for t in deliveries.DELIVERABLE for s in ("csv", "parquet")]
        + ["data_dictionary.csv", "manifest.json"]
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["pipeline_version"] == __version__
    assert (manifest["value_set"], manifest["price_year"]) == ("uk_2026", "2024/25")
    assert manifest["tables"]["participants"]["rows"] == 4
    assert manifest["files"]["outcome_scores.csv"]["sha256"] == sha256_file(
        folder / "outcome_scores.csv"
    )
    assert {
        f"{b['site']}/{b['export_id']}": b["manifest_sha256"] for b in manifest["landing_batches"]
    } == manifests
    assert all(set(b["files"]) == {"register.csv"} for b in manifest["landing_batches"])
    assert manifest["participants_erased_all_data"] == len(ERASED)
    assert "quarantine.csv" not in names


def test_batches_that_landed_after_the_publication_are_not_listed(
    pod_env: Path, tmp_path: Path
) -> None:
    settings = Settings.from_env()
    landing_dir = tmp_path / "landing"
    published = seed_warehouse(settings, landing_dir)
    assert dg.materialize([published_marts], resources={"warehouse": Warehouse()}).success
    seal_batch(landing_dir / "kmpt" / "20260301T060000Z")
    with connect(settings) as con:
        assert landing.record_batches(con, landing.discover(landing_dir).sealed).new_accepted
    assert deliver().success
    folder = settings.warehouse_dir / "deliveries" / deliveries.delivery_day().isoformat()
    batches = json.loads((folder / "manifest.json").read_text())["landing_batches"]
    assert {f"{b['site']}/{b['export_id']}": b["manifest_sha256"] for b in batches} == published


def test_tampering_is_detected(delivered) -> None:
    folder = delivered[2]
    target = folder / "participants.csv"
    target.chmod(0o644)
    target.write_text(target.read_text().replace("POD", "TAU", 1))
    (folder / "extra.csv").write_text("x\n")
    assert deliveries.verify_delivery(folder) == [
        "extra.csv: in the folder but not in the manifest",
        "participants.csv: SHA-256 differs from the manifest",
    ]


def test_erased_participants_are_counted_never_named(delivered) -> None:
    folder = delivered[2]
    for path in folder.iterdir():
        text = path.read_bytes()
        assert not any(study_id.encode() in text for study_id in ERASED), path.name


def test_a_second_delivery_on_the_same_day_is_refused_unless_forced(delivered) -> None:
    settings, _, folder = delivered
    before = {p.name: sha256_file(p) for p in folder.iterdir()}
    refused = deliver()
    assert not refused.success
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "already exists and a delivery folder is never rewritten" in str(
        failure.event_specific_data.error
    )
    assert "new_folder: true" in str(failure.event_specific_data.error)
    assert {p.name: sha256_file(p) for p in folder.iterdir()} == before
    assert deliver(new_folder=True).success
    second = folder.with_name(f"{folder.name}_2")
    assert deliveries.verify_delivery(second) == []
    assert json.loads((second / "manifest.json").read_text())["delivery"] == second.name
    assert all(p.stat().st_mode & 0o222 == 0 for p in second.iterdir())


def test_csv_text_is_neutralised_and_numbers_stay_numbers(delivered) -> None:
    folder = delivered[2]
    rows = read_csv(folder / "participants.csv")
    assert [r["cluster_id"] for r in rows] == ["'" + f for f in FORMULAS]
    assert [r["age_change"] for r in rows] == ["-1", "-2", "-3", "-4"]
    assert rows[0]["consent_date"] == "2026-01-01"
    assert read_csv(folder / "outcome_scores.csv")[0]["value"] == "-1.25"
    parquet = (
        duckdb.connect()
        .sql(f"select cluster_id from '{folder / 'participants.parquet'}'")
        .fetchall()
    )
    assert [v for (v,) in parquet] == list(FORMULAS), "Parquet keeps the values as delivered"


def test_data_dictionary_lists_every_delivered_column_with_its_type(delivered) -> None:
    folder = delivered[2]
    rows = read_csv(folder / "data_dictionary.csv")
    assert list(rows[0]) == ["table", "name", "type", "description", "unit_or_codes"]
    participants = {r["name"]: r["type"] for r in rows if r["table"] == "participants"}
    assert participants == {
        "participant_id": "VARCHAR",
        "arm": "VARCHAR",
        "cluster_id": "VARCHAR",
        "age_change": "INTEGER",
        "consent_date": "DATE",
    }
    assert {r["table"] for r in rows} == set(deliveries.DELIVERABLE)


def test_a_mart_holding_an_erased_participant_is_not_delivered(
    pod_env: Path, tmp_path: Path
) -> None:
    settings = Settings.from_env()
    seed_warehouse(settings, tmp_path / "landing")
    with connect(settings) as con:
        con.execute("insert into marts.outcome_scores values ('KMPT-0902', 'month_3', 1.0)")
    assert dg.materialize([published_marts], resources={"warehouse": Warehouse()}).success
    result = deliver()
    assert not result.success
    error = str(
        next(
            e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        ).event_specific_data.error
    )
    assert (
        "marts.outcome_scores holds 1 row(s) of participants who withdrew all their data" in error
    )
    assert "KMPT-0902" not in error
    assert not (settings.warehouse_dir / "deliveries").exists()


def test_dictionary_docs_come_from_dbt(tmp_path: Path) -> None:
    manifest = {
        "nodes": {
            "model.pod.participants": {
                "resource_type": "model",
                "schema": "marts",
                "name": "participants",
                "columns": {
                    "arm": {
                        "description": "Randomised\n arm.",
                        "config": {"meta": {"codes": ["POD", "TAU"]}},
                    },
                    "age_at_consent": {"description": "Age", "meta": {"unit": "years"}},
                    "gender": {
                        "description": "",
                        "config": {"meta": {"codes": {"1": "male", "2": "female"}}},
                    },
                },
            },
            "model.pod.stg_x": {
                "resource_type": "model",
                "schema": "staging",
                "name": "stg_x",
                "columns": {},
            },
        }
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    docs = dbt_docs(path)
    assert set(docs) == {"participants"}
    assert docs["participants"]["arm"].description == "Randomised arm."
    assert docs["participants"]["arm"].unit_or_codes == "codes: POD | TAU"
    assert docs["participants"]["age_at_consent"].unit_or_codes == "unit: years"
    assert docs["participants"]["gender"].unit_or_codes == "codes: 1 = male; 2 = female"


@given(st.text(max_size=12))
def test_sql_and_python_neutralise_alike(value: str) -> None:
    sql = f"select {csvsafe.neutralise_sql('$v')}"
    assert duckdb.connect().execute(sql, {"v": value}).fetchall() == [(csvsafe.neutralise(value),)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+44 20", "'+44 20"),
        ("-x", "'-x"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'\t=1"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
        (-3, -3),
        (2.5, 2.5),
    ],
)
def test_neutralise_named_cases(value: object, expected: object) -> None:
    assert csvsafe.neutralise(value) == expected


def test_write_csv_neutralises_every_text_cell(tmp_path: Path) -> None:
    path = tmp_path / "site_report.csv"
    assert csvsafe.write_csv(path, ["site", "n"], [("=cmd|' /C calc'!A0", -4)]) == 1
    assert path.read_text() == "site,n\n'=cmd|' /C calc'!A0,-4\n"
