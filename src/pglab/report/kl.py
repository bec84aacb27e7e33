"""The reward-vs-KL trade-off of runs trained with a KL penalty to a frozen reference policy.

For runs that log ``train/kl`` (such as ``env=dialogue_lm`` swept over ``algo.kl_coef``):
a table per env and group of the last ``train/episode_return`` (judge reward) and the last
``train/kl`` (nats per reply) of each run, mean ± sample std over seeds, with the final
evaluation return and success rate (:func:`reward_kl_table`, written as ``reward_kl.md``,
``.tex``, ``.csv``), and each group's trajectory over training, reward against KL
(:func:`reward_kl_trajectories`, :func:`plot_reward_vs_kl`: ``reward_vs_kl.png``, ``.pdf``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pglab.report.fmt import MEAN_STD, MEAN_STD_TEX, fmt, markdown_head, markdown_row, tex
from pglab.report.frames import load_train_curves
from pglab.report.groups import by_or_auto, key_tuple, legend_labels, order_key, with_group_keys
from pglab.report.plots import on_grid, pyplot, save
from pglab.report.stats import mean_std


@dataclass
class KLGroup:
    """The completed runs of one env and group that log ``train/kl``, with their training lines."""

    env: str
    keys: dict[str, str]  # --by key -> its value as text
    label: str  # legend label: the keys that vary between the env's groups, e.g. "kl_coef=0.05"
    runs: pd.DataFrame  # rows of load_runs
    curves: list[pd.DataFrame]  # load_train_curves, one per run, in the order of ``runs``


def kl_groups(runs: pd.DataFrame, by: list[str]) -> list[KLGroup]:
    """The completed runs with ``train/kl`` lines, per env (sorted) and group (sorted by the
    group keys, numbers by value: a ``kl_coef`` sweep in increasing order)."""
    done = runs[runs["status"] == "completed"]
    curves = {d: load_train_curves(Path(d)) for d in done["run_dir"]}
    curves = {d: c for d, c in curves.items() if c["kl"].notna().any()}
    done = done[done["run_dir"].isin(list(curves))]
    if done.empty:
        return []
    keyed, by_cols = with_group_keys(done, by)
    groups = []
    for env, env_runs in keyed.groupby("env", sort=True):
        cells = [(tuple(str(k) for k in key_tuple(key)), cell) for key, cell in env_runs.groupby(by_cols, sort=False)]
        cells.sort(key=lambda kc: tuple(order_key(v) for v in kc[0]))
        labels = legend_labels([k for k, _ in cells], by)
        for (key, cell), label in zip(cells, labels, strict=True):
            group_curves = [curves[d] for d in cell["run_dir"]]
            groups.append(KLGroup(str(env), dict(zip(by, key, strict=True)), label, cell, group_curves))
    return groups


def last(values: pd.Series) -> float:
    """The last non-NaN value of a series (NaN if none)."""
    values = values.dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def _table_row(g: KLGroup) -> dict[str, Any]:
    """One row of :func:`reward_kl_table`."""
    reward_mean, reward_std = mean_std([last(c["reward"]) for c in g.curves])
    kl_mean, kl_std = mean_std([last(c["kl"]) for c in g.curves])
    evals = {
        name: mean_std(g.runs[f"final.{name}"].to_numpy(dtype=float))[0]
        if f"final.{name}" in g.runs.columns
        else math.nan
        for name in ("return_mean", "success_rate")
    }
    return {
        "env": g.env,
        **g.keys,
        "runs": len(g.curves),
        "reward_mean": reward_mean,
        "reward_std": reward_std,
        "kl_mean": kl_mean,
        "kl_std": kl_std,
        "eval_return_mean": evals["return_mean"],
        "eval_success_rate": evals["success_rate"],
    }


def reward_kl_table(runs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The reward-vs-KL trade-off at the end of training, one row per env and group.

    Only completed runs whose ``metrics.jsonl`` has ``train/kl`` lines count (see
    :func:`pglab.report.frames.load_train_curves`); groups without such runs have no row.

    Args:
        runs: Runs as :func:`pglab.report.frames.load_runs` reads them.
        by: Group keys, as for :func:`pglab.report.tables.build_table`; ``None`` (or
            ``["auto"]``) for :func:`pglab.report.groups.auto_by` (in a ``kl_coef`` sweep:
            ``algo``, ``algo.kl_coef``).

    Returns:
        Columns ``env``, one per ``by`` key (its value as text), ``runs`` (completed runs
        with ``train/kl``), ``reward_mean``/``reward_std`` (each run's last
        ``train/episode_return``, the judge reward: mean and sample std over runs, std NaN
        for a single run), ``kl_mean``/``kl_std`` (each run's last ``train/kl``, nats per
        reply), ``eval_return_mean`` and ``eval_success_rate`` (the final evaluation's
        ``return_mean`` and ``success_rate`` from ``summary.json``, mean over runs). Rows
        sorted by env, then by the group keys, numbers by value (increasing ``kl_coef``).
        Empty (with these columns) when no run logs ``train/kl``.

    Example:
        >>> reward_kl_table(load_runs([Path("outputs/multirun/kl_sweep")]))  # doctest: +SKIP
    """
    by = by_or_auto(runs, by)
    rows = [_table_row(g) for g in kl_groups(runs, by)]
    columns = ["env", *by, "runs", "reward_mean", "reward_std", "kl_mean", "kl_std"]
    return pd.DataFrame(rows, columns=[*columns, "eval_return_mean", "eval_success_rate"])


