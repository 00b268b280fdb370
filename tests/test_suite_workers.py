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
