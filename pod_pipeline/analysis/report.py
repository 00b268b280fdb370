"""The study report: one self-contained HTML file, for the team or (suppressed) to leave it."""

import base64
import html

import numpy as np
import pandas as pd

from pod_pipeline.analysis import disclosure
from pod_pipeline.analysis.economics import INCREMENTAL
from pod_pipeline.analysis.survival import EFFECT, LANDMARKS
from pod_pipeline.analysis.tables import StudyTables


def _number(value: object, digits: int = 2) -> str:
    if isinstance(value, str):
        return html.escape(value)
    if value is None or pd.isna(value):
        return "–"
    if isinstance(value, (int, np.integer)) or digits == 0:
        return f"{int(round(float(value))):,}"
    return f"{float(value):,.{digits}f}"


def _p_value(value: object) -> str:
    if isinstance(value, (float, np.floating)) and value < 0.001:
        return "&lt;0.001"
    return _number(value, 3)


def _interval(low: object, high: object, digits: int = 2) -> str:
    if isinstance(low, str) or isinstance(high, str):
        return disclosure.SUPPRESSED
    if pd.isna(low) or pd.isna(high):
        return "–"
    return f"{_number(low, digits)} to {_number(high, digits)}"


def _estimate(row: pd.Series, name: str, digits: int = 2, interval: str | None = None) -> str:
    """An estimate with its 95% interval, from the `<interval or name>_ci95_low/high` columns."""
    prefix = interval or name
    if not isinstance(row[name], str) and pd.isna(row[name]):
        return "–"
    bounds = _interval(row[f"{prefix}_ci95_low"], row[f"{prefix}_ci95_high"], digits)
    return f"{_number(row[name], digits)} ({bounds})"


