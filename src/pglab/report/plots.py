"""The report's plots (PNG and PDF): learning curves per env, and over envs the aggregate
IQM and performance profiles of normalised scores. matplotlib is imported on first use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pglab.report.frames import load_curves
from pglab.report.groups import key_tuple
from pglab.report.stats import SEED, bootstrap_band, profile_band, stratified_iqm_ci


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` into ``out`` and close it.

    ``bbox_inches="tight"`` on top of the figures' constrained layout: a text wider than
    the figure itself (a very long env name in a title) widens the file rather than
    being cut at its edge.
    """
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        # no creation date in the PDF: a report regenerated from the same runs is the same file
        metadata = {"CreationDate": None} if ext == "pdf" else None
        fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.05, metadata=metadata)
        paths.append(path)
    pyplot().close(fig)
    return paths


def readable_number(x: float, _pos: object = None) -> str:
    """Tick text such as ``100k``, ``1.5M``, ``2B`` (three significant digits at most).

    The default formatter writes env-step budgets as ``100000`` or as ``0.5`` ... ``3.0``
    with a ``1e6`` offset in the axis corner, both slow to read; a matplotlib
    ``FuncFormatter`` (the second argument is its tick position, unused).
    """
    x = float(f"{x:.3g}")  # round first, so that 999,999 reads 1M rather than 1e+03k
    text = f"{abs(x):g}"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            text = f"{abs(x) / scale:.3g}{suffix}"
            break
    return f"\N{MINUS SIGN}{text}" if x < 0 else text  # the minus sign of matplotlib's own ticks


def readable_ticks(axis: Any) -> None:
    """Use :func:`readable_number` for the tick labels of ``axis`` (an ``ax.xaxis``)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(readable_number))


def figure_legend(fig: Any, axes: Any, loc: str = "outside lower center", ncols: int = 5) -> Any:
    """One legend for the whole figure, outside the axes, from the labelled lines of all
    ``axes`` (each label once): it can cover no data, and a line drawn on only one panel
    (a group without wall seconds) is still named."""
    entries: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    ncols = max(1, min(ncols, len(entries)))
    return fig.legend(list(entries.values()), list(entries), loc=loc, ncols=ncols, fontsize=8, frameon=False)


def on_grid(
    curves: list[pd.DataFrame], column: str, points: int = 200, value: str = "return", start: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's ``value`` (eval return by default) interpolated on a common grid of ``column``
    from ``start`` up to where the shortest run ends: every point of the curve averages all runs.

    Returns:
        ``grid [points]`` and ``values [runs, points]``.
    """
    top = min(float(c[column].max()) for c in curves)
    grid = np.linspace(min(start, top), top, points)
    values = np.full((len(curves), points), np.nan)
    for i, c in enumerate(curves):
        c = c.dropna(subset=[column, value]).sort_values(column)
        inside = grid <= c[column].max()
        values[i, inside] = np.interp(grid[inside], c[column], c[value])
    return grid, values


# the two panels of a learning-curve figure: the eval-line column on x, its axis label, the panel title
CURVE_AXES = (
    ("env_steps", "environment steps", "against environment steps"),
    ("wall_s", "wall-clock seconds", "against wall-clock time"),
)


