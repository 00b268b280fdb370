"""pod_pipeline/collector.py: a `pod` command's own process (and its warm dbt) freezes what it keeps
to its end and collects the young generation less often; in any other process, a test's among
them, the collector's functions change nothing."""

import gc
import json
import subprocess
import sys

from pod_pipeline import collector

# Run in a fresh interpreter: freezing is for the life of the process.
OWN_PROCESS = """
import gc, json
from pod_pipeline import collector
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
kept = [[i] for i in range(1000)]  # objects that live to the end, as imported modules do
collector.own_process()
collector.settle()
settled = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
later = [[i] for i in range(1000)]
collector.without_final_collection()
print(json.dumps({"before": before, "settled": settled, "ended": gc.get_freeze_count()}))
"""


def test_a_commands_own_process_freezes_what_it_keeps_and_collects_less_often() -> None:
    done = subprocess.run([sys.executable, "-c", OWN_PROCESS], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["before"]["frozen"] == 0
    assert seen["settled"]["frozen"] >= 1000
    assert seen["settled"]["threshold"] == [collector.YOUNG_GENERATION_THRESHOLD,
                                            *seen["before"]["threshold"][1:]]
    # What it made after settling is frozen too before it ends: the teardown walks nothing.
    assert seen["ended"] >= seen["settled"]["frozen"] + 1000


def test_in_any_other_process_the_collector_changes_nothing() -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    collector.settle()
    collector.without_final_collection()
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
