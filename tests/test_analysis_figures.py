"""Figures: drawn from the tables as the report shows them, for whatever parameters and arms they hold."""

import itertools

import numpy as np
import pandas as pd

from pod_pipeline.analysis import figures, survival
from pod_pipeline.analysis.disclosure import SUPPRESSED

# The national trial's new outcomes, beside one of the pilot's and a carer score.
PARAMETERS = [("service_user", name) for name in
              ("wemwbs_total", "qpr_total", "sdmq9_score", "sps_total", "lsns6_total")] + [
    ("carer", "cws_wellbeing_score")]


def _outcome_summary() -> pd.DataFrame:
    rows = [
        {"respondent": respondent, "parameter": parameter, "arm": arm, "timepoint": timepoint,
         "mean": 10.0 + step, "mean_ci95_low": 8.0 + step, "mean_ci95_high": 12.0 + step}
        for (respondent, parameter), arm, (step, timepoint) in itertools.product(
            PARAMETERS, ("POD", "TAU"), enumerate(["baseline", "month_3", "month_12", "month_24"]))
        # sdmq9 has no baseline; a suppressed mean stays a gap, not an error.
        if not (parameter == "sdmq9_score" and timepoint == "baseline")
    ]
    summary = pd.DataFrame(rows).astype({"mean": object})
    summary.loc[0, "mean"] = SUPPRESSED
    return summary


def test_trajectories_draw_every_parameter_in_the_summary() -> None:
    figure = figures.outcome_trajectories(_outcome_summary())
    titles = {axis.get_title() for axis in figure.axes if axis.get_visible()}
    assert titles == {"wemwbs_total", "qpr_total", "sdmq9_score", "sps_total", "lsns6_total",
                      "cws_wellbeing_score (carers)"}
    sdmq9 = next(axis for axis in figure.axes if axis.get_title() == "sdmq9_score")
    assert [label.get_text() for label in sdmq9.get_xticklabels()] == [
        "baseline", "month_3", "month_12", "month_24"]
    assert figures.png_bytes(figure)[:4] == b"\x89PNG"


def test_kaplan_meier_shows_the_numbers_at_risk_as_the_table_does() -> None:
    times = np.array([30, 100, 200, 250, 400, 500, 600, 700, 730, 730], dtype=float)
    frame = pd.DataFrame({"participant_id": [f"P{i}" for i in range(20)], "arm": ["POD"] * 10 + ["TAU"] * 10,
                          "cluster_id": None, "is_followed": True, "time_days": np.r_[times, times * 0.8],
                          "is_relapse": [1, 0] * 10})
    result = survival.analyse(frame)
    at_risk = result.at_risk.astype({"n_at_risk": object})
    at_risk.loc[at_risk["n_at_risk"] < 8, "n_at_risk"] = SUPPRESSED
    figure = figures.kaplan_meier(result.curve, at_risk)
    texts = [text.get_text() for axis in figure.axes for text in axis.texts]
    assert texts.count(SUPPRESSED) == int((at_risk["n_at_risk"] == SUPPRESSED).sum())
    assert {"POD", "TAU", "10", "8"} <= set(texts)
    plot = figure.axes[0]
    assert [line.get_label() for line in plot.get_lines()] == ["POD", "TAU"]
    assert figures.png_bytes(figure)[:4] == b"\x89PNG"


def test_a_thumbnail_is_the_figure_resampled_to_scale() -> None:
    import io

    from PIL import Image

    full = figures.png_bytes(figures.outcome_trajectories(_outcome_summary()))
    small = figures.thumbnail(full, 45 / 110)
    with Image.open(io.BytesIO(full)) as big, Image.open(io.BytesIO(small)) as thumb:
        assert thumb.format == "PNG"
        assert thumb.size == (round(big.width * 45 / 110), round(big.height * 45 / 110))
        # Not blank: the plot's lines and labels survive the resampling.
        assert len(set(thumb.convert("L").getdata())) > 10
    assert len(small) < len(full)


def test_a_figure_is_drawn_again_only_when_its_tables_change(tmp_path, monkeypatch) -> None:
    drawn = []

    def trajectories(outcomes: pd.DataFrame):
        drawn.append(outcomes["mean_ci95_high"].iloc[-1])
        return figures.outcome_trajectories(outcomes)

    tables = {"outcomes": _outcome_summary()}
    monkeypatch.setattr(figures, "_figure_inputs",
                        lambda study: {"outcome_trajectories": (trajectories, (tables["outcomes"],))})
    first = figures.render(None, tmp_path)["outcome_trajectories"]
    assert figures.render(None, tmp_path)["outcome_trajectories"] == first
    assert len(drawn) == 1
    assert first == figures.png_bytes(figures.outcome_trajectories(_outcome_summary()))

    # One value of one cell, or only a column's type, is another figure.
    tables["outcomes"] = _outcome_summary().assign(mean_ci95_high=lambda t: t["mean_ci95_high"] + 1)
    assert figures.render(None, tmp_path)["outcome_trajectories"] != first
    tables["outcomes"] = _outcome_summary().astype({"mean_ci95_low": "float32"})
    figures.render(None, tmp_path)
    assert len(drawn) == 3

    # The cache keeps the most recently used few of each figure (blank ones here: quicker).
    monkeypatch.setattr(figures, "_figure_inputs", lambda study: {"outcome_trajectories": (
        lambda table: figures._figure(0.5, 0.5, layout=None), (tables["outcomes"],))})
    for shift in range(figures.CACHED_PER_FIGURE + 2):
        tables["outcomes"] = _outcome_summary().assign(mean=shift)
        figures.render(None, tmp_path)
    assert len(list(tmp_path.glob("outcome_trajectories-*.png"))) == figures.CACHED_PER_FIGURE
    assert not list(tmp_path.glob("*.partial"))
