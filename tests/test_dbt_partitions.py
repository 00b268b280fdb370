"""Site partitions of the dbt build (transform/partitions.py, dbt_project/macros/site_partitions.sql):
which sites a build rebuilds, and that a build of some sites' rows leaves what a full build would."""

import dataclasses
import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from test_dbt_build import REFERENCE_DATE, dbt, load_raw_layer

from pod_pipeline.settings import Settings
from pod_pipeline.transform import partitions
from pod_pipeline.transform.parse import PROJECT_INPUTS

PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
# Seven months after REFERENCE_DATE: sabp's open windows have closed, its follow-ups are longer.
NEXT_DATE = "2027-06-20"


@pytest.fixture()
def warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    with duckdb.connect(str(tmp_path / "pod_work.duckdb")) as con:
        con.execute("create schema audit; create schema raw")
        con.execute("create table audit.current_inputs (file varchar, site varchar, inputs varchar)")
        con.execute("insert into audit.current_inputs values ('register.csv', 'kmpt', 'r1'), "
                    "('register.csv', 'sabp', 'r2'), ('redcap_records.csv', 'kmpt', 'q1')")
        con.execute("create table raw.register (study_id varchar, site varchar)")
        yield con


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"POD_DATA_DIR": str(tmp_path / "data"), "POD_REFERENCE_DATE": "2026-11-25"})


def _built(con: duckdb.DuckDBPyConnection, settings: Settings, **kwargs) -> partitions.BuildPlan:
    """Plan a build, start it and finish it, as pod_dbt_models does when dbt succeeds."""
    build = partitions.plan(con, settings, **kwargs)
    partitions.begin(con, build)
    partitions.finish(con, build, selection=kwargs.get("selection", False))
    return build


def test_a_first_build_is_full_and_an_unchanged_one_rebuilds_no_site(warehouse, settings) -> None:
    first = _built(warehouse, settings)
    assert (first.full, first.reason, first.dbt_args()) == (True, "the warehouse's first build", ["--full-refresh"])
    assert first.sites == ("kmpt", "sabp")
    again = _built(warehouse, settings)
    assert (again.full, again.sites, again.dbt_args()) == (False, (), ["--exclude-resource-type", "seed"])
    assert again.describe() == "dbt rebuilds no site's rows: no site's inputs changed since the last build"


def test_a_site_whose_inputs_changed_is_rebuilt_alone(warehouse, settings) -> None:
    _built(warehouse, settings)
    warehouse.execute("update audit.current_inputs set inputs = 'q2' "
                      "where site = 'kmpt' and file = 'redcap_records.csv'")
    build = partitions.plan(warehouse, settings)
    assert (build.full, build.sites) == (False, ("kmpt",))
    partitions.begin(warehouse, build)
    assert warehouse.execute("select site from audit.dbt_partition_sites").fetchall() == [("kmpt",)]
    assert build.describe() == "dbt rebuilds the rows of the participants whose inputs changed at 1 site(s): kmpt"
    partitions.finish(warehouse, build)
    assert warehouse.execute("select site from audit.dbt_partition_sites").fetchall() == []
    # A new site, and a file a site no longer has, are changes of those sites.
    warehouse.execute("insert into audit.current_inputs values ('register.csv', 'oxf', 'r3')")
    warehouse.execute("delete from audit.current_inputs where site = 'sabp'")
    assert partitions.plan(warehouse, settings).sites == ("oxf", "sabp")


# A project of three partitioned models and a cohort-level one: scores from REDCap's records,
# the relapse chain from the acute-care extract and the load ledger (through a cohort-level table).
MODELS = {"scores": ["source.pod.redcap.redcap_records"], "exports": ["source.pod.ingestion.load_ledger"],
          "relapse": ["source.pod.epr.acute_care", "model.pod.exports"],
          "meetings": ["source.pod.pod_team.network_meetings"]}