def reward_kl_trajectories(runs: pd.DataFrame, by: Sequence[str] | None = None, points: int = 200) -> pd.DataFrame:
    """Each group's path through (KL, reward) over training: the lines of :func:`plot_reward_vs_kl`.

    Each run's ``train/kl`` and ``train/episode_return`` are interpolated (linearly in env
    steps) on a common grid of env steps, from where the latest-starting run logs its
    first line to where the shortest run ends, so that every point averages all runs of
    the group; then both are averaged over the runs. SFT lines are left out (see
    :func:`pglab.report.frames.load_train_curves`).

    Args:
        runs: Runs as :func:`pglab.report.frames.load_runs` reads them.
        by: Group keys, as for :func:`reward_kl_table`.
        points: Grid points per group.

    Returns:
        ``points`` rows per env and group, in the order of :func:`reward_kl_table`, in
        increasing env steps: ``env``, ``label`` (legend label, e.g. ``kl_coef=0.05``),
        one column per ``by`` key, ``runs`` (runs averaged), ``env_steps``, ``kl``
        (mean over runs, nats per reply), ``reward`` (mean judge reward). Empty when no
        run logs ``train/kl``.
    """
    by = by_or_auto(runs, by)
    return trajectories(kl_groups(runs, by), by, points)


def trajectories(groups: list[KLGroup], by: list[str], points: int) -> pd.DataFrame:
    """:func:`reward_kl_trajectories` of groups already found by :func:`kl_groups`."""
    frames = []
    for g in groups:
        curves = [c.dropna(subset=["kl", "reward"]) for c in g.curves]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        start = max(float(c["env_steps"].min()) for c in curves)
        grid, kl = on_grid(curves, "env_steps", points, value="kl", start=start)
        _, reward = on_grid(curves, "env_steps", points, value="reward", start=start)
        columns = {"env": g.env, "label": g.label, **g.keys, "runs": len(curves), "env_steps": grid}
        frames.append(pd.DataFrame({**columns, "kl": np.nanmean(kl, axis=0), "reward": np.nanmean(reward, axis=0)}))
    if not frames:
        return pd.DataFrame(columns=["env", "label", *by, "runs", "env_steps", "kl", "reward"])
    return pd.concat(frames, ignore_index=True)


def _marker_legend(ax: Any) -> None:
    """The panel's legend, right of the axes where it covers no line: one entry per group,
    then what the large and the small markers are (a legend says it where a title is easily missed)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="o", markersize=8, color="0.6", markeredgecolor="black", linestyle="none"),
        Line2D([], [], marker="o", markersize=4, color="0.6", alpha=0.6, linestyle="none"),
    ]
    labels += ["end of training (mean over seeds)", "each seed's last log"]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)


def _plot_env(ax: Any, env: str, env_lines: pd.DataFrame, groups: dict[tuple[str, str], KLGroup]) -> None:
    """One env's panel of :func:`plot_reward_vs_kl`."""
    labels = list(dict.fromkeys(env_lines["label"]))
    colors = pyplot().get_cmap("viridis")(np.linspace(0.0, 0.85, len(labels)))
    for label, color in zip(labels, colors, strict=True):
        line = env_lines[env_lines["label"] == label]
        ax.plot(line["kl"], line["reward"], color=color, linewidth=1.8, label=label)
        end = (line["kl"].iloc[-1], line["reward"].iloc[-1])
        ax.plot(*end, marker="o", markersize=9, color=color, markeredgecolor="black", linestyle="none")
        finals = [(last(c["kl"]), last(c["reward"])) for c in groups[(env, label)].curves]
        ax.scatter(*zip(*finals, strict=True), s=14, color=color, alpha=0.6, linewidths=0, zorder=3)
    ax.set_xlabel("KL(policy ‖ reference), nats per reply  [train/kl]")
    ax.set_ylabel("judge reward  [train/episode_return]")
    # the env on a line of its own: a long name cannot push the title past the panel
    ax.set_title(f"{env}\nreward vs KL to the reference over training, mean over seeds")
    ax.grid(alpha=0.3)
    _marker_legend(ax)


