"""Libraries a run needs later, imported now in a background thread.

A run's process spends stretches waiting for work done outside Python bytecode: for dbt, which
runs as a subprocess, and for DuckDB, which releases Python's lock while it works. Importing in
those stretches a library that a later step imports anyway saves that step's import time
(scipy, statsmodels and matplotlib during dbt; Great Expectations during the first loads).
"""

import importlib
import threading
from collections.abc import Sequence


def import_in_background(modules: Sequence[str]) -> None:
    """Import the modules in a daemon thread, in order."""
    threading.Thread(target=_import_quietly, args=(tuple(modules),), daemon=True,
                     name="pod-preload").start()


def _import_quietly(modules: Sequence[str]) -> None:
    """Import the modules, ignoring failures: the step that needs one imports it again and fails
    there, with its own traceback."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 (reported by the step that uses it)
            continue
