"""Measuring a command the way a user runs it: wall time, CPU time, peak memory of its process tree."""

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    output: str
    # At the sample with the tree's peak, MB by process (`process_label`): which process the peak
    # is made of (at 1,000,000 participants, `pod`'s own process, or dbt's beside it).
    peak_by_process: dict[str, float] = field(default_factory=dict)
    # When that sample was taken, in seconds from the start (to be read beside the run's steps).
    peak_at_s: float | None = None


def _children(pid: int, table: dict[int, list[int]]) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(table.get(current, []))
    return found


def process_label(argv: list[str]) -> str:
    """A process's name for the report: the module of `python -m module`, else the program or
    script's file name (`pod`, `pod-dbt`, `make`)."""
    if len(argv) == 1 and " " in argv[0]:  # a process that rewrote its command line (Chromium's)
        argv = argv[0].split()
    if not argv:
        return "?"
    program = Path(argv[0]).name
    if not program.startswith("python"):
        return program
    for position, arg in enumerate(argv[1:], start=1):  # the interpreter's options, then what it runs
        if arg == "-c":
            return f"{program} -c"
        if arg == "-m":
            return argv[position + 1] if position + 1 < len(argv) else program
        if not arg.startswith("-"):
            return Path(arg).name
    return program


def tree_rss_by_process(root: int) -> dict[str, int]:
    """Resident memory of a process and all its descendants, from /proc, in bytes by
    `process_label` (processes of one label summed)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    by_label: dict[str, int] = {}
    for pid in _children(root, parents):
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        label = process_label([a for a in argv if a] if argv else [])
        by_label[label] = by_label.get(label, 0) + resident
    return by_label


def run_measured(command: list[str], env: dict[str, str], cwd: Path | None = None,
                 interval_s: float = 0.1) -> Measurement:
    """Run a command to completion, sampling its process tree's memory every `interval_s`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak, peak_parts, peak_at = 0, {}, None
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_parts, peak_at
        while not done.is_set():
            parts = tree_rss_by_process(process.pid)
            if (total := sum(parts.values())) > peak:
                peak, peak_parts, peak_at = total, parts, time.monotonic() - started
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not peak_parts and after.ru_maxrss > before.ru_maxrss:
        # A run too short for a sample: the largest process this one has waited for, a floor for
        # the tree's peak. Only then, since it may be another child's (a test's earlier server).
        peak = after.ru_maxrss * 1024
    by_process = {label: round(b / 2**20, 1) for label, b in sorted(peak_parts.items(), key=lambda x: -x[1])
                  if b >= 2**19}  # processes of half a MB and more
    return Measurement(wall, cpu, peak / 2**20, process.returncode, output, by_process, peak_at)
