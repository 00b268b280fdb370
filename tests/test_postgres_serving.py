"""Marts served from PostgreSQL (POD_PUBLISH_POSTGRES_URL), against a real throwaway server.

The working database holds small synthetic marts (tests/synthetic_marts.py, plus the three site
tables and a table of awkward values); each test publishes them through the delivery asset, as a
run does, into a database of its own owned by a non-superuser pipeline role.
"""

import contextlib
import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import psycopg2.errors
import pytest
from postgres_server import PostgresServer, duckdb_rows, postgres_rows, server_for_tests
from synthetic_marts import write_synthetic_marts

from pod_pipeline.delivery import publication, serving
from pod_pipeline.delivery.assets import PUBLISHED_KEY, postgres_target, published_marts
from pod_pipeline.delivery.dictionary import dbt_docs, model_descriptions
from pod_pipeline.ingest import ledger
from pod_pipeline.ingest.fingerprint import fingerprint, last_published_fingerprint
from pod_pipeline.resources import Warehouse, connect
from pod_pipeline.settings import Settings, SettingsError, masked_url
from pod_pipeline.transform.assets import ensure_dbt_manifest

PIPELINE_ROLE = "pod_pipeline"
PASSWORD = "s3cret-Pw-never-shown"  # trust authentication ignores it; messages must not show it
SITE_TABLES = serving.SITE_TABLES
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One server for the module; the pipeline's role may create roles but is not a superuser."""
    with server_for_tests() as server:
        server.execute(f"create role {PIPELINE_ROLE} login createrole")
        yield server


