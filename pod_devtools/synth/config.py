"""What a synthetic landing zone holds: its sites, their recruitment and their export times."""

import datetime as dt
from dataclasses import dataclass

SITE_CODES = (
    "kmpt",
    "slam",
    "nelft",
    "cwp",
    "tewv",
    "sabp",
    "lypft",
    "avon",
    "nottshc",
    "elft",
    "cnwl",
    "merseycare",
)
# The 999 test range holds about 909,000 valid NHS numbers and study ids take at most 6 digits.
MAX_PARTICIPANTS_PER_SITE = 800_000
WITHDRAWAL_TYPES = ("follow_up", "died", "all_data")
TRIAL_RECRUITMENT = (dt.date(2025, 3, 3), dt.date(2026, 1, 30))
TRIAL_FINAL_EXPORT = dt.datetime(2026, 11, 20, 6, 0)


@dataclass(frozen=True)
class SiteSpec:
    """One site: how many it recruits, when, how it is randomised, when and how it exports."""

    code: str
    participants: int
    recruitment: tuple[dt.date, dt.date]
    exports: tuple[dt.datetime, ...]
    clusters: int  # 0: not randomised, everyone POD (the original study)
    withdrawal_rates: tuple[float, float, float]  # follow_up, died, all_data
    forced_withdrawals: tuple[str, ...]  # at least one of each of these types
    crlf: bool = False
    register_bom: bool = False
    access_group: bool = True
    delivers_acute_care: bool = True  # the EPR's acute_care.csv, in every export of the site

    @property
    def prefix(self) -> str:
        """The study id prefix: the site code in capitals."""
        return self.code.upper()

    @property
    def export_ids(self) -> tuple[str, ...]:
        """Batch folder names: the UTC export times."""
        return tuple(e.strftime("%Y%m%dT%H%M%SZ") for e in self.exports)

    @property
    def id_width(self) -> int:
        """Digits of the study id number: 4, or more for a large site (the contract allows 3-6)."""
        return max(4, min(6, len(str(self.participants + 999))))


def trial_exports(batches: int, site_index: int) -> tuple[dt.datetime, ...]:
    """Exports spread evenly from recruitment start to the final one; sites minutes apart."""
    start = dt.datetime.combine(TRIAL_RECRUITMENT[0], dt.time(6, 0))
    span = (TRIAL_FINAL_EXPORT - start).days
    offset = dt.timedelta(minutes=7 * (site_index % 8))
    return tuple(
        start + dt.timedelta(days=round(span * k / batches)) + offset for k in range(1, batches + 1)
    )


def trial_zone(sites: int, participants: int, batches: int) -> tuple[SiteSpec, ...]:
    """A national-trial zone: sites randomised POD/TAU by cluster, CRLF at the last of several."""
    if not 1 <= participants <= MAX_PARTICIPANTS_PER_SITE:
        raise ValueError(f"participants per site must be 1 to {MAX_PARTICIPANTS_PER_SITE:,}")
    if sites < 1 or batches < 1:
        raise ValueError("sites and batches must be at least 1")
    # At least one withdrawal of each type in any zone of 20 or more (at every site of 10 or more).
    zone_forced = sites * participants >= 20
    return tuple(
        SiteSpec(
            code=SITE_CODES[i] if i < len(SITE_CODES) else f"site{i + 1:02d}",
            participants=participants,
            recruitment=TRIAL_RECRUITMENT,
            exports=trial_exports(batches, i),
            clusters=max(2, min(99, participants // 6)),
            withdrawal_rates=(0.06, 0.01, 0.02),
            forced_withdrawals=WITHDRAWAL_TYPES
            if zone_forced and (i == 0 or participants >= 10)
            else (),
            crlf=sites >= 2 and i == sites - 1,
            register_bom=i % 2 == 0,
        )
        for i in range(sites)
    )


def sample_zone() -> tuple[SiteSpec, ...]:
    """The bundled demo: kmpt's original all-POD study (no acute_care.csv, so no data cut) and slam,
    a national-trial site."""
    return (
        SiteSpec(
            "kmpt",
            50,
            (dt.date(2024, 1, 8), dt.date(2024, 12, 13)),
            (dt.datetime(2024, 11, 5, 17, 30), dt.datetime(2025, 9, 15, 17, 30)),
            clusters=0,
            withdrawal_rates=(0.0, 0.0, 0.0),
            forced_withdrawals=("follow_up", "died"),
            register_bom=True,
            access_group=False,
            delivers_acute_care=False,
        ),
        SiteSpec(
            "slam",
            40,
            TRIAL_RECRUITMENT,
            (dt.datetime(2026, 5, 14, 6, 0), TRIAL_FINAL_EXPORT),
            clusters=8,
            withdrawal_rates=(0.0, 0.0, 0.0),
            forced_withdrawals=("all_data", "follow_up"),
            crlf=True,
        ),
    )
