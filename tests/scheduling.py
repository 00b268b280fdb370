"""The slow tier's longest scopes, shared out between the xdist workers before the run.

pytest-xdist (`--dist loadgroup`) hands a worker a whole scope (an xdist group, or one test) each
time it runs low, with one more queued behind it, and queues the scopes by how many tests they
hold, not how long they take. In the slow tier a few scopes take nearly all the time, so the queue's
order decided the tier's length: on 2026-12-07 its 1,092 s of tests took 623 s on two workers,
one of them running alone for the last minute and more. The scopes measured below are therefore
split between the workers beforehand (`shares`: longest first, each onto the least loaded
worker), each worker's share one xdist group (tests/conftest.py). Any other scope is handed out as
before, to whichever worker runs low first.

The figures only order and split the work: a test that takes longer than written here still runs
in full, and a stale figure costs balance, never a result.
"""

# Seconds each scope took in the slow tier (2026-12-07, two workers, `--durations`): by xdist group
# (a session's shared runs, or a module with a module-scoped fixture) or by test, its parameters'
# durations summed.
MEASURED_SECONDS = {
    "tests/test_bench.py::test_bench_smoke_run_at_50_and_2000": 174,
    "story": 172,
    "test_ui_browser": 148,
    "sample_run": 139,
    "test_pipeline_e2e": 135,
    "tests/test_cross_file_marts.py::"
    "test_a_late_register_brings_rows_into_the_marts_and_a_dropped_participant_takes_them_out": 92,
    "test_postgres_instance": 90,
    "tests/test_runner_report.py::"
    "test_pod_deliver_delivers_refuses_a_second_delivery_and_delivers_into_a_new_folder": 62,
    "tests/test_reliability.py::test_a_warehouse_that_fails_mid_run_is_named_without_a_traceback": 55,
    "tests/test_hostile_input.py::test_whole_pipeline_survives_a_heavily_mutated_zone": 26,
}
SHARE_GROUP = "worker-share-{}"


def scope_key(nodeid: str, group: str | None) -> str:
    """How MEASURED_SECONDS names a test's scope: its xdist group, else its test without parameters."""
    return group or nodeid.split("[", 1)[0]


def shares(seconds: dict[str, float], workers: int) -> dict[str, int]:
    """Each scope's worker (0 to workers - 1): longest first, each onto the worker with the fewest
    seconds so far (ties to the lower number; equal seconds in name order), so every process of
    the suite computes the same split."""
    load = [0.0] * workers
    placed = {}
    for key in sorted(seconds, key=lambda name: (-seconds[name], name)):
        worker = load.index(min(load))
        placed[key] = worker
        load[worker] += seconds[key]
    return placed
