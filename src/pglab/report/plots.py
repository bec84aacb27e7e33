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
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` into ``out`` and close it."""
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=120)
        paths.append(path)
    pyplot().close(fig)
    return paths


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


def _plot_group_curves(axes: Any, curves: list[pd.DataFrame], label: str, rng: np.random.Generator) -> None:
    """One group's mean curve and 95 % band, against env steps and against wall seconds.

    Points with a missing or non-finite value are left out (:func:`pglab.report.frames.load_curves`);
    a run with no point left on an axis (eval lines without ``time/wall_s``) is left off it.
    """
    for ax, column in zip(axes, ("env_steps", "wall_s"), strict=True):
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


def plot_curves(runs: pd.DataFrame, by_cols: list[str], out: Path, thresholds: dict[str, float]) -> list[Path]:
    """Learning curves per env (vs env steps and vs wall seconds): mean over seeds, 95 % band."""
    plt = pyplot()
    written = []
    rng = np.random.default_rng(SEED)
    done = runs[runs["status"] == "completed"]
    for env, env_runs in done.groupby("env", sort=True):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for key, cell in env_runs.groupby(by_cols, sort=True):
            curves = [c for c in (load_curves(Path(d)) for d in cell["run_dir"]) if len(c)]
            if curves:
                _plot_group_curves(axes, curves, ", ".join(str(k) for k in key_tuple(key)), rng)
        for ax, xlabel in zip(axes, ("environment steps", "wall-clock seconds"), strict=True):
            if env in thresholds:
                ax.axhline(thresholds[env], color="black", linestyle="--", linewidth=1, label="solved threshold")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("evaluation return")
            ax.grid(alpha=0.3)
        axes[0].set_title(f"{env}: learning curves (mean over seeds, 95% bootstrap CI)")
        axes[1].set_title(f"{env}: against wall time")
        axes[1].legend(loc="best", fontsize=8)
        fig.tight_layout()
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


def _plot_aggregate_iqm(agg: pd.DataFrame, out: Path) -> list[Path]:
    """Each group's aggregate IQM as a tick with its CI as a bar (``aggregate_iqm``)."""
    fig, ax = pyplot().subplots(figsize=(6.5, 0.6 * len(agg) + 1.4))
    ys = np.arange(len(agg))
    for y, r in zip(ys, agg.to_dict("records"), strict=True):
        if not math.isnan(r["iqm_low"]):
            ax.plot([r["iqm_low"], r["iqm_high"]], [y, y], linewidth=8, alpha=0.35)
        ax.plot([r["iqm"]], [y], marker="|", markersize=16, color="black")
    ax.set_yticks(ys, agg["group"])
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("IQM of normalised score (0 = random policy, 1 = solved threshold)")
    ax.set_title("Aggregate IQM with 95% stratified bootstrap CIs")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "aggregate_iqm")


def _plot_profiles(scores: dict[str, dict[str, np.ndarray]], out: Path) -> list[Path]:
    """Each group's performance profile with its stratified-bootstrap band (``performance_profiles``)."""
    all_scores = np.concatenate([np.concatenate(list(d.values())) for d in scores.values()])
    taus = np.linspace(min(0.0, all_scores.min()), max(1.2, all_scores.max()), 200)
    rng = np.random.default_rng(SEED)
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for label, per_env in scores.items():
        profile, low, high = profile_band(list(per_env.values()), taus, rng)
        (line,) = ax.plot(taus, profile, label=label, linewidth=1.8)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("Performance profiles (95% stratified bootstrap CIs)")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "performance_profiles")


def plot_aggregates(scores: dict[str, dict[str, np.ndarray]], out: Path) -> tuple[list[Path], pd.DataFrame]:
    """Aggregate IQM with stratified-bootstrap CIs, and performance profiles, over envs.

    Returns:
        The files written (none without scores) and the aggregate table: ``group``,
        ``envs``, ``iqm``, ``iqm_low``, ``iqm_high``.
    """
    rows = []
    for label, per_env in scores.items():
        point, low, high = stratified_iqm_ci(list(per_env.values()))
        rows.append({"group": label, "envs": len(per_env), "iqm": point, "iqm_low": low, "iqm_high": high})
    agg = pd.DataFrame(rows)
    if agg.empty:
        return [], agg
    return _plot_aggregate_iqm(agg, out) + _plot_profiles(scores, out), agg
