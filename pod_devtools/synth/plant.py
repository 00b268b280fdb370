"""The batch a defect is planted in, and the record of what was planted where."""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pod_devtools.synth.config import SiteSpec
from pod_devtools.synth.people import People, study_ids
from pod_devtools.synth.writer import Anchor, CsvFile, row_values, with_value

REGISTER, REDCAP, HONOS, MEETINGS, ACUTE_CARE = (
    "register.csv",
    "redcap_records.csv",
    "honos.csv",
    "network_meetings.csv",
    "acute_care.csv",
)


@dataclass(frozen=True)
class Plant:
    """One quarantine row the pipeline must produce; anchor None for a whole batch or file."""

    file: str
    anchor: Anchor | None
    column: str | None
    reason: str
    scope: str


@dataclass
class Batch:
    """A regular export being assembled: its files, and who each table row is about."""

    spec: SiteSpec
    export_id: str
    export_day: np.datetime64
    people: People
    files: dict[str, CsvFile]
    persons: dict[str, np.ndarray]  # file -> participant index of each table row
    redcap_event: np.ndarray  # timepoint of each REDCap table row
    redcap_instance: np.ndarray  # repeat instance of each REDCap table row (0: main row)
    rng: np.random.Generator
    spare_nhs: np.ndarray  # valid NHS numbers nobody at the site has
    plants: list[Plant] = field(default_factory=list)
    used: set[tuple[str, int]] = field(default_factory=set)
    new_people: int = 0

    def pick(self, file: str, candidates: np.ndarray, exclusive: bool = True) -> int:
        """A candidate row (mask) no defect has changed; an exclusive pick is kept from later ones.

        A row that only serves as the template of a copy need not be exclusive.
        """
        rows = np.flatnonzero(candidates)
        order = rows[self.rng.permutation(len(rows))]
        row = next((int(r) for r in order if (file, int(r)) not in self.used), None)
        if row is None:
            raise ValueError(f"{self.spec.code}/{self.export_id}/{file}: no row left for a defect")
        if exclusive:
            self.used.add((file, row))
        return row

    def values(self, file: str, row: int) -> dict[str, str]:
        """A table row as the text the file holds, by column."""
        table = self.files[file].table
        return dict(zip(table.column_names, row_values(table, row), strict=True))

    def append(
        self, file: str, values: dict[str, str] | list[str], reason: str, column: str | None
    ) -> None:
        """Add a hand-made row at the end of the file, to be quarantined for `reason`."""
        target = self.files[file]
        row = list(values.values()) if isinstance(values, dict) else values
        target.extra_rows.append(row)
        self.plants.append(
            Plant(file, ("extra", len(target.extra_rows) - 1), column, reason, "row")
        )

    def duplicate(self, file: str, row: int, column: str) -> None:
        """Repeat a row's key at the end of the file: both copies are quarantined."""
        self.used.add((file, row))
        self.plants.append(Plant(file, ("row", row), column, "duplicate_key", "row"))
        self.append(file, self.values(file, row), "duplicate_key", column)

    def edit(self, file: str, row: int, column: str, value: str, reason: str) -> None:
        """Put a bad value into one REDCap instrument field of an existing row."""
        target = self.files[file]
        target.table = with_value(target.table, column, row, value)
        self.plants.append(Plant(file, ("row", row), column, reason, "instrument"))

    def new_study_id(self) -> str:
        """A study id beyond the site's participants, for a register row with no other data."""
        self.new_people += 1
        return str(study_ids(self.spec, np.array([self.spec.participants + self.new_people]))[0])

    def unknown_study_id(self) -> str:
        """A well-formed study id the register does not hold."""
        return str(
            study_ids(self.spec, np.array([self.spec.participants + 900 + len(self.plants)]))[0]
        )


Overrides = Callable[[Batch, dict[str, str]], dict[str, str]]


def malformed(file: str, values: list[str]) -> list[str]:
    """A record with the wrong number of fields: an unquoted comma, or trailing fields cut off."""
    if file == HONOS:
        return [*values[:3], "Nurse", " Band 6", *values[4:]]
    return values[:-2]
