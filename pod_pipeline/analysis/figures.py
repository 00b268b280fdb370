"""The study's figures, drawn on matplotlib's Agg canvas from small summary tables.

Every function takes the table as the report shows it, so a table with suppressed cells (the
marker `*`) draws a figure that discloses no more than the table does.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pod_pipeline.analysis.disclosure import SUPPRESSED
from pod_pipeline.analysis.economics import COMPARATOR, INCREMENTAL, INTERVENTION, NAMED_THRESHOLDS
from pod_pipeline.analysis.tables import FLOW_EXITS, StudyTables, flow_stages, timepoint_order

if TYPE_CHECKING:
    # matplotlib is imported where a figure is made, not with this module: every process loading
    # the Dagster definitions imports this module, and a run imports matplotlib while dbt runs
    # (transform/assets.py).
    from matplotlib.figure import Figure

ARM_COLOURS = {INTERVENTION: "#1b7837", COMPARATOR: "#762a83"}


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _fixed_grid(figure: Figure, rows: int, columns: int, *, left: float = 0.5, right: float = 0.15,
                top: float = 0.75, bottom: float = 0.6, across: float = 0.5, down: float = 0.55) -> None:
    """Margins and gaps between panels fixed in inches: a grid of small panels laid out without
    the constrained-layout solver, which took half of the panel figure's drawing time (about 0.8 s
    of 1.5 s a draw, and it is drawn twice a run)."""
    width, height = figure.get_size_inches()
    panel_width = (width - left - right - across * (columns - 1)) / columns
    panel_height = (height - top - bottom - down * (rows - 1)) / rows
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                           bottom=bottom / height, wspace=across / panel_width, hspace=down / panel_height)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.replace(SUPPRESSED, np.nan), errors="coerce").to_numpy(float)


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def thumbnail(png: bytes, scale: float) -> bytes:
    """A PNG shrunk by `scale` (the UI's preview): resampled from the full-size image, since
    drawing the figure again at a low dpi costs as much as the first time (the layout is solved
    again; about 1 s for the outcome panels)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        small = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def outcome_trajectories(outcomes: pd.DataFrame) -> Figure:
    """Mean with 95% CI per timepoint and arm, one panel per parameter."""
    order = timepoint_order()
    timepoints = sorted(outcomes["timepoint"].unique(), key=lambda tp: order.get(tp, len(order)))
    position = {timepoint: index for index, timepoint in enumerate(timepoints)}
    panels = list(outcomes.groupby(["respondent", "parameter"], sort=True).groups)
    columns = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    figure = _figure(3.4 * columns, 2.6 * rows + 0.4, layout=None)
    _fixed_grid(figure, rows, columns)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    arms = sorted(outcomes["arm"].unique())
    for axis, (respondent, parameter) in zip(axes, panels, strict=False):
        panel = outcomes[(outcomes["respondent"] == respondent)
                         & (outcomes["parameter"] == parameter)]
        for offset, arm in zip(np.linspace(-0.08, 0.08, len(arms)), arms, strict=True):
            line = panel[panel["arm"] == arm]
            line = line.assign(_x=line["timepoint"].map(position)).sort_values("_x")
            mean = _numbers(line["mean"])
            error = np.abs(np.vstack([mean - _numbers(line["mean_ci95_low"]),
                                      _numbers(line["mean_ci95_high"]) - mean]))
            axis.errorbar(line["_x"] + offset, mean, yerr=np.nan_to_num(error), marker="o",
                          capsize=3, label=arm, color=ARM_COLOURS.get(arm))
        axis.set_title(parameter + (" (carers)" if respondent == "carer" else ""), fontsize=9)
        axis.set_xticks(range(len(timepoints)), timepoints, fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncols=len(arms), frameon=False)
    figure.suptitle("Outcomes: mean and 95% CI per timepoint", fontsize=11,
                    y=1 - 0.12 / figure.get_size_inches()[1], va="top")
    return figure


def participant_flow(flow: pd.DataFrame) -> Figure:
    """CONSORT-style flow: one column of boxes per arm, with exits beside it."""
    arms = [column for column in flow.columns if column != "total"]
    # The mart holds the stages of the protocols followed (no month_12 without a national_trial site).
    main = [stage for stage in flow_stages() if stage not in FLOW_EXITS and stage in flow.index]
    figure = _figure(3.6 * len(arms), 1.5 + len(main))
    axis = figure.subplots()
    axis.set_axis_off()
    axis.set_xlim(0, len(arms))
    axis.set_ylim(0, len(main) + 0.5)
    box = {"boxstyle": "round,pad=0.4", "facecolor": "#f2f2f2", "edgecolor": "#555555"}
    for column, arm in enumerate(arms):
        centre = column + 0.3
        axis.text(centre, len(main) + 0.2, arm, ha="center", fontsize=12, weight="bold",
                  color=ARM_COLOURS.get(arm, "black"))
        for level, stage in enumerate(main):
            y = len(main) - 0.4 - level
            count = flow.at[stage, arm] if stage in flow.index else "–"
            axis.text(centre, y, f"{_label(stage)}\nn = {count}", ha="center", va="center",
                      fontsize=9, bbox=box)
            if level:
                axis.annotate("", xy=(centre, y + 0.25), xytext=(centre, y + 0.75),
                              arrowprops={"arrowstyle": "->", "color": "#555555"})
        exits = [f"{_label(stage)}: n = {flow.at[stage, arm]}"
                 for stage in FLOW_EXITS if stage in flow.index]
        if exits:
            # Between the baseline and month-3 boxes, off the arrow that joins them.
            y = len(main) - 1.9
            axis.annotate("\n".join(exits), xy=(centre, y), xytext=(centre + 0.2, y),
                          va="center", fontsize=8, bbox={**box, "facecolor": "white"},
                          arrowprops={"arrowstyle": "<-", "color": "#555555"})
    figure.suptitle("Participant flow", fontsize=11)
    return figure


def _label(stage: str) -> str:
    return stage.replace("_", " ").capitalize()


def completeness_heatmap(completeness: pd.DataFrame) -> Figure:
    """Share of expected assessments scored, site × instrument, one panel per timepoint."""
    order = timepoint_order()
    timepoints = sorted(completeness["timepoint"].unique(),
                        key=lambda tp: order.get(tp, len(order)))
    sites = list(dict.fromkeys(completeness["site"]))
    instruments = sorted(completeness["instrument"].unique())
    figure = _figure(1.2 + 2.6 * len(timepoints), 1.6 + 0.35 * len(sites))
    axes = np.atleast_1d(figure.subplots(1, len(timepoints), sharey=True, squeeze=False)).ravel()
    image = None
    for axis, timepoint in zip(axes, timepoints, strict=True):
        panel = completeness[completeness["timepoint"] == timepoint]
        grid = panel.pivot(index="site", columns="instrument", values="pct_scored")
        grid = grid.reindex(index=sites, columns=instruments)
        image = axis.imshow(grid.apply(_numbers).to_numpy(float), cmap="RdYlGn", vmin=0, vmax=1,
                            aspect="auto")
        for (row, column), value in np.ndenumerate(grid.to_numpy(object)):
            label = SUPPRESSED if value == SUPPRESSED else ("" if pd.isna(value)
                                                           else f"{float(value):.0%}")
            axis.text(column, row, label, ha="center", va="center", fontsize=7)
        axis.set_title(timepoint, fontsize=9)
        axis.set_xticks(range(len(instruments)), instruments, rotation=45, fontsize=8)
        axis.set_yticks(range(len(sites)), sites, fontsize=8)
    if image is not None:
        figure.colorbar(image, ax=list(axes), label="share scored")
    figure.suptitle("Completeness: share of expected assessments scored", fontsize=11)
    return figure


def cost_effectiveness_plane(replicates: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Bootstrap incremental cost against incremental QALY, with willingness-to-pay lines."""
    wide = replicates.pivot(index="replicate", columns="arm", values=["mean_cost", "mean_qaly"])
    d_cost = wide[("mean_cost", INTERVENTION)] - wide[("mean_cost", COMPARATOR)]
    d_qaly = wide[("mean_qaly", INTERVENTION)] - wide[("mean_qaly", COMPARATOR)]
    point = summary.set_index("arm").loc[INCREMENTAL]
    figure = _figure(6, 4.5)
    axis = figure.subplots()
    axis.scatter(d_qaly, d_cost, s=4, alpha=0.25, color="#4d4d4d", label="bootstrap replicates")
    axis.scatter([point["incremental_qaly"]], [point["incremental_cost"]], s=60, color="#d6604d",
                 label="estimate", zorder=3)
    span = np.array([min(d_qaly.min(), 0), max(d_qaly.max(), 0)])
    for threshold in NAMED_THRESHOLDS.values():
        axis.plot(span, threshold * span, linestyle="--", linewidth=1,
                  label=f"£{threshold:,} per QALY")
    axis.axhline(0, color="black", linewidth=0.6)
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_xlabel(f"Incremental QALY ({INTERVENTION} − {COMPARATOR})")
    axis.set_ylabel("Incremental cost (£)")
    axis.set_title("Cost-effectiveness plane")
    axis.legend(fontsize=8)
    return figure


def acceptability_curve(acceptability: pd.DataFrame) -> Figure:
    """Probability POD is cost-effective against the willingness to pay per QALY."""
    from matplotlib.ticker import StrMethodFormatter

    figure = _figure(6, 4)
    axis = figure.subplots()
    axis.plot(acceptability["threshold"], acceptability["prob_cost_effective"], marker=".",
              color=ARM_COLOURS[INTERVENTION])
    for threshold in NAMED_THRESHOLDS.values():
        axis.axvline(threshold, linestyle=":", color="grey")
    axis.set_ylim(0, 1)
    axis.xaxis.set_major_formatter(StrMethodFormatter("£{x:,.0f}"))
    axis.set_xlabel("Willingness to pay per QALY")
    axis.set_ylabel(f"Probability {INTERVENTION} is cost-effective")
    axis.set_title("Cost-effectiveness acceptability curve")
    return figure


def kaplan_meier(curve: pd.DataFrame, at_risk: pd.DataFrame) -> Figure:
    """Kaplan–Meier survival free of relapse by arm with log-log 95% bands, numbers at risk below."""
    arms = sorted(curve["arm"].unique())
    days = sorted(at_risk["time_days"].unique())
    figure = _figure(7, 4.2 + 0.25 * len(arms))
    plot, table = figure.subplots(2, 1, sharex=True, height_ratios=[4, 0.6 + 0.3 * len(arms)])
    for arm in arms:
        line = curve[curve["arm"] == arm].sort_values("time_days")
        colour = ARM_COLOURS.get(arm)
        plot.step(line["time_days"], _numbers(line["survival"]), where="post", label=arm, color=colour)
        plot.fill_between(line["time_days"], _numbers(line["survival_ci95_low"]),
                          _numbers(line["survival_ci95_high"]), step="post", alpha=0.15, color=colour)
    plot.set_ylim(0, 1.02)
    plot.set_ylabel("Free of relapse")
    plot.set_title("Time to relapse: Kaplan–Meier estimate with 95% CI", fontsize=11)
    if arms:
        plot.legend(fontsize=8, loc="lower left")
    # Numbers at risk: one row per arm, as the table shows them (suppressed counts stay `*`).
    table.set_axis_off()
    table.set_ylim(-0.5, len(arms) - 0.5)
    for row, arm in enumerate(arms):
        counts = at_risk[at_risk["arm"] == arm].set_index("time_days")["n_at_risk"]
        table.text(-0.02, len(arms) - 1 - row, arm, transform=table.get_yaxis_transform(), ha="right",
                   va="center", fontsize=8, color=ARM_COLOURS.get(arm, "black"), weight="bold")
        for day in days:
            label = counts.get(day, "")
            table.text(day, len(arms) - 1 - row, str(label), ha="center", va="center", fontsize=8)
    table.set_title("Numbers at risk", fontsize=8, loc="left")
    plot.set_xticks(days)
    plot.tick_params(labelbottom=True)
    plot.set_xlabel("Days since consent")
    plot.set_xlim(-15, max([*days, 0]) + 15)
    return figure


def _figure_inputs(study: StudyTables) -> dict[str, tuple[Callable[..., Figure], tuple[pd.DataFrame, ...]]]:
    """Every figure the data allow, by file stem, as its drawing function and the tables it is
    drawn from (no plane or curve without two arms, no Kaplan–Meier plot before
    marts.time_to_relapse exists)."""
    inputs: dict[str, tuple[Callable[..., Figure], tuple[pd.DataFrame, ...]]] = {
        "outcome_trajectories": (outcome_trajectories, (study.outcomes,)),
        "participant_flow": (participant_flow, (study.flow,)),
        "completeness_heatmap": (completeness_heatmap, (study.completeness,)),
    }
    if not study.acceptability.empty:
        inputs["cost_effectiveness_plane"] = (cost_effectiveness_plane,
                                              (study.replicates, study.cost_effectiveness))
        inputs["acceptability_curve"] = (acceptability_curve, (study.acceptability,))
    if not study.relapse_curve.empty:
        inputs["kaplan_meier"] = (kaplan_meier, (study.relapse_curve, study.relapse_at_risk))
    return inputs


# Drawn PNGs kept per figure in the cache folder, the most recently used first: the team's and
# the external report's version of each, and the run before's.
CACHED_PER_FIGURE = 4


def render(study: StudyTables, cache: Path | None = None, dpi: int = 110) -> dict[str, bytes]:
    """Every figure the data allow as PNG bytes, by file stem.

    With a `cache` folder, a figure is drawn only when no PNG was drawn before from the same
    tables by the same code: the key is a digest of its tables (values, index, columns and
    types), this module's source, the constants and seeds it draws with (arms, stages,
    timepoints), matplotlib's version and settings, and the dpi. So the external report's figures
    are the team's wherever disclosure control hid nothing, and a refresh redraws only the figures
    whose tables changed (at 1,000,000 participants, drawing them all took about 2.5 s a report).
    """
    if cache is None:
        return {name: png_bytes(draw(*tables), dpi) for name, (draw, tables) in _figure_inputs(study).items()}
    pngs = {}
    drawn_by = _drawn_by(dpi)
    for name, (draw, tables) in _figure_inputs(study).items():
        path = cache / f"{name}-{_cache_key(drawn_by, name, tables)}.png"
        try:
            pngs[name] = path.read_bytes()
            os.utime(path)  # most recently used
        except OSError:
            pngs[name] = png_bytes(draw(*tables), dpi)
            cache.mkdir(parents=True, exist_ok=True)
            staged = path.with_suffix(f".{os.getpid()}.partial")
            staged.write_bytes(pngs[name])
            staged.replace(path)
        for stale in sorted(cache.glob(f"{name}-*.png"), key=lambda p: p.stat().st_mtime_ns,
                            reverse=True)[CACHED_PER_FIGURE:]:
            stale.unlink(missing_ok=True)
    return pngs


def _drawn_by(dpi: int) -> hashlib._Hash:
    """The digest of what every figure is drawn with (this module's source, its constants and
    seeds, matplotlib's version and settings, the dpi): computed once per render."""
    import matplotlib

    digest = hashlib.sha256()
    for part in (dpi, matplotlib.__version__, sorted(matplotlib.rcParams.items()),
                 (COMPARATOR, INCREMENTAL, INTERVENTION, NAMED_THRESHOLDS, SUPPRESSED,
                  ARM_COLOURS, flow_stages(), timepoint_order())):
        digest.update(repr(part).encode())
    digest.update(Path(__file__).read_bytes())
    return digest


def _cache_key(drawn_by: hashlib._Hash, name: str, tables: tuple[pd.DataFrame, ...]) -> str:
    """The digest of one figure: what every figure is drawn with, its name and its tables."""
    digest = drawn_by.copy()
    digest.update(repr(name).encode())
    for table in tables:
        digest.update(repr((list(table.columns), [str(t) for t in table.dtypes], table.shape)).encode())
        try:
            digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
        except TypeError:  # a cell pandas cannot hash (a list, say)
            digest.update(pickle.dumps(table))
    return digest.hexdigest()[:32]