def outcome_rows(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Outcome summary as the report prints it, estimates beside their intervals."""
    return pd.DataFrame({
        "respondent": outcomes["respondent"].str.replace("_", " "),
        "parameter": outcomes["parameter"],
        "timepoint": outcomes["timepoint"],
        "arm": outcomes["arm"],
        "n": outcomes["n"].map(lambda v: _number(v, 0)),
        "mean (sd)": [f"{_number(m)} ({_number(s)})"
                      for m, s in zip(outcomes["mean"], outcomes["sd"], strict=True)],
        "median [q1, q3]": [f"{_number(m)} [{_number(a)}, {_number(b)}]" for m, a, b in
                            zip(outcomes["median"], outcomes["q1"], outcomes["q3"], strict=True)],
        "paired n": outcomes["n_paired"].map(lambda v: _number(v, 0)),
        "mean change (95% CI)": [
            _estimate(row, "mean_change", interval="change") for _, row in outcomes.iterrows()
        ],
        "p (paired t)": outcomes["p_value_paired_t"].map(_p_value),
        "p (Wilcoxon)": outcomes["p_value_wilcoxon"].map(_p_value),
        "dz": outcomes["effect_size_dz"].map(_number),
        "n improved": outcomes["n_meaningful_improvement"].map(lambda v: _number(v, 0)),
        "note": outcomes["note"].map(lambda v: "" if pd.isna(v) else html.escape(str(v))),
    })


def completeness_rows(completeness: pd.DataFrame) -> pd.DataFrame:
    """Completeness as the report prints it."""
    return completeness.assign(
        expected=completeness["expected"].map(lambda v: _number(v, 0)),
        scored=completeness["scored"].map(lambda v: _number(v, 0)),
        pct_scored=completeness["pct_scored"].map(
            lambda v: v if isinstance(v, str) else ("–" if pd.isna(v) else f"{v:.0%}")
        ),
    ).rename(columns={"pct_scored": "% scored"})


def cost_effectiveness_rows(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-arm means and, when present, the incremental analysis, as the report prints them."""
    arms = summary[summary["arm"] != INCREMENTAL]
    per_arm = pd.DataFrame([
        {
            "arm": row["arm"],
            "n (complete cases)": _number(row["n"], 0),
            "mean cost £ (95% CI)": _estimate(row, "mean_cost", 0),
            "mean QALY (95% CI)": _estimate(row, "mean_qaly", 3),
        }
        for _, row in arms.iterrows()
    ])
    incremental = pd.DataFrame([
        {
            "incremental cost £ (95% CI)": _estimate(row, "incremental_cost", 0),
            "incremental QALY (95% CI)": _estimate(row, "incremental_qaly", 3),
            "ICER £/QALY": f"{_number(row['icer'], 0)} ({html.escape(row['icer_quadrant'])})",
            "INMB £20,000 (95% CI)": _estimate(row, "inmb_20k", 0),
            "INMB £30,000 (95% CI)": _estimate(row, "inmb_30k", 0),
            "P(cost-effective) £20,000": _number(row["prob_cost_effective_20k"], 3),
            "P(cost-effective) £30,000": _number(row["prob_cost_effective_30k"], 3),
        }
        for _, row in summary[summary["arm"] == INCREMENTAL].iterrows()
    ])
    return per_arm, incremental


def _median_days(row: pd.Series) -> str:
    """The median, or why there is none (nobody followed, or half never relapsed)."""
    value = row["median_days"]
    if isinstance(value, str) or pd.notna(value):
        return _number(value, 0)
    return "–" if row["n"] == 0 else "not reached"


def relapse_rows(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaplan–Meier per arm and the Cox hazard ratio, as the report prints them."""
    per_arm = pd.DataFrame([
        {
            "arm": row["arm"],
            "followed": _number(row["n"], 0),
            "not followed in the EPR": _number(row["n_not_followed"], 0),
            "relapses": _number(row["events"], 0),
            "median days": _median_days(row),
            **{f"free of relapse at {day} days (95% CI)": _estimate(row, f"km_{day}", 3)
               for day in LANDMARKS},
        }
        for _, row in summary[summary["arm"] != EFFECT].iterrows()
    ])
    effect = pd.DataFrame([
        {
            "participants": _number(row["n"], 0),
            "relapses": _number(row["events"], 0),
            "hazard ratio POD vs TAU (95% CI)": _estimate(row, "hazard_ratio", 3, interval="hr"),
            "p": _p_value(row["p_value"]),
            "variance": "–" if pd.isna(row["variance"]) else html.escape(str(row["variance"])),
        }
        for _, row in summary[summary["arm"] == EFFECT].iterrows()
    ])
    return per_arm, effect


def relapse_section(tables: StudyTables, figures: dict[str, bytes]) -> list[str]:
    """The time-to-relapse section: tables, notes, the Kaplan–Meier plot and numbers at risk."""
    parts = ["<h2>Time to relapse</h2>"]
    if tables.relapse.empty:
        return [*parts, "<p>Not available: marts.time_to_relapse has not been built.</p>"]
    per_arm, effect = relapse_rows(tables.relapse)
    at_risk = tables.relapse_at_risk.pivot(index="arm", columns="time_days", values="n_at_risk")
    at_risk.columns = [f"day {day}" for day in at_risk.columns]
    parts += [
        "<p>Participants followed in the electronic patient record only (those not followed are "
        "counted). Kaplan–Meier survival free of relapse with log-log 95% intervals (Greenwood); "
        "median: first day the estimate is at or below 0.5; – past an arm's longest follow-up. "
        "Hazard ratio from a Cox model for arm (Efron ties) with the variance named: "
        "cluster_robust (sandwich by cluster) or model.</p>",
        _table(per_arm),
        *([_table(effect)] if not effect.empty else []),
        *[f"<p class='note'>{html.escape(str(note))}</p>" for note in tables.relapse["note"].dropna().unique()],
        _image("kaplan_meier", figures) if not tables.relapse_curve.empty else
        "<p class='note'>No Kaplan–Meier plot: no arm's counts can be shown.</p>",
        "<h3>Numbers at risk</h3>",
        _table(at_risk.reset_index().map(lambda v: _number(v, 0))),
    ]
    return parts


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=False, border=0, classes="data")


def _image(name: str, figures: dict[str, bytes]) -> str:
    if name not in figures:
        raise ValueError(f"figure {name} is missing: materialise analysis/figures first")
    encoded = base64.b64encode(figures[name]).decode("ascii")
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table.data { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
table.data th, table.data td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; }
table.data th { background: #f2f2f2; text-align: left; }
figure img { max-width: 100%; }
.note { background: #fff4ce; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
dt { font-weight: bold; float: left; clear: left; width: 14em; }
"""


def render_html(
    title: str,
    tables: StudyTables,
    figures: dict[str, bytes],
    provenance: dict[str, object],
    batches: pd.DataFrame,
    notes: list[str],
) -> str:
    """The whole report as one HTML document with its figures embedded."""
    per_arm, incremental = cost_effectiveness_rows(tables.cost_effectiveness)
    reasons = tables.cost_effectiveness["note"].dropna().unique()
    flow = tables.flow.rename(index=lambda stage: stage.replace("_", " ")).reset_index(
        names="stage"
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *[f"<p class='note'>{html.escape(note)}</p>" for note in notes],
        "<h2>Provenance</h2><dl>",
        *[f"<dt>{html.escape(key)}</dt><dd>{html.escape(str(value))}</dd>"
          for key, value in provenance.items()],
        "</dl><h3>Landing batches (raw.load_ledger)</h3>",
        _table(batches.astype(str)),
        "<h2>Participant flow</h2>",
        _table(flow.map(lambda v: _number(v, 0))),
        _image("participant_flow", figures),
        "<h2>Outcomes</h2>",
        "<p>Analysis records only. Change from baseline on paired complete cases: mean with 95% "
        "t interval, paired t-test, Wilcoxon signed-rank test and Cohen's d<sub>z</sub>.</p>",
        _table(outcome_rows(tables.outcomes)),
        _image("outcome_trajectories", figures),
        *relapse_section(tables, figures),
        "<h2>Completeness</h2>",
        _table(completeness_rows(tables.completeness)),
        _image("completeness_heatmap", figures),
        "<h2>Cost-effectiveness</h2>",
        _table(per_arm),
        *[f"<p class='note'>{html.escape(reason)}</p>" for reason in reasons],
    ]
    if not incremental.empty:
        parts += [
            "<h3>POD versus TAU</h3>",
            _table(incremental),
            _image("cost_effectiveness_plane", figures),
            _image("acceptability_curve", figures),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
