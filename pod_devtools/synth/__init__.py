"""Synthetic landing zones: contract-conformant exports, optionally with every kind of defect.

`generate` writes <out>/<site>/<export_id>/ batches (cumulative snapshots, sealed with
manifest.json) and, for --messy or a preset, <out>/planted.json: the exact quarantine rows a
correct pipeline must produce, plus notes on what it must load, warn about or flag.
"""

import time
from pathlib import Path

import numpy as np

from pod_devtools.synth.config import sample_zone, trial_zone
from pod_devtools.synth.nhs import valid_test_numbers
from pod_devtools.synth.plans import plan_for
from pod_devtools.synth.report import SynthReport
from pod_devtools.synth.site import make_site
from pod_devtools.synth.zone import write_site

MESSY_MINIMUM = 20  # participants per site: enough rows to plant every defect on a row of its own
SPARE_NHS = 8  # valid numbers per site that nobody has: for unlinked ratings

__all__ = ["SynthReport", "generate"]


def generate(
    out_dir: Path,
    *,
    sites: int,
    participants_per_site: int,
    seed: int,
    batches: int,
    messy: bool,
    preset: str | None,
) -> SynthReport:
    """Write a synthetic landing zone; the same arguments always give byte-identical files."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if preset not in (None, "sample"):
        raise ValueError(f"unknown preset {preset!r}: the one preset is 'sample'")
    if preset and messy:
        raise ValueError(
            "--messy does not combine with --preset sample, which plants its own few defects"
        )
    if messy and participants_per_site < MESSY_MINIMUM:
        raise ValueError(f"--messy needs at least {MESSY_MINIMUM} participants per site")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} is not empty: synth writes a fresh landing zone (remove it first)"
        )
    specs = sample_zone() if preset else trial_zone(sites, participants_per_site, batches)
    zone_stream, *site_streams = np.random.SeedSequence(seed).spawn(1 + len(specs))
    pool = valid_test_numbers()
    order = np.random.default_rng(zone_stream).permutation(len(pool))
    report, offset = SynthReport(out_dir), 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, spec in enumerate(specs):
        # Consecutive slices of one shuffle: distinct numbers within a site, and across sites
        # while the zone needs fewer than the test range holds.
        numbers = pool[order[(offset + np.arange(spec.participants + SPARE_NHS)) % len(pool)]]
        offset += len(numbers)
        # Streams 0-3 and 6 draw the site's truth (6, added last, the acute-care episodes, so the
        # other files of a seed stay as they were), 4 and 5 its corrections and defects.
        streams = [np.random.default_rng(s) for s in site_streams[index].spawn(7)]
        site = make_site(spec, [*streams[:4], streams[6]], numbers[: spec.participants])
        plan = plan_for(spec.code, index, len(specs), messy, preset)
        first_messy = messy and index == 0
        outcome = write_site(
            site,
            out_dir / spec.code,
            plan,
            (streams[4], streams[5]),
            numbers[spec.participants :],
            drift=first_messy,
            faults=first_messy,
        )
        report.add(spec.code, outcome)
    if messy or preset:
        report.write_planted()
    report.seconds = time.perf_counter() - started
    return report
