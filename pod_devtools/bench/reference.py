"""Fill in and run the reference script (reference.sql) on a landing zone, measured like the pipeline."""

import os
import sys
from pathlib import Path

from pod_devtools.bench.measure import Measurement, run_measured
from pod_pipeline.settings import SEEDS_DIR

SCRIPT = Path(__file__).with_name("reference.sql")
REFERENCE_DATE = "2026-11-25"
SWEMWBS_ITEMS = (1, 2, 3, 6, 7, 9, 11)
HONOS_SUBSCALES = {"behaviour": (1, 2, 3), "impairment": (4, 5), "symptoms": (6, 7, 8), "social": (9, 10, 11, 12)}
SERVICE_ITEMS = ("su_gp_visits", "su_practice_nurse_visits", "su_cmht_contacts", "su_crisis_team_contacts",
                 "su_ae_attendances", "su_psychiatric_inpatient_nights", "su_general_inpatient_nights")
DIMENSIONS = ("mo", "sc", "ua", "pd", "ad")


def current_files(zone: Path, name: str) -> list[str]:
    """Each site's newest sealed batch that delivered `name`."""
    files = []
    for site in sorted(p for p in zone.iterdir() if p.is_dir()):
        batches = sorted(p for p in site.iterdir() if (p / "manifest.json").exists() and (p / name).exists())
        if batches:
            files.append(str(batches[-1] / name))
    return files


def _sum(names: list[str]) -> str:
    return " + ".join(f"coalesce({n}, 0)" for n in names)


def _count(names: list[str]) -> str:
    return " + ".join(f"({n} is not null)::int" for n in names)


def _decrements(value_set: str) -> str:
    return " + ".join(
        f"coalesce((select decrement from value_sets where value_set = '{value_set}' "
        f"and field_name = 'eq5d5l_{d}' and level = v.{d}), 0)" for d in DIMENSIONS)


def script(zone: Path) -> str:
    wemwbs = [f"wemwbs_{i:02d}" for i in range(1, 15)]
    wsas, csq8 = [f"wsas_{i}" for i in range(1, 6)], [f"csq8_{i}" for i in range(1, 9)]
    honos = [f"honos_{i:02d}" for i in range(1, 13)]
    valid = [f"(case when {h} in ('0','1','2','3','4') then cast({h} as int) end)" for h in honos]

    def ints(names: list[str]) -> str:
        return ", ".join(f"try_cast({n} as int) as {n}" for n in names)

    fills = {
        "register": current_files(zone, "register.csv"), "redcap": current_files(zone, "redcap_records.csv"),
        "honos": current_files(zone, "honos.csv"),
        "wemwbs_items": ints(wemwbs), "wsas_items": ints(wsas), "csq8_items": ints(csq8),
        "service_items": ints(list(SERVICE_ITEMS)),
        "wemwbs_sum": _sum(wemwbs), "wemwbs_n": _count(wemwbs),
        "swemwbs_sum": _sum([f"wemwbs_{i:02d}" for i in SWEMWBS_ITEMS]),
        "swemwbs_n": _count([f"wemwbs_{i:02d}" for i in SWEMWBS_ITEMS]),
        "wsas_sum": _sum(wsas), "wsas_n": _count(wsas), "csq8_sum": _sum(csq8), "csq8_n": _count(csq8),
        "honos_valid": " + ".join(f"({v} is not null)::int" for v in valid),
        "honos_sum": " + ".join(f"coalesce({v}, 0)" for v in valid),
        "honos_subscales": ", ".join(
            f"case when {' and '.join(f'{valid[i - 1]} is not null' for i in items)} "
            f"then {' + '.join(valid[i - 1] for i in items)} end as honos_{name}"
            for name, items in HONOS_SUBSCALES.items()),
        "eq5d_uk": _decrements("uk_2026"), "eq5d_england": _decrements("england_2018"),
        "service_cost": "case when " + " and ".join(f"{s} is not null" for s in SERVICE_ITEMS) + " then " +
                        " + ".join(f"{s} * (select unit_cost from unit_costs where service_item = '{s}')"
                                   for s in SERVICE_ITEMS) + " end",
        "seeds": str(SEEDS_DIR), "reference_date": REFERENCE_DATE,
    }
    text = SCRIPT.read_text()
    for key, value in fills.items():
        text = text.replace("{" + key + "}", str(value) if not isinstance(value, list) else repr(value))
    return text


def run_reference(zone: Path, database: Path) -> Measurement:
    """Run the filled-in script in a fresh process on a fresh database file."""
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    sql_path = database.with_suffix(".sql")
    sql_path.write_text(script(zone))
    code = ("import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print(con.execute(open(sys.argv[2]).read()).fetchall())")
    result = run_measured([sys.executable, "-c", code, str(database), str(sql_path)], dict(os.environ))
    if result.returncode:
        raise RuntimeError(f"reference script failed:\n{result.output[-3000:]}")
    return result
