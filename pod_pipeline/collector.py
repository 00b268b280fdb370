"""Python's cyclic garbage collector in the processes a `pod` command starts for itself.

A run's process imports Dagster, Great Expectations, pandas and scipy and builds the definitions;
its warm dbt process imports dbt and then loads the manifest. Those are hundreds of thousands of
objects that live until the process ends, and every full collection walks all of them, while the
run allocates enough (Dagster's events, dbt's context for each node) to start about 1,600
collections in the run's process and 1,300 in dbt's. On the bundled sample that was 1.5-1.9 s of
collection in the run's process and 1.0-1.4 s in dbt's, against 8-11 s for the whole dbt build;
and a process still collects once more as it exits, 0.5 s of the time the run waited for dbt's
process to end.

`settle()` moves every object that exists to the permanent generation, which no collection walks,
and starts a young-generation collection every 10,000 net allocations instead of 700 (the older
generations keep Python's thresholds, so cyclic garbage is still freed within a few of those).
`without_final_collection()` does the same for a process about to end: its atexit handlers still
run (dbt-duckdb's closes the working database if dbt's command has not), but the collections of
the interpreter's teardown have nothing to walk.

Only for a process of its own (`own_process()`): frozen objects are never collected, so a process
that runs many pipelines in turn (a test process) must not freeze after each run's imports; it
keeps Python's defaults.
"""

import gc

# Net allocations between young-generation collections (Python's default is 700).
YOUNG_GENERATION_THRESHOLD = 10_000

_own_process = False


def own_process() -> None:
    """Say that this process runs one `pod` command and ends: `settle()` then applies."""
    global _own_process
    _own_process = True


def settle() -> None:
    """After the imports and definitions the process keeps to its end (in a process of its own)."""
    if _own_process:
        gc.freeze()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def without_final_collection() -> None:
    """Before a process of its own ends: nothing left for the teardown's collections to walk."""
    if _own_process:
        gc.freeze()
