"""The working database's connections (resources.connect): checkpoints that do not merge row
groups, and a table rebuilt site by site that keeps its size all the same; memory a query lets go
of given back to the system."""

import subprocess
import sys
from pathlib import Path

import pytest

from pod_pipeline.resources import connect
from pod_pipeline.settings import Settings
from pod_pipeline.sql import in_any_order

SITES, ROWS_PER_SITE = 4, 150_000  # a site's rows fill more than one row group (122,880 rows)


def _row_groups(con) -> int:
    return con.execute("select count(distinct row_group_id) from pragma_storage_info('t')").fetchone()[0]


def _site_rows(site: int, first: int) -> str:
    return (f"select 'site{site}' as site, i, md5(cast(i as varchar)) as v "
            f"from range({first}, {first + ROWS_PER_SITE}) r(i)")


def test_a_table_rebuilt_site_by_site_keeps_its_size_though_row_groups_are_not_merged(tmp_path: Path) -> None:
    """As ingestion rebuilds a site's raw rows: delete them, append the new export's rows on both
    cores, checkpoint. Row groups left with no row must be dropped at the checkpoint even though
    row groups are not merged: else every rebuild would leave the site's old rows in the file."""
    settings = Settings.from_env({"POD_DATA_DIR": str(tmp_path / "data")})
    with connect(settings) as con:
        assert con.execute("select current_setting('max_vacuum_tasks')").fetchone()[0] == 0
        con.execute("create table t as " + " union all ".join(
            _site_rows(site, site * ROWS_PER_SITE) for site in range(SITES)))
        con.execute("checkpoint")
        sizes, groups = [], []
        for rebuild in range(3 * SITES):
            site = rebuild % SITES
            with in_any_order(con):
                con.execute("begin")
                con.execute(f"delete from t where site = 'site{site}'")
                con.execute("insert into t " + _site_rows(site, (rebuild + SITES) * ROWS_PER_SITE))
                con.execute("commit")
            con.execute("checkpoint")
            sizes.append(settings.work_db.stat().st_size)
            groups.append(_row_groups(con))
        assert con.execute("select site, count(*) from t group by 1 order by 1").fetchall() == [
            (f"site{site}", ROWS_PER_SITE) for site in range(SITES)]
        # Once every site has been rebuilt, further rebuilds neither grow the file nor add row groups.
        assert max(sizes[SITES:]) <= 1.1 * sizes[SITES - 1], sizes
        assert max(groups[SITES:]) <= groups[SITES - 1] + 1, groups


# A query whose aggregate holds a few hundred MB, then the process's resident memory right after it
# and two seconds later. Run in a process of its own: the allocator's setting is process-wide.
PROBE = """
import os, sys, time, duckdb
from pod_pipeline.resources import connect
from pod_pipeline.settings import Settings

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

if sys.argv[1] == "pipeline":
    con = connect(Settings.from_env({"POD_DATA_DIR": sys.argv[2]}))
else:
    con = duckdb.connect()
    con.execute("set memory_limit = '2GB'")
before = resident_mb()
con.execute("select count(*), sum(len(l)) from (select i % 1000 as g, list(i * 1.5) as l "
            "from range(20000000) r(i) group by g)").fetchall()
after = resident_mb()
time.sleep(2)
print(before, after, resident_mb())
"""


@pytest.mark.parametrize("connection", ["pipeline", "duckdb_default"])
def test_memory_a_query_lets_go_of_goes_back_to_the_system(connection: str, tmp_path: Path) -> None:
    """The pipeline's connections give freed memory back within seconds; DuckDB's default keeps it
    until the database closes (the control: without it this test could not tell them apart)."""
    out = subprocess.run([sys.executable, "-c", PROBE, connection, str(tmp_path / "data")],
                         capture_output=True, text=True, check=True).stdout
    before, after, later = (int(v) for v in out.split()[-3:])  # after DuckDB's progress bar, if any
    assert after - before > 200, out  # the query held a few hundred MB at its end
    kept = (later - before) / (after - before)
    if connection == "pipeline":
        assert kept < 0.25, out
    else:
        assert kept > 0.75, out