def _plot_group_curves(axes: Any, curves: list[pd.DataFrame], label: str, rng: np.random.Generator) -> None:
    """One group's mean curve and 95 % band, against env steps and against wall seconds.

    Points with a missing or non-finite value are left out (:func:`pglab.report.frames.load_curves`);
    a run with no point left on an axis (eval lines without ``time/wall_s``) is left off it.
    """
    for ax, (column, _, _) in zip(axes, CURVE_AXES, strict=True):
        usable = [c.dropna(subset=[column, "return"]) for c in curves]
        usable = [c for c in usable if len(c)]
        if not usable:
            continue
        grid, values = on_grid(usable, column)
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0)
        low, high = bootstrap_band(values, rng)
        (line,) = ax.plot(grid, mean, label=f"{label} (n={len(usable)})", linewidth=1.8)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def _style_curve_axes(fig: Any, axes: Any, env: str, threshold: float | None) -> None:
    """Labels, readable ticks, the solved threshold and one legend below both panels.

    The env name goes once into the figure's title rather than into each panel's, where
    a long one (``mountaincar_continuous``) would run past the figure's left edge.
    """
    for ax, (column, xlabel, title) in zip(axes, CURVE_AXES, strict=True):
        if not ax.lines:  # say why a panel is empty rather than leave it blank
            ax.text(0.5, 0.5, f"no eval line has {column}", transform=ax.transAxes, ha="center", color="0.4")
        if threshold is not None:
            label = f"solved threshold ({threshold:g})"
            ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=label)
        ax.set(xlabel=xlabel, ylabel="evaluation return", title=title)
        readable_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{env}: evaluation return, mean over seeds with 95% bootstrap CI band")
    figure_legend(fig, axes)


def curves_figure(
    env: str, env_runs: pd.DataFrame, by_cols: list[str], threshold: float | None, rng: np.random.Generator
) -> Any:
    """The learning-curve figure of one env (:func:`plot_curves`), not yet saved."""
    fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for key, cell in env_runs.groupby(by_cols, sort=True):
        curves = [c for c in (load_curves(Path(d)) for d in cell["run_dir"]) if len(c)]
        if curves:
            _plot_group_curves(axes, curves, ", ".join(str(k) for k in key_tuple(key)), rng)
    _style_curve_axes(fig, axes, env, threshold)
    return fig


def plot_curves(runs: pd.DataFrame, by_cols: list[str], out: Path, thresholds: dict[str, float]) -> list[Path]:
    """Learning curves per env (vs env steps and vs wall seconds): mean over seeds, 95 % band."""
    written = []
    rng = np.random.default_rng(SEED)
    done = runs[runs["status"] == "completed"]
    for env, env_runs in done.groupby("env", sort=True):
        fig = curves_figure(str(env), env_runs, by_cols, thresholds.get(str(env)), rng)
        written += save(fig, out, f"curves_{env}")
    return written


