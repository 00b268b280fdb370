"""The study report's provenance and rendering, on small hand-made tables."""

import duckdb
import numpy as np
import pandas as pd

from pod_pipeline.analysis import economics, report, tables

LEDGER = [
    # site, export_id, file, status, rows_loaded
    ("S1", "e1", "manifest.json", "accepted", None),
    ("S1", "e1", "register.csv", "loaded", 40),
    ("S1", "e1", "honos.csv", "loaded", 30),
    ("S1", "e2", "manifest.json", "accepted", None),
    ("S1", "e2", "register.csv", "loaded", 42),
    ("S1", "e2", "honos.csv", "rejected", None),
    ("S2", "e3", "manifest.json", "rejected", None),
]


def _ledger() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute("""
        create table raw.load_ledger (entry_id bigint, site varchar, export_id varchar,
            file varchar, sha256 varchar, status varchar, rows_read bigint, rows_loaded bigint,
            rows_quarantined bigint, error varchar, loaded_at timestamp)
    """)
    for entry_id, (site, export_id, file, status, rows) in enumerate(LEDGER):
        con.execute(
            "insert into raw.load_ledger values (?, ?, ?, ?, 'x', ?, ?, ?, 0, null, "
            "timestamp '2026-07-01 09:00')",
            [entry_id, site, export_id, file, status, rows, rows],
        )
    return con


def test_landing_batches_flag_what_the_marts_were_built_from() -> None:
    batches = tables.landing_batches(_ledger(), with_row_counts=True).set_index("export_id")
    # e1 still holds the current honos.csv (e2's was rejected); e3 was rejected outright.
    assert batches["in_current_snapshot"].to_dict() == {"e1": True, "e2": True, "e3": False}
    assert batches["batch_status"].to_dict() == {"e1": "accepted", "e2": "accepted",
                                                 "e3": "rejected"}
    assert batches.loc["e2", ["files_loaded", "files_rejected", "rows_loaded"]].tolist() == [
        1, 1, 42
    ]
    external = tables.landing_batches(_ledger(), with_row_counts=False)
    assert "rows_loaded" not in external.columns and "rows_quarantined" not in external.columns


def _single_arm_study() -> tables.StudyTables:
    arm = economics.ArmUnits("POD", np.ones(3), np.array([10.0, 20.0, 30.0]),
                             np.array([0.1, 0.2, 0.3]))
    inputs = economics.CostInputs([arm], "participant", "uk_2026", "2024/25")
    result = economics.analyse(inputs, 1000, 3)
    outcomes = pd.DataFrame([{
        "respondent": "service_user", "arm": "POD", "parameter": "wemwbs_total",
        "timepoint": "month_3", "n": 40, "mean": 41.0, "sd": "*", "mean_ci95_low": 39.0,
        "mean_ci95_high": 43.0, "median": 41.0, "q1": 37.0, "q3": 45.0, "n_paired": 38,
        "mean_change": 2.5, "sd_change": 4.0, "change_ci95_low": 1.2, "change_ci95_high": 3.8,
        "p_value_paired_t": 0.0004, "p_value_wilcoxon": 0.002, "effect_size_dz": 0.62,
        "n_meaningful_improvement": "*", "note": None,
    }])
    flow = tables.flow_table(pd.DataFrame({"arm": "POD", "stage": ["consented", "withdrawn"],
                                           "n": [40, 3]}))
    completeness = tables.completeness_table(pd.DataFrame({
        "site": ["S1"], "arm": ["POD"], "timepoint": ["month_3"], "instrument": ["wemwbs"],
        "expected": [40], "received": [39], "complete": [38], "scored": [38],
        "pct_scored": [95.0],
    }))
    return tables.StudyTables(flow, outcomes, completeness, result.summary,
                              result.acceptability, result.replicates)


def test_single_arm_report_states_why_there_is_no_comparison() -> None:
    study = _single_arm_study()
    figures = dict.fromkeys(["participant_flow", "outcome_trajectories", "completeness_heatmap"],
                            b"\x89PNG")
    document = report.render_html("t", study, figures, {"value set": "uk_2026"},
                                  pd.DataFrame({"site": ["S1"]}), ["a note"])
    assert study.cost_effectiveness.loc[0, "note"] in document
    assert "<h3>POD versus TAU</h3>" not in document and "ICER" not in document
    assert "&lt;0.001" in document and "41.00 (*)" in document
    assert "2.50 (1.20 to 3.80)" in document
    assert document.count("data:image/png;base64,") == 3
    assert "total" not in study.flow.columns
    assert "Not available: marts.time_to_relapse has not been built." in document
