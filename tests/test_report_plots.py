"""The report's plots are readable: tick labels, named lines, legends off the data, no text
cut at the figure's edge. Each test measures the drawn figure, so that it can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

from pglab.report import load_runs, normalised_scores
from pglab.report.frames import load_reference
from pglab.report.groups import with_group_keys
from pglab.report.kl import reward_vs_kl_figure
from pglab.report.plots import aggregate_iqm_figure, curves_figure, plot_aggregates, profiles_figure, readable_number
from test_report_kl import make_kl_sweep

matplotlib.use("Agg")

LONG_ENV = "mountaincar_continuous"
ALGOS = ("a2c", "reinforce", "sb3_ppo")


def make_runs(root: Path, budgets: dict[str, int], wall: bool = True) -> None:
    """Three seeds of each algo per env, 21 eval lines each from 0 to the env's step budget;
    ``wall=False`` leaves ``time/wall_s`` out of every eval line."""
    for env, budget in budgets.items():
        for a, algo in enumerate(ALGOS):
            for seed in range(3):
                run_dir = root / f"{algo}-{env}-s{seed}"
                run_dir.mkdir(parents=True)
                steps = np.linspace(0, budget, 21)
                returns = -30.0 + 110.0 * (1 - np.exp(-(3 + a + 0.3 * seed) * steps / budget))
                lines = [
                    {"env_steps": int(s), "eval/return_mean": float(r), **({"time/wall_s": s / 2000} if wall else {})}
                    for s, r in zip(steps, returns, strict=True)
                ]
                (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
                summary = {
                    "status": "completed",
                    "algo": algo,
                    "env": env,
                    "seed": seed,
                    "final": {"return_mean": float(returns[-1])},
                    "wall_s": budget / 2000,
                    "sps": 2000.0,
                    "config": {"algo": {"name": algo}, "env": {"name": env}, "seed": seed},
                }
                (run_dir / "summary.json").write_text(json.dumps(summary))


def _curves(root: Path, env: str, threshold: float | None = 90.0) -> Any:
    runs = load_runs([root])
    keyed, by_cols = with_group_keys(runs, ["algo"])
    return curves_figure(env, keyed[keyed["env"] == env], by_cols, threshold, np.random.default_rng(0))


def _texts_inside(fig: Any) -> None:
    """Every drawn text of ``fig`` lies inside it: each axes with its drawn tick labels,
    labels, title and legend (its tight bounding box), and every other text (the figure's
    title and legends, notes in the axes). Tick labels outside the view limits are not drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = {
        id(label)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for label in (tick.label1, tick.label2)
    }
    texts = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in ticks]
    boxes = [(f"axes {ax.get_title()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes]
    boxes += [(repr(t.get_text()), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]
    assert len(boxes) > 4
    box = fig.bbox
    for name, e in boxes:
        inside = e.x0 >= box.x0 - 0.5 and e.x1 <= box.x1 + 0.5 and e.y0 >= box.y0 - 0.5 and e.y1 <= box.y1 + 0.5
        assert inside, f"{name} at {e.bounds} is cut at the figure's edge {box.bounds}"


def _legend_off_axes(fig: Any, legend: Any) -> None:
    """``legend`` overlaps no axes of ``fig``: it can cover no data."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers an axes"


def _legend_texts(legend: Any) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (500, "500"),
        (0.5, "0.5"),
        (1000, "1k"),
        (1250, "1.25k"),
        (100_000, "100k"),
        (200_000, "200k"),
        (1_500_000, "1.5M"),
        (3_000_000, "3M"),
        (999_999, "1M"),
        (2e9, "2B"),
        (-20_000, "\N{MINUS SIGN}20k"),
    ],
)
def test_readable_number(value: float, text: str) -> None:
    assert readable_number(value) == text


def test_curves_of_a_long_env_name_fit_with_readable_ticks_and_a_named_threshold(tmp_path: Path) -> None:
    make_runs(tmp_path, {LONG_ENV: 3_000_000})
    fig = _curves(tmp_path, LONG_ENV)
    _texts_inside(fig)
    steps_ax, wall_ax = fig.axes
    ticks = [t.get_text() for t in steps_ax.get_xticklabels()]
    assert {"1M", "2M", "3M"} <= set(ticks), ticks
    assert all(sum(ch.isdigit() for ch in t) <= 3 for t in ticks), ticks  # never 1000000
    assert steps_ax.xaxis.get_offset_text().get_text() == ""  # no "1e6" in the corner
    assert "k" in "".join(t.get_text() for t in wall_ax.get_xticklabels())  # 1,500 s reads 1.5k
    assert steps_ax.get_xlabel() and steps_ax.get_ylabel() and wall_ax.get_xlabel()
    (legend,) = fig.legends
    assert _legend_texts(legend) == [*(f"{a} (n=3)" for a in ALGOS), "solved threshold (90)"]
    _legend_off_axes(fig, legend)
    assert LONG_ENV in fig.get_suptitle()


def test_a_panel_with_nothing_to_plot_says_why(tmp_path: Path) -> None:
    make_runs(tmp_path, {"cartpole": 100_000}, wall=False)
    fig = _curves(tmp_path, "cartpole", threshold=None)
    steps_ax, wall_ax = fig.axes
    assert len(steps_ax.lines) == len(ALGOS) and not wall_ax.lines
    assert [t.get_text() for t in wall_ax.texts] == ["no eval line has wall_s"]
    assert _legend_texts(fig.legends[0]) == [f"{a} (n=3)" for a in ALGOS]  # no threshold: none listed


def _scores(tmp_path: Path) -> dict[str, dict[str, np.ndarray]]:
    make_runs(tmp_path, {LONG_ENV: 3_000_000, "cartpole": 100_000})
    runs = load_runs([tmp_path])
    keyed, by_cols = with_group_keys(runs, ["algo"])
    scores, left_out = normalised_scores(keyed, by_cols, load_reference())
    assert not left_out and set(scores) == set(ALGOS)
    return scores


def test_the_aggregate_plots_name_the_dashed_line_and_keep_legends_off_the_data(tmp_path: Path) -> None:
    scores = _scores(tmp_path)
    _, agg = plot_aggregates(scores, tmp_path)
    assert {"aggregate_iqm.png", "performance_profiles.pdf"} <= {p.name for p in tmp_path.iterdir()}
    for fig, solved in ((aggregate_iqm_figure(agg), "score 1: solved threshold"), (profiles_figure(scores), "τ = 1")):
        (ax,) = fig.axes
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in dashed] == [1.0]
        assert dashed[0].get_label().startswith(solved)
        (legend,) = fig.legends
        assert dashed[0].get_label() in _legend_texts(legend)
        _legend_off_axes(fig, legend)
        _texts_inside(fig)
    assert _legend_texts(fig.legends[0])[: len(ALGOS)] == list(ALGOS)


def test_the_aggregate_iqm_keeps_long_group_names_inside() -> None:
    import pandas as pd

    groups = ["sb3_ppo, algo.lr=0.0003, algo.n_steps=2048", "a2c"]
    agg = pd.DataFrame({"group": groups, "envs": 2, "iqm": [0.9, 0.5], "iqm_low": [0.8, 0.4], "iqm_high": [1.0, 0.6]})
    fig = aggregate_iqm_figure(agg)
    _texts_inside(fig)
    labels = fig.axes[0].get_yticklabels()
    assert [t.get_text() for t in labels] == groups
    assert labels[0].get_window_extent().y0 > labels[1].get_window_extent().y1  # the first group on top
    bars = [line for line in fig.axes[0].lines if line.get_linewidth() == 8]
    assert [matplotlib.colors.to_hex(b.get_color()) for b in bars] == ["#1f77b4", "#ff7f0e"]  # C0, C1 as the profiles


def test_the_reward_vs_kl_plot_names_its_markers_and_fits(tmp_path: Path) -> None:
    make_kl_sweep(tmp_path)
    fig = reward_vs_kl_figure(load_runs([tmp_path]))
    (ax,) = fig.axes
    legend = ax.get_legend()
    texts = _legend_texts(legend)
    assert texts[:4] == ["kl_coef=0.0", "kl_coef=0.05", "kl_coef=2.0", "kl_coef=10.0"]
    assert texts[4:] == ["end of training (mean over seeds)", "each seed's last log"]
    _legend_off_axes(fig, legend)
    _texts_inside(fig)
    assert ax.get_title().splitlines()[0] == "dialogue_lm"