def normalised_scores(
    runs: pd.DataFrame, by_cols: list[str], reference: pd.DataFrame
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Final returns scaled per env so that a random policy is 0 and the solved threshold 1.

    Returns ``{group: {env: scores}}`` and the envs left out (no random-policy score or
    threshold in the reference file, or not run by every group).
    """
    random = {r.env: r.mean for r in reference.itertuples() if r.kind == "random"}
    solved = {r.env: r.mean for r in reference.itertuples() if r.kind == "threshold"}
    done = runs[runs["status"] == "completed"]
    left_out = sorted(set(done["env"]) - (set(random) & set(solved)))
    # only envs that every group ran, so that the groups are compared on the same tasks
    envs_per_group = [set(cell["env"]) for _, cell in done.groupby(by_cols, sort=True)]
    common = set.intersection(*envs_per_group) if envs_per_group else set()
    left_out = sorted(set(left_out) | (set(done["env"]) - common))
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, cell in done.groupby(by_cols, sort=True):
        label = ", ".join(str(k) for k in key_tuple(key))
        for env, env_cell in cell.groupby("env"):
            if env in left_out:
                continue
            scale = solved[env] - random[env]
            out.setdefault(label, {})[env] = (env_cell["final"].to_numpy(dtype=float) - random[env]) / scale
    return out, left_out


# what the dashed line at normalised score 1 is, in the aggregate plots' legends
SOLVED_LINE = "solved threshold"


def aggregate_iqm_figure(agg: pd.DataFrame) -> Any:
    """Each group's aggregate IQM as a tick with its CI as a bar; the figure of
    :func:`plot_aggregates` (``aggregate_iqm``), not yet saved.

    Group ``i`` is colour ``Ci`` in this plot and in the performance profiles, also when
    a group has no CI bar (a NaN interval), so that the two plots match.
    """
    from matplotlib.lines import Line2D

    longest = max(len(str(g)) for g in agg["group"])  # the y tick labels take width from the axes
    fig, ax = pyplot().subplots(figsize=(6 + 0.08 * longest, 0.5 * len(agg) + 2.4), layout="constrained")
    ys = np.arange(len(agg))
    for y, r in zip(ys, agg.to_dict("records"), strict=True):
        if not math.isnan(r["iqm_low"]):
            ax.plot([r["iqm_low"], r["iqm_high"]], [y, y], linewidth=8, alpha=0.35, color=f"C{y}")
        ax.plot([r["iqm"]], [y], marker="|", markersize=16, markeredgewidth=1.5, color="black", linestyle="none")
    ax.set_yticks(ys, agg["group"])
    ax.set_ylim(len(agg) - 0.4, -0.6)  # the first group on top, in the order of the tables and the profiles' legend
    solved = ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label=f"score 1: {SOLVED_LINE}")
    ax.set_xlabel("IQM of normalised score\n(0 = random policy, 1 = solved threshold)")
    ax.set_title("Aggregate IQM with 95% stratified bootstrap CIs")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], color="black", marker="|", markersize=12, linestyle="none", label="IQM"),
        Line2D([], [], color="0.5", alpha=0.5, linewidth=8, label="95% CI"),
        solved,
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def profiles_figure(scores: dict[str, dict[str, np.ndarray]]) -> Any:
    """Each group's performance profile with its stratified-bootstrap band; the figure of
    :func:`plot_aggregates` (``performance_profiles``), not yet saved. The legend sits right
    of the axes, where it covers no profile."""
    all_scores = np.concatenate([np.concatenate(list(d.values())) for d in scores.values()])
    taus = np.linspace(min(0.0, all_scores.min()), max(1.2, all_scores.max()), 200)
    rng = np.random.default_rng(SEED)
    fig, ax = pyplot().subplots(figsize=(8, 4.2), layout="constrained")
    for i, (label, per_env) in enumerate(scores.items()):
        profile, low, high = profile_band(list(per_env.values()), taus, rng)
        ax.plot(taus, profile, label=label, linewidth=1.8, color=f"C{i}")
        ax.fill_between(taus, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ (0 = random policy, 1 = solved threshold)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("Performance profiles (95% stratified bootstrap CIs)")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label=f"τ = 1: {SOLVED_LINE}")
    ax.grid(alpha=0.3)
    figure_legend(fig, [ax], loc="outside right upper", ncols=1)
    return fig


def aggregate_table(scores: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Per group (``scores``: ``{group: {env: normalised scores}}``, :func:`normalised_scores`):
    ``group``, ``envs``, and the IQM over envs with its stratified-bootstrap CI, ``iqm``,
    ``iqm_low``, ``iqm_high``."""
    rows = []
    for label, per_env in scores.items():
        point, low, high = stratified_iqm_ci(list(per_env.values()))
        rows.append({"group": label, "envs": len(per_env), "iqm": point, "iqm_low": low, "iqm_high": high})
    return pd.DataFrame(rows)


def plot_aggregates(scores: dict[str, dict[str, np.ndarray]], out: Path) -> tuple[list[Path], pd.DataFrame]:
    """Aggregate IQM with stratified-bootstrap CIs, and performance profiles, over envs.

    Returns:
        The files written (none without scores) and the aggregate table: ``group``,
        ``envs``, ``iqm``, ``iqm_low``, ``iqm_high``.
    """
    agg = aggregate_table(scores)
    if agg.empty:
        return [], agg
    return save(aggregate_iqm_figure(agg), out, "aggregate_iqm") + save(
        profiles_figure(scores), out, "performance_profiles"
    ), agg
