"""What `pod synth` wrote: the summary it prints and the planted-defect record."""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pod_devtools.synth.zone import SiteOutcome

PLANTED = "planted.json"


@dataclass
class SynthReport:
    """Counts of a written landing zone, and what was planted in it."""

    out_dir: Path
    sites: list[str] = field(default_factory=list)
    batches: int = 0
    files: int = 0
    rows: Counter = field(default_factory=Counter)
    planted: list[dict[str, object]] = field(default_factory=list)
    notes: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, code: str, outcome: SiteOutcome) -> None:
        """Count in one site's outcome."""
        self.sites.append(code)
        self.batches += outcome.batches
        self.files += outcome.files
        self.rows.update(outcome.rows)
        self.planted += outcome.planted
        self.notes += outcome.notes

    def write_planted(self) -> Path:
        """planted.json: the exact quarantine rows a correct pipeline produces, and expect notes."""
        path = self.out_dir / PLANTED
        path.write_text(
            json.dumps({"quarantine": self.planted, "expect": self.notes}, indent=1) + "\n",
            encoding="utf-8",
        )
        return path

    def summary(self) -> str:
        """What `pod synth` prints: sites, batches, files, rows, planted defects, time."""
        plural = "s" if len(self.sites) != 1 else ""
        lines = [
            f"Synthetic landing zone in {self.out_dir}: {len(self.sites)} site{plural} "
            f"({', '.join(self.sites)}), "
            f"{self.batches} batches, {self.files} files, in {self.seconds:.1f} s",
            "rows written (all batches):",
        ]
        lines += [f"  {name:<24}{count:>12,}" for name, count in sorted(self.rows.items())]
        by_reason = Counter((p["scope"], p["reason"]) for p in self.planted)
        if by_reason:
            lines.append(f"planted defects ({len(self.planted)} quarantine rows, see {PLANTED}):")
            lines += [
                f"  {scope:<11}{reason:<22}{count:>5}"
                for (scope, reason), count in sorted(by_reason.items())
            ]
        else:
            lines.append("planted defects: none")
        return "\n".join(lines)