@pytest.fixture
def settings(pod_env: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh database owned by the pipeline's role, named in POD_PUBLISH_POSTGRES_URL."""
    database = f"pod_{next(_databases)}"
    postgres.execute(f"create database {database} owner {PIPELINE_ROLE}")
    monkeypatch.setenv("POD_PUBLISH_POSTGRES_URL", postgres.url(PIPELINE_ROLE, database, PASSWORD))
    return Settings.from_env()


def database(settings: Settings) -> str:
    return settings.publish_postgres_url.rsplit("/", 1)[1]


def build_marts(settings: Settings, participants: int = 60, seed: int = 1) -> None:
    """Synthetic marts, the three per-site tables, and a table of values that are hard to carry."""
    with connect(settings) as con:
        ledger.ensure(con)
        write_synthetic_marts(con, participants=participants, seed=seed)
        con.execute("""
            create or replace table marts.missing_assessments as
            select site, participant_id, 'month_3' as timepoint, 'wemwbs' as instrument,
                'missing' as status, consent_date + 120 as window_closed_date
            from marts.participants where hash(participant_id) % 3 = 0
        """)
        con.execute("""
            create or replace table marts.quarantine as
            select * from (
                select site, '20261120T060000Z' as export_id, site || '/register.csv' as file,
                    row_number() over () + 1 as line, 'gender' as "column", 'invalid_code' as reason,
                    'gender "x", not a code' as detail
                from marts.participants where hash(participant_id) % 4 = 0
                union all
                select null, '20261120T060000Z', 'unknown/manifest.json', null, null,
                    'manifest_invalid', 'no site'
            )
        """)
        con.execute(r"""
            create or replace table marts.type_cases as select * from (values
              (1, 'plain', 1.5::double, 12.34::decimal(10,2), true, date '2026-01-02',
               timestamp '2026-01-02 03:04:05.123456', ['x', 'y "q"', null, 'a,b{c}', 'back\slash'],
               [1, 2, null]::integer[], 12345678901234567890123::hugeint, 0.1::double + 0.2::double,
               timestamptz '2026-03-29 01:30:00+00', 255::utinyint, 18446744073709551615::ubigint,
               1.25::float, time '23:59:59.5', uuid '00000000-0000-0000-0000-000000000001',
               [date '2026-01-01']),
              (2, '', 'nan'::double, null, null, null, null, []::varchar[], null, null, 5e-324::double,
               null, null, null, null, null, null, []::date[]),
              (3, null, 'inf'::double, -0.5, false, date '0001-01-01', timestamp '9999-12-31 23:59:59',
               null, []::integer[], -170141183460469231731687303715884105727::hugeint, -0.0::double,
               timestamptz '1970-01-01 00:00:00+00', 0, 0, 'nan'::float, time '00:00:00', null, null),
              (4, '\.', -1e300, 0, true, date '9999-12-31', null, ['\.', '', 'NULL'], [3], 0, 1e-300,
               null, null, null, -0.0::float, null, null, null),
              (5, e'two\nlines "quoted", \u00e9 \u2013 =SUM(A1)', 1, 1, true, null, null, null, null,
               null, null, null, null, null, null, null, null, null)
            ) v(id, text_value, double_value, decimal_value, boolean_value, date_value,
                timestamp_value, text_list, integer_list, hugeint_value, double_sum, timestamptz_value,
                utinyint_value, ubigint_value, float_value, time_value, uuid_value, date_list)
        """)


def publish() -> dg.ExecuteInProcessResult:
    return dg.materialize([published_marts], resources={"warehouse": Warehouse()}, raise_on_error=False)


def pg_connect(settings: Settings, user: str = PIPELINE_ROLE, **options: str) -> "psycopg2.extensions.connection":
    """A connection as `user` (trust authentication: no password) to the test's database."""
    server = settings.publish_postgres_url.rsplit("@", 1)[1]
    return psycopg2.connect(f"postgresql://{user}@{server}", **options)


@contextlib.contextmanager
def session(settings: Settings, user: str = PIPELINE_ROLE) -> Iterator["psycopg2.extensions.connection"]:
    """An autocommit session, closed afterwards: no transaction of the test's own is left open to
    hold a later publication back."""
    pg = pg_connect(settings, user)
    pg.autocommit = True
    try:
        yield pg
    finally:
        pg.close()


def served_tables(settings: Settings) -> list[str]:
    with session(settings) as pg, pg.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'marts' order by 1")
        return [name for (name,) in cur.fetchall()]


def served_state(settings: Settings) -> dict[str, str]:
    """A digest of every served table's rows, comments and privileges: what a reader could see."""
    state = {}
    with session(settings) as pg:
        for table in served_tables(settings):
            rows = postgres_rows(pg, table)
            with pg.cursor() as cur:
                cur.execute("select c.relacl::text, obj_description(c.oid), c.relrowsecurity "
                            "from pg_class c where c.oid = %s::regclass", (f"marts.{table}",))
                extra = cur.fetchall()
            state[table] = hashlib.sha256(repr((rows, extra)).encode()).hexdigest()
        with pg.cursor() as cur:
            cur.execute("select obj_description('marts'::regnamespace)")
            state["release"] = cur.fetchall()[0][0]
    return state


def grant_login(settings: Settings, login: str, role: str) -> None:
    """What an administrator does for a person: a login role made a member of a group role."""
    with session(settings, "postgres") as pg, pg.cursor() as cur:
        cur.execute("select 1 from pg_roles where rolname = %s", (login,))
        if not cur.fetchall():
            cur.execute(f'create role "{login}" login')
        cur.execute(f'grant "{role}" to "{login}"')


# -- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("duckdb_type", "expected"), [
    ("DATE", "date"),
    ("TIMESTAMP", "timestamp"),
    ("TIMESTAMP WITH TIME ZONE", "timestamptz"),
    ("DECIMAL(12,2)", "numeric(12,2)"),
    ("DECIMAL(4, 1)", "numeric(4,1)"),
    ("BOOLEAN", "boolean"),
    ("DOUBLE", "double precision"),
    ("INTEGER", "integer"),
    ("BIGINT", "bigint"),
    ("HUGEINT", "numeric(39,0)"),  # DuckDB's sum of integers
    ("UBIGINT", "numeric(20,0)"),
    ("VARCHAR", "text"),
    ("VARCHAR[]", "text[]"),
    ("DECIMAL(5,2)[]", "numeric(5,2)[]"),
])
def test_each_duckdb_type_has_its_exact_postgresql_type(duckdb_type: str, expected: str) -> None:
    assert serving.pg_type(duckdb_type) == expected


