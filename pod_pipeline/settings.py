"""Every setting the pipeline reads from its environment, read here and nowhere else.

`Settings.from_env()` is called when a run or command starts, never at import time, so tests point
the whole pipeline at a temporary folder by setting `POD_DATA_DIR` (or the individual paths).
"""

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
SEEDS_DIR = DBT_PROJECT_DIR / "seeds"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SAMPLE_LANDING_DIR = PROJECT_ROOT / "sample" / "landing"
# The bundled sample is a snapshot of two sites as of this day (its newest export is 2026-11-20).
# Judged against a later day, the national-trial site's month 12 and 24 visits would fall due
# with no export left to bring them, and the sample would decay into failing completeness; so
# the sample is evaluated as of its own day unless POD_REFERENCE_DATE says otherwise.
SAMPLE_REFERENCE_DATE = dt.date(2026, 11, 25)

# A key anyone can read in this file: pseudonyms made with it protect nothing. It exists so the
# demo runs out of the box, and the run output says loudly when it is in use.
DEMO_PSEUDONYM_KEY = "pod-demo-key-NOT-SECRET-do-not-use-with-real-data"

VALUE_SETS = ("uk_2026", "england_2018")
# The working database's file name in every warehouse (dbt names its database after the file).
WORK_DB_NAME = "pod_work.duckdb"


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    landing_dir: Path
    warehouse_dir: Path
    dagster_home: Path
    reference_date: dt.date
    pseudonym_key: str = field(repr=False)
    environment: str
    value_set: str
    price_year: str
    bootstrap_replicates: int = 2000
    bootstrap_seed: int = 20261125
    # Disclosure control for outputs that leave the study team: counts from 1 to
    # suppress_counts_below - 1 are suppressed (default: 1-7, as NHS small-number rules commonly do).
    suppress_counts_below: int = 8
    # Completeness of due assessments (share scored): below warn -> warning, below error -> blocks.
    completeness_warn_below: float = 0.80
    completeness_error_below: float = 0.50
    # Groups with fewer due assessments than this are too small to block on (they can still warn).
    completeness_min_due: int = 5
    # Sites assigned a protocol by the deployment, overriding seeds/site_protocols.csv.
    site_protocols: dict[str, str] = field(default_factory=dict)
    # Time to relapse: acute-care episodes at most this many days apart form one spell (convention).
    relapse_merge_days: int = 7
    # The shared deployment: the Dagster instance's storage, and a server the marts are also
    # published to. None keeps the embedded defaults (SQLite under DAGSTER_HOME, DuckDB files).
    # Never printed: they hold passwords (see masked_url).
    dagster_postgres_url: str | None = field(default=None, repr=False)
    publish_postgres_url: str | None = field(default=None, repr=False)

    @property
    def uses_demo_key(self) -> bool:
        return self.pseudonym_key == DEMO_PSEUDONYM_KEY

    @property
    def work_db(self) -> Path:
        """The pipeline's own read-write DuckDB file; analysts never open it."""
        return self.warehouse_dir / WORK_DB_NAME

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folder for this warehouse: compiled SQL, run results, logs, partial parse."""
        return self.warehouse_dir / "dbt_target"

    @property
    def published_db(self) -> Path:
        return self.warehouse_dir / "pod_marts.duckdb"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("POD_DATA_DIR") or PROJECT_ROOT / "data").resolve()
        environment = env.get("POD_ENV", "development")
        if environment not in ("development", "test", "production"):
            raise SettingsError(
                f"POD_ENV={environment!r}: expected development, test or production"
            )
        key = env.get("POD_PSEUDONYM_KEY") or ""
        if not key:
            if environment == "production":
                raise SettingsError(
                    "POD_PSEUDONYM_KEY is not set: with POD_ENV=production the pipeline refuses "
                    "to pseudonymise NHS numbers with the public demo key"
                )
            key = DEMO_PSEUDONYM_KEY
        elif environment == "production" and (key == DEMO_PSEUDONYM_KEY or len(key) < 32):
            raise SettingsError(
                "POD_PSEUDONYM_KEY must be a secret of at least 32 characters, not the demo key, "
                "when POD_ENV=production"
            )
        value_set = env.get("POD_VALUE_SET", "uk_2026")
        if value_set not in VALUE_SETS:
            raise SettingsError(f"POD_VALUE_SET={value_set!r}: expected one of {', '.join(VALUE_SETS)}")
        return cls(
            data_dir=data_dir,
            landing_dir=Path(env.get("POD_LANDING_DIR") or SAMPLE_LANDING_DIR).resolve(),
            warehouse_dir=Path(env.get("POD_WAREHOUSE_DIR") or data_dir / "warehouse").resolve(),
            dagster_home=Path(env.get("DAGSTER_HOME") or data_dir / "dagster_home").resolve(),
            reference_date=_parse_reference_date(env.get("POD_REFERENCE_DATE"), sample=not env.get("POD_LANDING_DIR")),
            pseudonym_key=key,
            environment=environment,
            value_set=value_set,
            price_year=env.get("POD_PRICE_YEAR", "2024/25"),
            bootstrap_replicates=_int(env, "POD_BOOTSTRAP_REPLICATES", 2000, minimum=1000),
            bootstrap_seed=_int(env, "POD_BOOTSTRAP_SEED", 20261125, minimum=0),
            suppress_counts_below=_int(env, "POD_SUPPRESS_COUNTS_BELOW", 8, minimum=1),
            completeness_warn_below=_share(env, "POD_COMPLETENESS_WARN_BELOW", 0.80),
            completeness_error_below=_share(env, "POD_COMPLETENESS_ERROR_BELOW", 0.50),
            completeness_min_due=_int(env, "POD_COMPLETENESS_MIN_DUE", 5, minimum=1),
            site_protocols=_site_protocols(env.get("POD_SITE_PROTOCOLS")),
            relapse_merge_days=_int(env, "POD_RELAPSE_MERGE_DAYS", 7, minimum=0),
            # Dagster opens its storage with SQLAlchemy, which reads a bare postgresql:// as psycopg 3
            # since 2.1; dagster-postgres brings psycopg2, so its URL names that driver.
            dagster_postgres_url=_postgres_url(env, "POD_DAGSTER_POSTGRES_URL", "postgresql+psycopg2"),
            publish_postgres_url=_postgres_url(env, "POD_PUBLISH_POSTGRES_URL", "postgresql"),
        )

    def run_settings(self) -> dict[str, str]:
        """The settings the marts are built with (part of the publication's fingerprint)."""
        return {"reference_date": self.reference_date.isoformat(), **self.dbt_vars()}

    def publication_settings(self) -> dict[str, str]:
        """Every setting a publication depends on (the publication fingerprint): what the marts are
        built with, the analysis's bootstrap and disclosure control, and the check thresholds that
        decide whether a run may publish at all. A change to any of them is something new."""
        return {
            **self.run_settings(),
            "bootstrap_replicates": str(self.bootstrap_replicates),
            "bootstrap_seed": str(self.bootstrap_seed),
            "suppress_counts_below": str(self.suppress_counts_below),
            "completeness_warn_below": repr(self.completeness_warn_below),
            "completeness_error_below": repr(self.completeness_error_below),
            "completeness_min_due": str(self.completeness_min_due),
        }

    def dbt_vars(self) -> dict[str, str]:
        """dbt's --vars: the run settings but the reference date, which changes daily and goes by
        environment (`dbt_env`): a var's change makes dbt parse the whole project again."""
        return {
            "value_set": self.value_set,
            "price_year": self.price_year,
            "site_protocols": ",".join(f"{site}={protocol}" for site, protocol in self.site_protocols.items()),
            "relapse_merge_days": str(self.relapse_merge_days),
        }

    def dbt_env(self) -> dict[str, str]:
        """Environment for a dbt process: where the working database is, the reference date (read
        by the macro reference_date(); a change re-parses only the files that use it), and that
        the pipeline runs the build (a build that names no site then tests none of a partitioned
        model's rows: macros/site_partitions.sql; dbt run by hand tests every row)."""
        return {"POD_WORK_DB": str(self.work_db), "POD_DBT_REFERENCE_DATE": self.reference_date.isoformat(),
                "POD_DBT_PIPELINE_BUILD": "1"}

    def check_landing_dir(self) -> None:
        """For the commands that run the pipeline: a landing zone that is not there cannot work."""
        if not self.landing_dir.is_dir():
            problem = "is not a folder" if self.landing_dir.exists() else "does not exist"
            raise SettingsError(f"the landing zone {self.landing_dir} {problem} "
                                "(set POD_LANDING_DIR to the folder sites deliver into)")

    def demo_key_warning(self) -> str | None:
        """The warning every run prints while NHS numbers are pseudonymised with the public demo key."""
        if not self.uses_demo_key:
            return None
        return ("POD_PSEUDONYM_KEY is not set: NHS numbers are pseudonymised with the PUBLIC DEMO KEY. "
                "Fine for synthetic data; set a secret key before loading real exports.")


def _parse_reference_date(value: str | None, sample: bool = False) -> dt.date:
    if not value:
        return SAMPLE_REFERENCE_DATE if sample else dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise SettingsError(f"POD_REFERENCE_DATE={value!r} is not a YYYY-MM-DD date") from exc


def _site_protocols(value: str | None) -> dict[str, str]:
    """POD_SITE_PROTOCOLS: `site=protocol` pairs separated by commas, protocols of the seed."""
    # Imported here: pod_pipeline.seeds stands on this module (it reads SEEDS_DIR).
    from pod_pipeline import seeds

    known = [row["protocol"] for row in seeds.rows("protocols")]
    assigned: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in (value or "").split(","))):
        site, _, protocol = (part.strip() for part in entry.partition("="))
        if not re.fullmatch(r"[a-z0-9]+", site) or protocol not in known:
            raise SettingsError(f"POD_SITE_PROTOCOLS={value!r}: {entry!r} is not site=protocol with a "
                                f"protocol among {', '.join(known)}")
        assigned[site] = protocol
    return assigned


def masked_url(url: str) -> str:
    """A database URL fit for logs and messages: its password (in the user part or the query) hidden."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if at and ":" in userinfo:
        url = url.replace(f"{userinfo}@", f"{userinfo.partition(':')[0]}:***@", 1)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def _postgres_url(env: dict[str, str], name: str, scheme: str) -> str | None:
    """A PostgreSQL URL setting in the form its reader takes, or None when unset (embedded default)."""
    value = env.get(name)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme != scheme or parts.path in ("", "/"):
        raise SettingsError(f"{name}={masked_url(value)!r} is not a {scheme}://user:password@host:port/database "
                            "URL")
    return value


def _int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise SettingsError(f"{name}={value!r} is not a whole number") from exc
    if number < minimum:
        raise SettingsError(f"{name}={number} is below the minimum {minimum}")
    return number


def _share(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        share = float(value)
    except ValueError as exc:
        raise SettingsError(f"{name}={value!r} is not a number") from exc
    if not 0 <= share <= 1:
        raise SettingsError(f"{name}={share} must be a share between 0 and 1")
    return share
