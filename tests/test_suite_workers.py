"""The suite's own parallelism: `make test` runs each tier with `-n 2 --dist loadgroup`, and
tests/conftest.py puts the tests that share a session's pipeline runs in one xdist group so those
runs happen once. pytest-xdist's grouping has broken silently before (with pytest 9.2, #1386: every
test distributed as if ungrouped, so each worker told the story again); this test fails instead."""

import re
import subprocess
import sys
from pathlib import Path

CONFTEST = '''
import pytest

@pytest.fixture(scope="session")
def story():
    return "told once"

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "story" in item.fixturenames:  # as tests/conftest.py groups them
            item.add_marker(pytest.mark.xdist_group("story"))
'''
MODULE = '''
import time

def test_reads_the_story(story):
    time.sleep(0.3)

def test_alone():
    time.sleep(0.3)
'''


def test_tests_sharing_a_session_fixture_run_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for number in range(4):
        (tmp_path / f"test_module_{number}.py").write_text(MODULE)
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                          "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    placed = re.findall(r"\[(gw\d)\].*PASSED \S+::(test_\w+)", run.stdout)
    assert len(placed) == 8, run.stdout[-2000:]
    story_workers = {worker for worker, test in placed if test == "test_reads_the_story"}
    assert len(story_workers) == 1, f"the story's readers ran on {sorted(story_workers)}"
    assert {worker for worker, _ in placed} == {"gw0", "gw1"}  # and both workers were used


def test_the_longest_scopes_are_shared_out_between_the_workers_before_the_run(tmp_path: Path) -> None:
    """tests/conftest.py with tests/scheduling.py: the scopes scheduling names run on the worker
    `shares` gives them, each worker's share one group; the scopes it does not name run too."""
    here = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((here / "conftest.py").read_text())
    measured = {"test_module_0.py::test_long_a": 4, "test_module_0.py::test_long_b": 3,
                "test_module_1.py::test_long_c": 2, "test_module_1.py::test_long_d": 1}
    (tmp_path / "scheduling.py").write_text(
        (here / "scheduling.py").read_text() + f"\nMEASURED_SECONDS = {measured!r}\n")
    for number, names in enumerate([("long_a", "long_b", "short_0", "other_0"),
                                    ("long_c", "long_d", "short_1", "other_1", "more_1", "last_1")]):
        (tmp_path / f"test_module_{number}.py").write_text("import time\n" + "".join(
            f"\n\ndef test_{name}():\n    time.sleep(0.2)\n" for name in names))
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                          "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    placed = {test: worker for worker, test in re.findall(r"\[(gw\d)\].*PASSED \S+::(test_\w+)", run.stdout)}
    assert len(placed) == 10, run.stdout[-2000:]
    # Longest first onto the least loaded: 4 s and 1 s onto one worker, 3 s and 2 s onto the other.
    assert placed["test_long_a"] == placed["test_long_d"] != placed["test_long_b"] == placed["test_long_c"]
    assert "@worker-share-0" in run.stdout and "@worker-share-1" in run.stdout


def test_what_scheduling_measured_names_tests_and_groups_that_exist() -> None:
    """A renamed test or group would silently lose its place in the split: each name in
    MEASURED_SECONDS is a test function in its file, a session's shared runs, or a test module."""
    from conftest import SHARED_RUNS
    from scheduling import MEASURED_SECONDS

    here = Path(__file__).parent
    for name in MEASURED_SECONDS:
        if "::" in name:
            path, function = name.split("::")
            assert f"def {function}(" in (here.parent / path).read_text(), name
        else:
            assert name in SHARED_RUNS.values() or (here / f"{name}.py").is_file(), name


def test_the_measured_scopes_split_evenly_over_two_workers() -> None:
    from scheduling import MEASURED_SECONDS, shares

    placed = shares(MEASURED_SECONDS, 2)
    load = [sum(s for name, s in MEASURED_SECONDS.items() if placed[name] == w) for w in (0, 1)]
    assert abs(load[0] - load[1]) <= min(MEASURED_SECONDS.values()), load
    assert set(shares(MEASURED_SECONDS, 1).values()) == {0}