@pytest.mark.parametrize("duckdb_type", ["INTEGER[][]", "STRUCT(a INTEGER)", "MAP(VARCHAR, INTEGER)", "BLOB",
                                         "TIMESTAMP_NS", "INTEGER[3]", "INTERVAL"])
def test_types_without_a_faithful_postgresql_type_are_refused(duckdb_type: str) -> None:
    with pytest.raises(ValueError, match="no faithful PostgreSQL type"):
        serving.pg_type(duckdb_type)


def test_site_roles_are_named_for_the_site_in_lower_case() -> None:
    assert serving.site_role("kmpt") == "pod_site_kmpt"
    assert serving.site_role("S1") == "pod_site_s1"
    with pytest.raises(serving.ServingError, match="cannot name a PostgreSQL role"):
        serving.site_role("kent; drop role x")


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://pod:pa%40ss@db.trust.nhs.uk:5432/pod", "postgresql://pod:***@db.trust.nhs.uk:5432/pod"),
    ("postgresql://pod@db/pod?password=x&sslmode=require", "postgresql://pod@db/pod?password=***&sslmode=require"),
    ("postgresql:///pod?host=/var/run/postgresql", "postgresql:///pod?host=/var/run/postgresql"),
])
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.parametrize(("name", "value"), [
    ("POD_PUBLISH_POSTGRES_URL", "postgres://pod:secret@db/pod"),
    ("POD_PUBLISH_POSTGRES_URL", "postgresql://pod:secret@db"),
    ("POD_DAGSTER_POSTGRES_URL", "postgresql://pod:secret@db/dagster"),  # SQLAlchemy 2.1: psycopg 3
])
def test_a_url_in_the_wrong_form_is_refused_naming_the_setting_not_the_password(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as refused:
        Settings.from_env({name: value})
    assert "secret" not in str(refused.value)


def test_unset_urls_keep_the_embedded_default() -> None:
    settings = Settings.from_env({})
    assert settings.publish_postgres_url is None and settings.dagster_postgres_url is None
    assert postgres_target(settings) is None


# -- against the server ---------------------------------------------------------------------------


def test_served_marts_equal_the_duckdb_publication_row_for_row(settings: Settings) -> None:
    build_marts(settings)
    result = publish()
    assert result.success
    metadata = result.asset_materializations_for_node("delivery__published_marts")[0].metadata
    assert metadata["postgres"].value == masked_url(settings.publish_postgres_url)
    assert PASSWORD not in metadata["postgres"].value
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        tables = publication.mart_tables(con)
        types = {(t, c): ty for t, c, ty in con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'marts'").fetchall()}
    assert served_tables(settings) == tables
    with session(settings) as pg:
        for table in tables:
            assert postgres_rows(pg, table) == duckdb_rows(settings.published_db, table), table
        with pg.cursor() as cur:
            cur.execute("select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
                        "join pg_class c on c.oid = a.attrelid where c.relnamespace = 'marts'::regnamespace "
                        "and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped")
            served_types = {(t, c): ty for t, c, ty in cur.fetchall()}
            cur.execute("select nspname from pg_namespace where nspname not like 'pg\\_%' "
                        "and nspname not in ('information_schema', 'public')")
            schemas = [name for (name,) in cur.fetchall()]
    assert served_types == {key: _format_type(serving.pg_type(ty)) for key, ty in types.items()}
    assert served_types[("completeness", "pct_scored")] == "numeric(4,1)"
    assert served_types[("type_cases", "text_list")] == "text[]"
    # Only the marts reach the server: no raw, restricted, audit or staged schema.
    assert schemas == ["marts"]


def _format_type(name: str) -> str:
    """PostgreSQL's own spelling of a type (format_type), for comparison."""
    base, brackets = (name[:-2], "[]") if name.endswith("[]") else (name, "")
    spelt = {"timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
             "time": "time without time zone"}.get(base, base)
    return spelt + brackets


def test_tables_and_columns_carry_the_dbt_docs_as_comments(settings: Settings) -> None:
    build_marts(settings)
    assert publish().success
    manifest = ensure_dbt_manifest()
    columns, tables = dbt_docs(manifest), model_descriptions(manifest)
    with session(settings) as pg, pg.cursor() as cur:
        cur.execute("select col_description('marts.participants'::regclass, attnum), attname "
                    "from pg_attribute where attrelid = 'marts.participants'::regclass and attnum > 0")
        comments = {name: comment for comment, name in cur.fetchall()}
        cur.execute("select obj_description('marts.participants'::regclass), "
                    "obj_description('marts.completeness'::regclass)")
        participants_doc, completeness_doc = cur.fetchall()[0]
    assert participants_doc == tables["participants"] and participants_doc.startswith("One row per participant")
    assert completeness_doc == tables["completeness"]
    arm = columns["participants"]["arm"]
    assert arm.unit_or_codes == "codes: POD | TAU", "the arm column's codes (meta.codes, which dbt checks)"
    assert comments["arm"] == f"{arm.description} ({arm.unit_or_codes})"
    assert comments["participant_id"] == columns["participants"]["participant_id"].description


def test_a_reader_in_a_transaction_sees_the_old_marts_until_it_ends(settings: Settings) -> None:
    build_marts(settings, participants=40)
    assert publish().success
    build_marts(settings, participants=70, seed=2)

    def counts(pg: "psycopg2.extensions.connection") -> tuple[int, int]:
        with pg.cursor() as cur:
            cur.execute("select (select count(*) from marts.participants), "
                        "(select sum(expected) from marts.completeness)")
            return cur.fetchall()[0]

    fresh = pg_connect(settings)
    fresh.autocommit = True
    old = counts(fresh)
    # One reader has read the marts; another has only begun (its snapshot predates the new data).
    reading, begun = pg_connect(settings), pg_connect(settings)
    for reader in (reading, begun):
        reader.set_session(isolation_level="REPEATABLE READ")
    assert counts(reading) == old
    with begun.cursor() as cur:
        cur.execute("select 1")
    outcome: dict[str, object] = {}

    def republish() -> None:
        with connect(settings) as con:
            try:
                outcome["done"] = publication.publish(con, settings.published_db, "run-republish",
                                                      postgres=postgres_target(settings))
            except Exception as exc:  # reported by the assertions below
                outcome["error"] = exc

    publisher = threading.Thread(target=republish)
    publisher.start()
    try:
        deadline = time.monotonic() + 60
        while not _staged_schemas(fresh) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _staged_schemas(fresh), "the new marts were never staged"
        # The publisher now retries the swap; new readers meanwhile are served at once, never
        # queued behind a swap waiting for its locks.
        slowest = max(_seconds(lambda: counts(fresh)) for _ in _for_seconds(3))
        assert slowest < 2.5, f"a new reader waited {slowest:.1f} s"  # queued, it would wait 5 s
        assert publisher.is_alive() and counts(fresh) == old, "swapped under an open reader"
        assert counts(reading) == old
        reading.commit()
        time.sleep(3)  # long enough for the publisher's next attempt
        assert publisher.is_alive() and counts(fresh) == old, "swapped under a reader that only began"
        assert counts(begun) == old, "a reader that began before the new data must keep the old"
        begun.commit()
    finally:
        publisher.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["done"].served.waited_seconds >= 2
    new = counts(fresh)
    assert new[0] == 70 and new != old
    assert counts(reading) == new and counts(begun) == new
    assert not _staged_schemas(fresh)
    for pg in (fresh, reading, begun):
        pg.close()


def _seconds(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _for_seconds(seconds: float) -> Iterator[None]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield
        time.sleep(0.05)


def _staged_schemas(pg: "psycopg2.extensions.connection") -> list[str]:
    with pg.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like 'marts\\_staged\\_%'")
        return [name for (name,) in cur.fetchall()]


def _published_then_rebuilt(settings: Settings, participants: int, seed: int) -> tuple[str, object]:
    """Publish 30 participants, then rebuild the working marts with others (not yet published):
    the published file's digest and the served state, as a failed publication must leave them."""
    build_marts(settings, participants=30)
    assert publish().success
    before = hashlib.sha256(settings.published_db.read_bytes()).hexdigest(), served_state(settings)
    build_marts(settings, participants=participants, seed=seed)
    return before


def test_readers_that_never_finish_fail_the_publication_and_change_nothing(settings: Settings) -> None:
    before_db, before = _published_then_rebuilt(settings, participants=50, seed=3)
    reader = pg_connect(settings, application_name="an analyst's notebook")
    with reader.cursor() as cur:
        cur.execute("select count(*) from marts.participants")  # and then left open
    try:
        target = serving.Target(settings.publish_postgres_url, wait_seconds=1)
        with connect(settings) as con, pytest.raises(serving.ServingError) as refused:
            publication.publish(con, settings.published_db, "run-blocked", postgres=target)
    finally:
        reader.close()
    message = str(refused.value)
    assert "an analyst's notebook" in message and "idle_in_transaction_session_timeout" in message
    assert PASSWORD not in message
    assert served_state(settings) == before
    assert hashlib.sha256(settings.published_db.read_bytes()).hexdigest() == before_db
    with session(settings) as pg:
        assert not _staged_schemas(pg)


def test_the_analyst_role_reads_every_mart_and_nothing_else(settings: Settings) -> None:
    build_marts(settings)
    with session(settings, "postgres") as pg, pg.cursor() as cur:
        # What else a shared database may hold: the pipeline's own table, another team's schema.
        cur.execute(f"set role {PIPELINE_ROLE}; create table public.pipeline_notes as select 1 as x; "
                    "reset role; create schema other_team; create table other_team.secrets as select 1 as x")
    assert publish().success
    grant_login(settings, "alice", serving.ANALYST_ROLE)
    with session(settings, "postgres") as pg, pg.cursor() as cur:
        cur.execute("select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on "
                    "n.oid = c.relnamespace where c.relkind in ('r', 'v', 'm', 'p', 'f') and n.nspname not in "
                    "('pg_catalog', 'information_schema') and has_table_privilege('alice', c.oid, 'select') "
                    "order by 1")
        readable = [name for (name,) in cur.fetchall()]
    assert readable == [f"marts.{table}" for table in served_tables(settings)]
    with session(settings, "alice") as alice:
        for statement in ("select * from public.pipeline_notes", "select * from other_team.secrets",
                          "create table marts.mine (x int)", "delete from marts.participants",
                          "insert into marts.quarantine (site) values ('x')", "drop table marts.participants"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), alice.cursor() as cur:
                cur.execute(statement)
        # Row-level security on the site tables hides no row from analysts.
        for table in SITE_TABLES:
            assert postgres_rows(alice, table) == duckdb_rows(settings.published_db, table)


def test_a_site_role_reads_only_its_own_sites_rows_of_the_site_tables(settings: Settings) -> None:
    build_marts(settings)
    assert publish().success
    with duckdb.connect(str(settings.published_db), read_only=True) as con:
        sites = [s for (s,) in con.execute("select distinct site from marts.participants order by 1").fetchall()]
    assert len(sites) >= 2
    for site in sites:
        login = f"manager_{site.lower()}"
        grant_login(settings, login, serving.site_role(site))
        with session(settings, login) as manager:
            for table in SITE_TABLES:
                rows = postgres_rows(manager, table)
                assert rows == duckdb_rows(settings.published_db, table, f"where site = '{site}'"), (site, table)
                assert rows, f"{site} should have rows in {table}"
            for table in sorted(set(served_tables(settings)) - set(SITE_TABLES)):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege), manager.cursor() as cur:
                    cur.execute(f'select 1 from marts."{table}" limit 1')
    # A site the protocol seed knows, with no data yet, has its role and sees nothing.
    grant_login(settings, "manager_slam", serving.site_role("slam"))
    with session(settings, "manager_slam") as manager:
        assert all(postgres_rows(manager, table) == [] for table in SITE_TABLES)


def test_a_new_server_to_serve_from_makes_the_next_run_publish_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is part of what a run's outputs depend on, so a run with no new data still fills it."""
    build_marts(settings, participants=10)
    assert publish().success
    with connect(settings) as con:
        assert last_published_fingerprint(con) == fingerprint(con, settings)
        monkeypatch.delenv("POD_PUBLISH_POSTGRES_URL")
        assert fingerprint(con, Settings.from_env()) != fingerprint(con, settings)
        monkeypatch.setenv("POD_PUBLISH_POSTGRES_URL", settings.publish_postgres_url.replace(PASSWORD, "rotated"))
        assert fingerprint(con, Settings.from_env()) == fingerprint(con, settings), "a new password is no new server"


def test_republishing_is_idempotent_and_keeps_roles_and_grants(settings: Settings) -> None:
    build_marts(settings, participants=20)
    assert publish().success
    grant_login(settings, "bob", serving.ANALYST_ROLE)
    build_marts(settings, participants=25, seed=4)
    assert publish().success
    with session(settings, "bob") as bob, bob.cursor() as cur:
        cur.execute("select count(*) from marts.participants")
        assert cur.fetchall() == [(25,)]
    with session(settings) as pg, pg.cursor() as cur:
        cur.execute("select rolname, rolcanlogin from pg_roles where rolname like 'pod\\_%' order by 1")
        roles = cur.fetchall()
        cur.execute("select nspowner::regrole::text from pg_namespace where nspname = 'marts'")
        owner = cur.fetchall()
    assert (serving.ANALYST_ROLE, False) in roles and ("pod_site_s1", False) in roles
    assert len(roles) == len({name for name, _ in roles})
    assert owner == [(PIPELINE_ROLE,)]


def test_a_failed_publication_leaves_the_served_marts_as_they_were(settings: Settings) -> None:
    before_db, before = _published_then_rebuilt(settings, participants=45, seed=5)
    with connect(settings) as con:
        # The last table loaded holds a value PostgreSQL refuses (text cannot hold a NUL byte),
        # so the load fails after every other table has been copied.
        con.execute("create table marts.zz_refused as select 'before' || chr(0) || 'after' as note")
    result = publish()
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "POD_PUBLISH_POSTGRES_URL" in message and "COPY zz_refused, line 1" in message
    assert "zz_refused" not in served_tables(settings)
    assert PASSWORD not in message and "***" in message
    assert served_state(settings) == before
    assert hashlib.sha256(settings.published_db.read_bytes()).hexdigest() == before_db
    with session(settings) as pg:
        assert not _staged_schemas(pg)
    assert not list(settings.warehouse_dir.glob(f"{serving.SCRATCH_PREFIX}*"))


def test_a_run_stopped_by_a_blocking_check_leaves_the_served_marts_as_they_were(settings: Settings) -> None:
    build_marts(settings, participants=30)
    assert publish().success
    before = served_state(settings)
    participants_key = dg.AssetKey(["marts", "participants"])

    @dg.asset(key=participants_key,
              check_specs=[dg.AssetCheckSpec("no_missing_arm", asset=participants_key, blocking=True)])
    def participants(warehouse: Warehouse):
        with warehouse.connect() as con:
            con.execute("update marts.participants set arm = null where participant_id = 'P0000001'")
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="no_missing_arm", passed=False)

    result = dg.materialize([participants, published_marts], resources={"warehouse": Warehouse()},
                            raise_on_error=False)
    assert not result.success
    assert PUBLISHED_KEY not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert served_state(settings) == before