MANIFEST = {
    "sources": {f"source.pod.{group}.{name}": {"name": name, "schema": "raw"}
                for group, name in (("redcap", "redcap_records"), ("ingestion", "load_ledger"),
                                    ("epr", "acute_care"), ("pod_team", "network_meetings"))},
    "nodes": {f"model.pod.{name}": {"name": name, "resource_type": "model", "depends_on": {"nodes": parents},
                                    "config": {"meta": {} if name == "exports" else {"site_rows": "participant_id"}}}
              for name, parents in MODELS.items()},
    "macros": {},
}


def _digests(con: duckdb.DuckDBPyConnection, file: str, site: str, digests: dict[str, str]) -> None:
    """As ingestion does when it rebuilds a site's rows of a file (ingest/current.py)."""
    con.execute("delete from audit.participant_inputs where file = $f and site = $s", {"f": file, "s": site})
    for participant, digest in digests.items():
        con.execute("insert into audit.participant_inputs values ($f, $s, $p, $d)",
                    {"f": file, "s": site, "p": participant, "d": digest})
    con.execute("update audit.current_inputs set inputs = inputs || '+' where file = $f and site = $s",
                {"f": file, "s": site})


def _rebuilt(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    return set(con.execute("select model, participant_id from audit.dbt_rebuilt_participants").fetchall())


def test_a_model_rebuilds_the_participants_whose_rows_changed_in_a_file_it_is_built_from(warehouse, settings) -> None:
    warehouse.execute("insert into raw.register values ('K1', 'kmpt'), ('K2', 'kmpt'), ('K3', 'kmpt'), "
                      "('S1', 'sabp')")
    warehouse.execute("insert into audit.current_inputs values ('acute_care.csv', 'sabp', 'a1'), "
                      "('network_meetings.csv', 'kmpt', 'n1')")
    assert partitions.model_files(MANIFEST) == (
        ("meetings", "network_meetings.csv"), ("relapse", "*"), ("relapse", "acute_care.csv"),
        ("scores", "redcap_records.csv"))
    partitions.plan(warehouse, settings, manifest=MANIFEST)  # makes the audit tables
    _digests(warehouse, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b"})
    _digests(warehouse, "network_meetings.csv", "kmpt", {"K1": "m"})
    _digests(warehouse, "register.csv", "kmpt", {"K1": "r", "K2": "r", "K3": "r"})
    first = _built(warehouse, settings, manifest=MANIFEST)
    assert first.full and _rebuilt(warehouse) == set()
    # K2's answers change and K3's arrive: scores rebuilds those two; the load ledger changed with
    # the batch, so the relapse chain rebuilds every kmpt participant; meetings rebuilds none.
    _digests(warehouse, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b2", "K3": "c"})
    build = partitions.plan(warehouse, settings, manifest=MANIFEST)
    assert (build.full, build.sites, build.changed) == (False, ("kmpt",), ("redcap_records.csv|kmpt",))
    partitions.begin(warehouse, build)
    assert _rebuilt(warehouse) == {("scores", "K2"), ("scores", "K3"),
                                   ("relapse", "K1"), ("relapse", "K2"), ("relapse", "K3")}
    partitions.finish(warehouse, build)
    assert _rebuilt(warehouse) == set()
    # The same rows again (a re-export): nobody's rows changed, but the relapse chain's.
    _digests(warehouse, "redcap_records.csv", "kmpt", {"K1": "a", "K2": "b2", "K3": "c"})
    build = _begun(warehouse, settings)
    assert _rebuilt(warehouse) == {("relapse", "K1"), ("relapse", "K2"), ("relapse", "K3")}
    partitions.finish(warehouse, build)
    # K1's meeting is gone: meetings rebuilds K1, whose rows it deletes.
    _digests(warehouse, "network_meetings.csv", "kmpt", {})
    build = _begun(warehouse, settings)
    assert {pair for pair in _rebuilt(warehouse) if pair[0] != "relapse"} == {("meetings", "K1")}
    partitions.finish(warehouse, build)
    # A new acute-care extract reaches every participant of its site (its date censors their
    # follow-up), here sabp's, whose rows nothing else is built from.
    warehouse.execute("update audit.current_inputs set inputs = 'a2' where file = 'acute_care.csv'")
    build = _begun(warehouse, settings)
    assert _rebuilt(warehouse) == {("relapse", "S1")}
    partitions.finish(warehouse, build)
    # K3 leaves kmpt's register: a change of a register reaches every model, built from it or not,
    # so that K3's rows leave them all.
    _digests(warehouse, "register.csv", "kmpt", {"K1": "r", "K2": "r"})
    _begun(warehouse, settings)
    assert {pair for pair in _rebuilt(warehouse) if pair[1] == "K3"} == {
        ("scores", "K3"), ("meetings", "K3"), ("relapse", "K3")}


def _begun(con: duckdb.DuckDBPyConnection, settings: Settings) -> partitions.BuildPlan:
    build = partitions.plan(con, settings, manifest=MANIFEST)
    partitions.begin(con, build)
    return build


@pytest.mark.parametrize("change", ["value_set", "raw_column"])
def test_anything_but_a_sites_inputs_and_the_date_rebuilds_every_site(warehouse, settings, change: str) -> None:
    _built(warehouse, settings)
    if change == "value_set":
        settings = dataclasses.replace(settings, value_set="england_2018")
    else:
        warehouse.execute("alter table raw.register add column arm varchar")
    build = partitions.plan(warehouse, settings)
    assert build.full and build.sites == ("kmpt", "sabp") and build.whole == ()
    assert "changed" in build.reason


# The partitioned models that read the reference date, directly or through what they are built on.
DATED = ("int_inpatient_days_counted", "int_relapse_followups_bounded", "missing_assessments",
         "participant_timepoints", "time_to_relapse")


def test_a_new_reference_date_rebuilds_whole_only_the_models_that_depend_on_it(warehouse, settings) -> None:
    _built(warehouse, settings)
    tomorrow = dataclasses.replace(settings, reference_date=dt.date(2026, 11, 26))
    build = partitions.plan(warehouse, tomorrow)
    assert (build.full, build.sites, build.whole) == (False, (), DATED)
    assert build.describe() == (
        "dbt rebuilds no site's rows: no site's inputs changed since the last build; and, for the new "
        "reference date 2026-11-26, every site's rows of the 5 model(s) that depend on it: " + ", ".join(DATED))
    partitions.begin(warehouse, build)
    assert warehouse.execute("select model from audit.dbt_whole_models order by 1").fetchall() == [(m,) for m in DATED]
    partitions.finish(warehouse, build)
    assert warehouse.execute("select count(*) from audit.dbt_whole_models").fetchall() == [(0,)]
    assert partitions.plan(warehouse, tomorrow).whole == ()
    # A warehouse whose last build recorded no date (built before the date left the fingerprint).
    warehouse.execute("update audit.dbt_build_state set reference_date = null")
    assert partitions.plan(warehouse, tomorrow).whole == DATED


def test_the_models_that_depend_on_the_date_are_found_through_macros_and_models() -> None:
    def model(name: str, macros: list[str], parents: list[str], partitioned: bool = True) -> dict:
        return {"resource_type": "model", "name": name, "depends_on": {"macros": macros, "nodes": parents},
                "config": {"meta": {"site_rows": "participant_id"} if partitioned else {}}}

    manifest = {
        "macros": {"macro.pod.reference_date": {"depends_on": {"macros": []}},
                   "macro.pod.status": {"depends_on": {"macros": ["macro.pod.inner"]}},
                   "macro.pod.inner": {"depends_on": {"macros": ["macro.pod.reference_date", "macro.pod.status"]}},
                   "macro.pod.other": {"depends_on": {"macros": []}},
                   # b calls c, which calls b back and reaches the date through d
                   "macro.pod.b": {"depends_on": {"macros": ["macro.pod.c"]}},
                   "macro.pod.c": {"depends_on": {"macros": ["macro.pod.b", "macro.pod.d"]}},
                   "macro.pod.d": {"depends_on": {"macros": ["macro.pod.reference_date"]}}},
        "nodes": {"model.pod.a": model("a", ["macro.pod.status"], []),
                  "model.pod.b": model("b", ["macro.pod.other"], []),
                  "model.pod.c": model("c", [], ["model.pod.b"]),
                  "model.pod.d": model("d", [], ["model.pod.whole_table"]),
                  "model.pod.whole_table": model("whole_table", ["macro.pod.reference_date"], [], partitioned=False),
                  "model.pod.e": model("e", [], ["model.pod.a", "model.pod.b"]),
                  "model.pod.f": model("f", ["macro.pod.b"], []),
                  "test.pod.t": {"resource_type": "test", "name": "t", "config": {},
                                 "depends_on": {"macros": ["macro.pod.reference_date"], "nodes": []}}},
    }
    assert partitions.reference_date_models(manifest) == ("a", "d", "e", "f")


def test_the_project_digest_follows_every_file_of_the_project(tmp_path: Path) -> None:
    for name in PROJECT_INPUTS:
        path = tmp_path / name
        if name.endswith(".yml"):
            path.write_text("name: pod\n")
        else:
            path.mkdir()
            (path / "a.sql").write_text("select 1")
    before = partitions.project_digest(tmp_path)
    (tmp_path / "macros" / "a.sql").write_text("select 2")
    changed = partitions.project_digest(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "run_results.json").write_text("{}")
    assert before != changed == partitions.project_digest(tmp_path)
    assert partitions.project_digest() == partitions.project_digest(PROJECT)


@pytest.mark.parametrize("how", ["full_refresh", "selection", "unfinished"])
def test_a_build_that_may_leave_rows_behind_is_followed_by_a_full_one(warehouse, settings, how: str) -> None:
    _built(warehouse, settings)
    if how == "unfinished":  # dbt failed or was killed: begin() without finish()
        partitions.begin(warehouse, partitions.plan(warehouse, settings))
    else:
        build = _built(warehouse, settings, **{how: True})
        assert build.full
    following = partitions.plan(warehouse, settings)
    if how == "full_refresh":
        assert not following.full
    else:
        assert following.full
        assert following.reason == "the last build did not finish, or built a selection of models"
    state = warehouse.execute("select fingerprint, inputs from audit.dbt_build_state").fetchall()
    assert len(state) == (1 if how == "full_refresh" else 0)
    if state:
        assert json.loads(state[0][1]) == partitions.current_inputs(warehouse)


# The participants the build of some participants names: kmpt's three, and SABP-0003 (whose
# network meeting changed); not SABP-0001, nor SABP-0002 (whose answers change behind its back).
NAMED = {"KMPT": ("KMPT-0001", "KMPT-0002", "KMPT-0003"), "SABP": ("SABP-0003",)}
PARTITIONED = ("int_participant_timepoints_scheduled", "int_instrument_scales_scored", "int_timepoint_scores_selected",
               "int_scheduled_instruments_classified", "outcome_scores", "participant_timepoints",
               "service_use_costs", "cost_effectiveness", "missing_assessments", "carer_timepoints",
               "participants", "network_meetings", "int_acute_care_spells_merged", "int_relapse_followups_bounded",
               "int_relapse_index_spells_identified", "int_inpatient_days_counted", "time_to_relapse",
               "int_utilities_valued", "int_participant_timepoints_assembled", "int_participant_flow_stages")


def _rows_by_site(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, list]]:
    """Each partitioned table's rows (participant first), sorted, by the site prefix of their participant."""
    tables = dict(con.execute("select table_name, table_schema from information_schema.tables "
                              "where table_schema in ('intermediate', 'marts')").fetchall())
    found = {}
    for table in PARTITIONED:
        rows = con.execute(f'select participant_id, * exclude (participant_id) '
                           f'from "{tables[table]}"."{table}"').fetchall()
        for site in ("KMPT", "SABP"):
            found.setdefault(site, {})[table] = sorted((r for r in rows if r[0].startswith(site)), key=repr)
    return found


def test_a_build_of_some_participants_rows_leaves_what_a_full_build_would(tmp_path: Path) -> None:
    """The hand-made raw layer built in full; then kmpt's register loses KMPT-0003, KMPT-0002
    withdraws all their data and KMPT-0001's baseline answers change, SABP-0003's network meeting
    changes, the reference date moves on seven months, and a build names kmpt, those four
    participants for every partitioned model, and the models that depend on the date: the named
    participants' rows are a full build's at the new date, and so are sabp's rows of the models
    that depend on it. SABP-0002's answers change too, behind the plan's back: their rows of the
    other models are those of the first build, which is how we know the build rebuilt the named
    participants' rows alone."""
    database = tmp_path / "pod_work.duckdb"
    with duckdb.connect(str(database)) as con:
        load_raw_layer(con)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POD_WORK_DB", str(database))
        assert dbt(tmp_path, "seed").success
        assert dbt(tmp_path, "run", reference_date=REFERENCE_DATE).success
        with duckdb.connect(str(database)) as con:
            before = _rows_by_site(con)
            con.execute("delete from raw.register where study_id = 'KMPT-0003'")
            con.execute("update raw.register set withdrawal_type = 'all_data', withdrawal_date = '2026-06-01' "
                        "where study_id = 'KMPT-0002'")
            con.execute("update raw.redcap_records set wemwbs_01 = '1', wemwbs_02 = '1' "
                        "where record_id in ('KMPT-0001', 'SABP-0002') and redcap_event_name like 'baseline%' "
                        "and redcap_repeat_instrument is null")
            # The relapse chain and the network meetings: kmpt's open crisis episode starts later;
            # a sabp meeting's duration changes behind the plan's back.
            con.execute("update raw.acute_care set start_date = '2026-04-20' where episode_id = 'E4'")
            con.execute("update raw.network_meetings set duration_minutes = '95' "
                        "where study_id = 'SABP-0003'")
            con.execute("create schema audit; create table audit.dbt_partition_sites as select 'kmpt' as site")
            manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
            dated = partitions.reference_date_models(manifest)
            assert dated == DATED
            models = sorted({model for model, _ in partitions.model_files(manifest)})
            assert set(PARTITIONED) < set(models)
            con.execute("create table audit.dbt_rebuilt_participants as select model, participant_id "
                        "from unnest($m) as m(model) cross join unnest($p) as p(participant_id)",
                        {"m": models, "p": [*NAMED["KMPT"], *NAMED["SABP"]]})
            con.execute("create table audit.dbt_whole_models as select unnest($m) as model", {"m": list(dated)})
        # As the pipeline builds some sites: every model, and every test on the rows it reads
        # (dbt's unit tests aside, as in the pipeline: tests/test_dbt_build.py runs them).
        assert dbt(tmp_path, "build", "--exclude-resource-type", "unit_test", "--exclude-resource-type", "seed",
                   reference_date=NEXT_DATE, pipeline_build=True).success
        compiled = tmp_path / "target" / "compiled" / "pod" / "models" / "marts" / "outcomes" / "outcome_scores.sql"
        # Built for some sites, its input is read for them first (macro materialized_on_partial_build).
        assert "selected as materialized (" in compiled.read_text()
        # The typed REDCap view is read through a list of the rebuilt participants (macro
        # in_rebuilt_partitions_listed), and through the subquery past listed_participants_limit
        # (compiled last: a var of its own makes dbt parse the project again).
        summed = tmp_path / "target" / "compiled" / "pod" / "models" / "intermediate" / "scoring" / \
            "int_instrument_scales_summed.sql"
        listed = "records.participant_id in (" + ", ".join(
            f"'{p}'" for p in sorted([*NAMED["KMPT"], *NAMED["SABP"]])) + ")"
        assert listed in summed.read_text()
        with duckdb.connect(str(database)) as con:
            stepwise = _rows_by_site(con)
            sabp_month_3 = con.execute("select timepoint_status from marts.participant_timepoints "
                                       "where participant_id = 'SABP-0002' and timepoint = 'month_3'").fetchall()
        failing = {participant[:4]: _failing_tests_with_a_duplicate(
            tmp_path, database, "marts.outcome_scores", "outcome_scores", "participant_id", participant)
            for participant in ("SABP-0002", "KMPT-0001")}
        meetings_failing = {participant[:4]: _failing_tests_with_a_duplicate(
            tmp_path, database, "raw.network_meetings", "source:pod_team.network_meetings", "study_id", participant)
            for participant in ("SABP-0003", "KMPT-0001")}
        # The singular tests read the rebuilt participants too, in a build at the last build's
        # date (no model rebuilt whole). A timepoint gone from SABP-0002's spine is not seen, one
        # gone from KMPT-0001's is; at the new date, participant_timepoints is rebuilt whole and
        # SABP-0002's is seen. SABP-0002's withdrawal of all their data, behind the plan's back,
        # is not seen; a row of KMPT-0002 (who withdrew all their data) is.
        same_date = {"audit.dbt_whole_models": "delete from audit.dbt_whole_models"}
        singular = "assert_participant_timepoints_is_the_full_spine assert_no_all_data_participant_in_marts"

        def spine_without(participant: str) -> str:
            return (f"delete from marts.participant_timepoints where participant_id = '{participant}' "
                    "and timepoint = 'month_3'")

        singular_failing = {
            "SABP": _failing_tests_after(tmp_path, database, singular, {
                **same_date, "marts.participant_timepoints": spine_without("SABP-0002"),
                "raw.register": "update raw.register set withdrawal_type = 'all_data', "
                                "withdrawal_date = '2026-06-01' where study_id = 'SABP-0002'"}),
            "KMPT": _failing_tests_after(tmp_path, database, singular, {
                **same_date, "marts.participant_timepoints": spine_without("KMPT-0001"),
                "marts.outcome_scores": "insert into marts.outcome_scores select * replace "
                                        "('KMPT-0002' as participant_id) from marts.outcome_scores "
                                        "where participant_id = 'KMPT-0001' limit 1"}),
            "SABP, new date": _failing_tests_after(tmp_path, database, singular, {
                "marts.participant_timepoints": spine_without("SABP-0002")})}
        assert dbt(tmp_path, "run", "--full-refresh", reference_date=NEXT_DATE).success
        assert "selected as materialized" not in compiled.read_text()
        with duckdb.connect(str(database)) as con:
            full = _rows_by_site(con)
        assert dbt(tmp_path, "compile", "--select", "int_instrument_scales_summed", reference_date=NEXT_DATE,
                   pipeline_build=True, listed_participants_limit="3").success
        assert listed not in summed.read_text()
        assert ("records.participant_id in (select participant_id from audit.dbt_rebuilt_participants "
                "where model = 'int_instrument_scales_summed')") in summed.read_text()
    assert stepwise["KMPT"] == full["KMPT"] != before["KMPT"]
    for table, rows in stepwise["KMPT"].items():  # left the register; withdrew all their data
        assert not any(r[0] in ("KMPT-0002", "KMPT-0003") for r in rows), table
    assert any(r[0] == "KMPT-0002" for r in before["KMPT"]["participant_timepoints"])
    undated = [t for t in PARTITIONED if t not in DATED]

    def of(rows: list, *participants: str) -> list:
        return [r for r in rows if r[0] in participants]

    def but(rows: list, *participants: str) -> list:
        return [r for r in rows if r[0] not in participants]

    # SABP-0003's rows were rebuilt; SABP-0001's and SABP-0002's are the first build's.
    assert [of(stepwise["SABP"][t], *NAMED["SABP"]) for t in undated] == [of(full["SABP"][t], *NAMED["SABP"])
                                                                           for t in undated]
    assert [but(stepwise["SABP"][t], *NAMED["SABP"]) for t in undated] == [but(before["SABP"][t], *NAMED["SABP"])
                                                                            for t in undated]
    assert [stepwise["SABP"][t] for t in undated] != [full["SABP"][t] for t in undated]
    # The models that depend on the date were rebuilt for sabp too, from its other models' rows
    # (so SABP-0002's answers, changed behind the plan's back, are the first build's there).
    def unchanged_behind_the_back(rows: list) -> list:
        return [r for r in rows if r[0] != "SABP-0002"]

    for table in DATED:
        assert unchanged_behind_the_back(stepwise["SABP"][table]) == unchanged_behind_the_back(full["SABP"][table])
    # The new date changed sabp's rows: a window now closed (not_yet_due at the first build's date).
    assert sabp_month_3 == [("due",)]
    assert stepwise["SABP"]["participant_timepoints"] != before["SABP"]["participant_timepoints"]
    assert stepwise["KMPT"]["int_acute_care_spells_merged"] != before["KMPT"]["int_acute_care_spells_merged"]
    meetings = [rows["SABP"]["network_meetings"] for rows in (stepwise, full, before)]
    assert meetings[0] == meetings[1] != meetings[2]
    unique = "unique_combination_outcome_scores_participant_id__parameter__timepoint"
    # A test reads the rebuilt participants' rows only: a duplicate among SABP-0002's rows is not
    # seen, one among KMPT-0001's is; with no site named, the pipeline's build (no row rebuilt)
    # sees neither and dbt by hand after a finished build sees both.
    assert [unique in name for name in failing["SABP"]] == [False, False, True]
    assert [unique in name for name in failing["KMPT"]] == [True, False, True]
    # So does a test of a raw table that ingestion rebuilds site by site (meta.site_rows: site):
    # a meeting doubled at sabp (no site's inputs named) is not seen, one at kmpt is.
    source_unique = "source_unique_combination_pod_team_network_meetings_site__meeting_id"
    assert [source_unique in name for name in meetings_failing["SABP"]] == [False, False, True]
    assert [source_unique in name for name in meetings_failing["KMPT"]] == [True, False, True]
    spine, all_data = "assert_participant_timepoints_is_the_full_spine", "assert_no_all_data_participant_in_marts"
    assert [(spine in names, all_data in names) for names in singular_failing["SABP"]] == [
        (False, False), (False, False), (True, True)]
    assert [(spine in names, all_data in names) for names in singular_failing["KMPT"]] == [
        (True, True), (False, False), (True, True)]
    assert [spine in names for names in singular_failing["SABP, new date"]] == [True, True, True]


def _failing_tests_with_a_duplicate(tmp: Path, database: Path, table: str, selected: str, column: str,
                                    participant: str) -> list[str]:
    """The failing tests of `table` (dbt selection `selected`) with a row of `participant` doubled
    (found by `column`), as _failing_tests_after gives them."""
    return _failing_tests_after(tmp, database, selected, {
        table: f"insert into {table} select * from {table} where {column} = '{participant}' limit 1"})


def _failing_tests_after(tmp: Path, database: Path, selected: str, changes: dict[str, str]) -> list[str]:
    """The failing tests of dbt selection `selected` once each table of `changes` is changed by its
    statement: on this build, then with no site named by the pipeline's build and by hand. The
    tables and the named site are left as they were."""
    with duckdb.connect(str(database)) as con:
        for i, (table, change) in enumerate(changes.items()):
            con.execute(f"create table audit.saved_rows_{i} as select * from {table}")
            con.execute(change)
    failing = []
    for named, pipeline_build in ((True, True), (False, True), (False, False)):
        if not named:
            with duckdb.connect(str(database)) as con:
                con.execute("delete from audit.dbt_partition_sites")
        result = dbt(tmp, "test", "--select", selected, reference_date=NEXT_DATE,
                     pipeline_build=pipeline_build)
        failing.append(",".join(r.node.name for r in result.result if r.status == "fail"))
    with duckdb.connect(str(database)) as con:
        for i, table in enumerate(changes):
            con.execute(f"delete from {table}")
            con.execute(f"insert into {table} select * from audit.saved_rows_{i}")
            con.execute(f"drop table audit.saved_rows_{i}")
        con.execute("insert into audit.dbt_partition_sites values ('kmpt')")
    return failing