def plot_reward_vs_kl(runs: pd.DataFrame, out: Path, by: Sequence[str] | None = None, points: int = 200) -> list[Path]:
    """Plot judge reward against KL to the reference over training, one line per group.

    x: ``train/kl`` (KL(policy ‖ reference), nats per reply); y: ``train/episode_return``
    (judge reward). Each line is a group's mean trajectory over training
    (:func:`reward_kl_trajectories`), coloured in group order (increasing ``kl_coef``),
    with a large marker at its final point and a small dot at each run's own last
    (KL, reward). One panel per env with ``train/kl`` lines.

    Args:
        runs: Runs as :func:`pglab.report.frames.load_runs` reads them.
        out: Output folder (exists).
        by: Group keys, as for :func:`reward_kl_table`.
        points: Grid points per line.

    Returns:
        The files written, ``reward_vs_kl.png`` and ``reward_vs_kl.pdf`` in ``out``; none
        when no run logs ``train/kl``.
    """
    fig = reward_vs_kl_figure(runs, by, points)
    return [] if fig is None else save(fig, out, "reward_vs_kl")


def reward_vs_kl_figure(runs: pd.DataFrame, by: Sequence[str] | None = None, points: int = 200) -> Any | None:
    """The figure of :func:`plot_reward_vs_kl`, not yet saved (``None`` when no run logs
    ``train/kl``); apart so that a test can measure its texts and legends."""
    by = by_or_auto(runs, by)
    groups = kl_groups(runs, by)
    lines = trajectories(groups, by, points)
    if lines.empty:
        return None
    envs = list(dict.fromkeys(lines["env"]))
    fig, axes = pyplot().subplots(1, len(envs), figsize=(9 * len(envs), 5), squeeze=False, layout="constrained")
    for ax, env in zip(axes[0], envs, strict=True):
        _plot_env(ax, env, lines[lines["env"] == env], {(g.env, g.label): g for g in groups})
    return fig


def _cells(d: dict[str, Any], by: list[str], escape: Any, pm: str) -> list[str]:
    """One row of the reward-vs-KL table as text cells (``escape`` for the keys, ``pm`` for ±)."""
    return [
        escape(str(d["env"])),
        *(escape(str(d[k])) for k in by),
        str(d["runs"]),
        f"{fmt(d['reward_mean'], 3)} {pm} {fmt(d['reward_std'], 3)}",
        f"{fmt(d['kl_mean'], 3)} {pm} {fmt(d['kl_std'], 3)}",
        fmt(d["eval_return_mean"], 3),
        fmt(d["eval_success_rate"], 3),
    ]


def format_reward_kl_markdown(table: pd.DataFrame, by: list[str]) -> str:
    """:func:`reward_kl_table` as markdown, one row per env and group."""
    header = ["env", *by, "runs", f"final judge reward ({MEAN_STD})", f"final KL, nats/reply ({MEAN_STD})"]
    header += ["final eval return", "final eval success rate"]
    lines = markdown_head(header)
    lines += [markdown_row(_cells(d, by, str, "±")) for d in table.to_dict("records")]
    return "\n".join(lines)


def format_reward_kl_latex(table: pd.DataFrame, by: list[str]) -> str:
    """:func:`reward_kl_table` as booktabs LaTeX."""
    cols = ["Environment", *(tex(k) for k in by), "Runs", f"Judge reward ({MEAN_STD_TEX})"]
    cols += [f"KL, nats ({MEAN_STD_TEX})", "Eval return", "Eval success"]
    lines = ["\\begin{tabular}{" + "l" * (1 + len(by)) + "rrrrr}", "\\toprule", " & ".join(cols) + " \\\\", "\\midrule"]
    lines += [" & ".join(_cells(d, by, tex, "$\\pm$")) + " \\\\" for d in table.to_dict("records")]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines).replace("—", "---")
