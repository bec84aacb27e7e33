"""Reports: the tables and plots that go in a paper, from any set of run or sweep folders.

    python scripts/report.py SWEEP_DIR [SWEEP_DIR ...] [--by algo,algo.baseline] [--out DIR]
    python -m pglab.report SWEEP_DIR ...

Every run under the folders (any depth, any launcher; ``earlier-*`` runs moved aside by a
rerun are left out) is read from its files — ``summary.json`` and ``metrics.jsonl`` —
never from live objects. Runs are grouped by env and by the ``--by`` config keys
(default ``auto``: ``algo`` plus every config key that differs between runs of the same
env and algo, such as a swept learning rate, so that a row never mixes two settings), and
the report holds, following Agarwal et al. (2021), "Deep RL at the
Edge of the Statistical Precipice":

* a table per env and group of the final evaluation return: mean ± sample std (ddof 1),
  the interquartile mean (IQM: the mean of the middle 50 % of runs, ``scipy.stats.trim_mean``
  with 25 % cut from each end) with a 95 % percentile-bootstrap confidence interval
  (``scipy.stats.bootstrap``, 10,000 resamples, seeded), completed seeds, failed runs
  and missing seeds (seeds that other groups of the same env have); the env steps and
  wall seconds to the env's solved threshold (mean over the runs that reached it, and
  how many did), wall seconds and SPS; and the published reference number where one is
  shipped (``pglab/data/reference_results.csv``);
* the same table as markdown (printed, ``table.md``), LaTeX (booktabs, the best mean
  per env in bold, ``table.tex``) and CSV (``table.csv``, one row per env and group,
  with the CI bounds as columns);
* plots (PNG and PDF): learning curves per env (evaluation return, mean over seeds with
  a 95 % bootstrap band, against env steps and against wall seconds, up to where the
  shortest run ends); aggregate IQM
  interval estimates and performance profiles over envs on normalised scores (0 = a
  random policy, 1 = the solved threshold; envs without both in the reference file are
  left out of the aggregates, and the report says so);
* ``report.md`` with the tables and the plots embedded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
SEED = 0


# --------------------------------------------------------------------------- loading


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_runs(roots: Sequence[Path]) -> pd.DataFrame:
    """One row per run folder under ``roots``: status, seed, final metrics, timings, flat config.

    Columns: ``run_dir``, ``status``, ``error``, ``env``, ``algo``, ``seed``, ``final``
    (final eval mean return; NaN unless completed), ``final.<metric>`` for every final
    evaluation metric (``return_mean``, ``success_rate``, ``optimality``, ...),
    ``solved_at_env_steps``, ``solved_at_wall_s``, ``wall_s``, ``sps``, and ``cfg.<key>``
    for every config key.
    """
    rows = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such folder")
        for path in sorted(root.rglob("summary.json")):
            if any(part.startswith("earlier-") for part in path.relative_to(root).parts):
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                rows.append({"run_dir": str(path.parent), "status": "unreadable", "error": str(err)})
                continue
            config = data.get("config") or {}
            final = data.get("final") or {}
            completed = data.get("status") == "completed"
            row = {
                "run_dir": str(path.parent),
                "status": data.get("status", "unknown"),
                "error": data.get("error"),
                "env": data.get("env") or (config.get("env") or {}).get("name"),
                "algo": data.get("algo") or (config.get("algo") or {}).get("name"),
                "seed": data.get("seed", config.get("seed")),
                "final": final.get("return_mean", math.nan) if completed else math.nan,
                "solved_at_env_steps": data.get("solved_at_env_steps"),
                "solved_at_wall_s": data.get("solved_at_wall_s"),
                "wall_s": data.get("wall_s", math.nan) if completed else math.nan,
                "sps": data.get("sps", math.nan) if completed else math.nan,
            }
            row.update({f"final.{k}": (v if completed else math.nan) for k, v in final.items()})
            row.update({f"cfg.{k}": v for k, v in _flatten(config).items()})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError(f"no runs (summary.json) under {', '.join(str(r) for r in roots)}")
    return frame


def load_curves(run_dir: Path) -> pd.DataFrame:
    """The evaluation lines of one run: ``env_steps``, ``wall_s``, ``return`` (mean eval return)."""
    rows = []
    path = Path(run_dir) / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "eval/return_mean" in row:
                rows.append((row["env_steps"], row.get("time/wall_s", math.nan), row["eval/return_mean"]))
    return pd.DataFrame(rows, columns=["env_steps", "wall_s", "return"])


def load_reference(path: Path | None = None) -> pd.DataFrame:
    """Published numbers, solved thresholds and random-policy scores, each with its source."""
    if path is None:
        with resources.files("pglab").joinpath("data/reference_results.csv").open() as f:
            return pd.read_csv(f)
    return pd.read_csv(path)


# --------------------------------------------------------------------------- statistics


def iqm(x: np.ndarray, axis: int = -1) -> Any:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_ci(x: np.ndarray, seed: int = SEED) -> tuple[float, float]:
    """95 % percentile-bootstrap CI of the IQM of one sample (NaN with fewer than 2 values)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        value = float(x[0]) if len(x) and np.all(x == x[0]) and len(x) >= 2 else math.nan
        return value, value
    result = stats.bootstrap(
        (x,),
        iqm,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def stratified_iqm_ci(samples: Sequence[np.ndarray], seed: int = SEED) -> tuple[float, float, float]:
    """IQM over all runs of several tasks and its stratified-bootstrap 95 % CI.

    Each task's runs are resampled on their own (with replacement, as many as it has;
    a task with one run resamples to itself), then the IQM is taken over all of them
    together — the stratified bootstrap of Agarwal et al. (2021), as in rliable.
    """
    samples = [np.asarray(s, dtype=float) for s in samples if len(s)]
    point = float(iqm(np.concatenate(samples)))
    if sum(len(s) for s in samples) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    resampled = [s[rng.integers(0, len(s), size=(N_RESAMPLES, len(s)))] for s in samples]  # [B, n_task] each
    stats_ = iqm(np.concatenate(resampled, axis=1), axis=1)  # [B]
    low, high = np.percentile(stats_, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return point, float(low), float(high)


# --------------------------------------------------------------------------- the table


@dataclass
class Report:
    """Everything a report holds; written by :func:`write_report`."""

    table: pd.DataFrame
    runs: pd.DataFrame
    by: list[str]
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def group_label(row: pd.Series, by: list[str]) -> str:
    return ", ".join(str(row[k]) for k in by)


# config keys that never tell two settings apart (where and how a run ran, not what it computed)
_NOT_SETTINGS = ("cfg.seed", "cfg.logger.", "cfg.hardware.", "cfg.progress_every_s", "cfg.checkpoint_every_steps")


def auto_by(runs: pd.DataFrame) -> list[str]:
    """``algo`` plus every config key whose value differs between runs of the same env and
    algo (a swept hyperparameter), so that no row ever mixes two settings."""
    keys = ["algo"]
    cfg_cols = [c for c in runs.columns if c.startswith("cfg.") and not c.startswith(_NOT_SETTINGS)]
    cfg_cols = [c for c in cfg_cols if c not in ("cfg.algo.name", "cfg.env.name")]
    as_text = runs[cfg_cols].map(_key_text) if cfg_cols else runs[cfg_cols]
    grouped = as_text.groupby([runs["env"].map(_key_text), runs["algo"].map(_key_text)])
    for col in cfg_cols:
        if (grouped[col].nunique(dropna=False) > 1).any():
            keys.append(col.removeprefix("cfg."))
    return keys


def _key_text(value: Any) -> str:
    """A group key as text: lists and numbers as written, a missing key as "—"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(value)


def with_group_keys(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with one text column per ``--by`` key (``grp.<key>``), never NaN, so that
    grouping keeps every run (pandas drops NaN keys) and list values group too."""
    cols = _resolve_by(runs, by)
    runs = runs.copy()
    names = []
    for key, col in zip(by, cols, strict=True):
        runs[f"grp.{key}"] = runs[col].map(_key_text)
        names.append(f"grp.{key}")
    return runs, names


def _resolve_by(runs: pd.DataFrame, by: list[str]) -> list[str]:
    """``--by`` keys as columns: ``algo``, ``seed`` or any config key (``algo.baseline``)."""
    columns = []
    for key in by:
        if key in runs.columns:
            columns.append(key)
        elif f"cfg.{key}" in runs.columns:
            columns.append(f"cfg.{key}")
        else:
            known = sorted(c.removeprefix("cfg.") for c in runs.columns if c.startswith("cfg."))
            raise ValueError(f"--by {key}: no such key in the runs' configs (e.g. {', '.join(known[:12])}, ...)")
    return columns


def build_table(
    runs: pd.DataFrame, by: list[str], reference: pd.DataFrame | None = None, metric: str = "return_mean"
) -> pd.DataFrame:
    """One row per env × group: the statistics described in the module docstring, of the
    final evaluation's ``metric`` (``return_mean``, ``success_rate``, ...)."""
    runs, by_cols = with_group_keys(runs, by)
    column = f"final.{metric}"
    if column not in runs.columns:
        known = sorted(c.removeprefix("final.") for c in runs.columns if c.startswith("final."))
        raise ValueError(f"--metrics {metric}: not a final evaluation metric of these runs ({', '.join(known)})")
    reference = load_reference() if reference is None else reference
    thresholds = {r.env: r.mean for r in reference.itertuples() if r.kind == "threshold"}
    published = {(r.env, r.algo): r for r in reference.itertuples() if r.kind == "published"}
    rows = []
    for env, env_runs in runs.groupby("env", sort=True):
        seeds_in_env = set(env_runs["seed"].dropna())
        for key, cell in env_runs.groupby(by_cols, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            done = cell[cell["status"] == "completed"]
            x = done[column].dropna().to_numpy(dtype=float)
            solved = done["solved_at_env_steps"].dropna()
            solved_wall = done["solved_at_wall_s"].dropna()
            low, high = iqm_ci(x)
            row: dict[str, Any] = {"env": env}
            row.update({k.removeprefix("grp."): v for k, v in zip(by_cols, key, strict=True)})
            row.update(
                {
                    "seeds": len(x),
                    "failed": int((cell["status"] != "completed").sum()),
                    "missing": len(seeds_in_env - set(cell["seed"].dropna())),
                    "mean": float(np.mean(x)) if len(x) else math.nan,
                    "std": float(np.std(x, ddof=1)) if len(x) > 1 else math.nan,
                    "iqm": float(iqm(x)) if len(x) else math.nan,
                    "iqm_low": low,
                    "iqm_high": high,
                    "solved": len(solved),
                    "solved_env_steps": float(solved.mean()) if len(solved) else math.nan,
                    "solved_wall_s": float(solved_wall.mean()) if len(solved_wall) else math.nan,
                    "threshold": thresholds.get(env, math.nan) if metric == "return_mean" else math.nan,
                    "wall_s": float(done["wall_s"].mean()) if len(done) else math.nan,
                    "sps": float(done["sps"].mean()) if len(done) else math.nan,
                }
            )
            ref = published.get((env, row.get("algo"))) if metric == "return_mean" else None
            row["reference"] = f"{ref.mean:.3f} ± {ref.std:.3f} ({int(ref.env_steps):,} steps)" if ref else ""
            rows.append(row)
    return pd.DataFrame(rows)


def _fmt(x: float, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _steps(x: float) -> str:
    if x is None or math.isnan(x):
        return "—"
    if x < 1000:
        return f"{x:.0f}"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def format_markdown(table: pd.DataFrame, by: list[str]) -> str:
    """The table as markdown, one row per env × group."""
    keys = list(by)
    header = ["env", *keys, "mean ± std", "IQM [95% CI]", "seeds", "failed", "missing"]
    header += ["solved", "steps to threshold", "wall s to threshold", "wall s", "SPS", "published"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in table.to_dict("records"):
        ci = f"{_fmt(d['iqm'])} [{_fmt(d['iqm_low'])}, {_fmt(d['iqm_high'])}]"
        solved = f"{d['solved']}/{d['seeds']}" + (f" (≥ {d['threshold']:g})" if not math.isnan(d["threshold"]) else "")
        cells = [
            str(d["env"]),
            *(str(d[k]) for k in keys),
            f"{_fmt(d['mean'])} ± {_fmt(d['std'])}" if d["seeds"] else "— (no completed run)",
            ci if d["seeds"] else "—",
            str(d["seeds"]),
            str(d["failed"] or ""),
            str(d["missing"] or ""),
            solved if not math.isnan(d["threshold"]) else "—",
            _steps(d["solved_env_steps"]),
            _fmt(d["solved_wall_s"], 0),
            _fmt(d["wall_s"], 0),
            _fmt(d["sps"], 0),
            d["reference"] or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def format_latex(table: pd.DataFrame, by: list[str], metric: str = "return_mean") -> str:
    """booktabs LaTeX: env, group, mean ± std, IQM [CI], seeds; the best mean per env in bold."""
    name = "Return" if metric == "return_mean" else _tex(metric.replace("_", " ").capitalize())
    cols = ["Environment", *(_tex(k) for k in by), f"{name} (mean $\\pm$ std)", "IQM [95\\% CI]", "Seeds", "Published"]
    lines = [
        "\\begin{tabular}{" + "l" * (1 + len(by)) + "rrrl}",
        "\\toprule",
        " & ".join(cols) + " \\\\",
        "\\midrule",
    ]
    for env, rows in table.groupby("env", sort=True):
        best = round(rows["mean"].max(), 1) if rows["mean"].notna().any() else math.nan
        for d in rows.to_dict("records"):
            value = f"{_fmt(d['mean'])} $\\pm$ {_fmt(d['std'])}" if d["seeds"] else "---"
            if d["seeds"] and round(d["mean"], 1) == best:
                value = f"\\textbf{{{value}}}"
            ci = f"{_fmt(d['iqm'])} [{_fmt(d['iqm_low'])}, {_fmt(d['iqm_high'])}]" if d["seeds"] else "---"
            seeds = str(d["seeds"]) + (f" ({d['failed']} failed)" if d["failed"] else "")
            group = [_tex(str(d[k])) for k in by]
            ref = _tex(d["reference"]) if d["reference"] else ""
            lines.append(" & ".join([_tex(str(env)), *group, value, ci, seeds, ref]) + " \\\\")
        lines.append("\\midrule")
    lines[-1] = "\\bottomrule"
    lines.append("\\end{tabular}")
    return "\n".join(lines).replace("±", "$\\pm$").replace("—", "---")


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` into ``out`` and close it."""
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=120)
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _bootstrap_band(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile-bootstrap band of the mean over runs: ``values [runs, points]`` (NaN = no data)."""
    runs = values.shape[0]
    if runs < 2:
        return values[0], values[0]
    idx = rng.integers(0, runs, size=(n, runs))
    with warnings.catch_warnings():  # beyond the shortest runs some resamples hold no data
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[idx], axis=1)  # [n, points]
        return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


def _on_grid(curves: list[pd.DataFrame], column: str, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Each run's eval return interpolated on a common grid of ``column``, up to where the
    shortest run ends: every point of the curve averages all runs."""
    top = min(float(c[column].max()) for c in curves)
    grid = np.linspace(0.0, top, points)
    values = np.full((len(curves), points), np.nan)
    for i, c in enumerate(curves):
        c = c.dropna(subset=[column]).sort_values(column)
        inside = grid <= c[column].max()
        values[i, inside] = np.interp(grid[inside], c[column], c["return"])
    return grid, values


def plot_curves(runs: pd.DataFrame, by_cols: list[str], out: Path, thresholds: dict[str, float]) -> list[Path]:
    """Learning curves per env (vs env steps and vs wall seconds): mean over seeds, 95 % band."""
    plt = _pyplot()
    written = []
    rng = np.random.default_rng(SEED)
    done = runs[runs["status"] == "completed"]
    for env, env_runs in done.groupby("env", sort=True):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for key, cell in env_runs.groupby(by_cols, sort=True):
            label = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            curves = [c for c in (load_curves(Path(d)) for d in cell["run_dir"]) if len(c)]
            if not curves:
                continue
            for ax, column in zip(axes, ("env_steps", "wall_s"), strict=True):
                grid, values = _on_grid(curves, column)
                with np.errstate(all="ignore"):
                    mean = np.nanmean(values, axis=0)
                low, high = _bootstrap_band(values, rng)
                (line,) = ax.plot(grid, mean, label=f"{label} (n={len(curves)})", linewidth=1.8)
                ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
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
        written += _save(fig, out, f"curves_{env}")
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
        label = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        for env, env_cell in cell.groupby("env"):
            if env in left_out:
                continue
            scale = solved[env] - random[env]
            out.setdefault(label, {})[env] = (env_cell["final"].to_numpy(dtype=float) - random[env]) / scale
    return out, left_out


def plot_aggregates(scores: dict[str, dict[str, np.ndarray]], out: Path) -> tuple[list[Path], pd.DataFrame]:
    """Aggregate IQM with stratified-bootstrap CIs, and performance profiles, over envs."""
    plt = _pyplot()
    written: list[Path] = []
    rows = []
    for label, per_env in scores.items():
        point, low, high = stratified_iqm_ci(list(per_env.values()))
        rows.append({"group": label, "envs": len(per_env), "iqm": point, "iqm_low": low, "iqm_high": high})
    agg = pd.DataFrame(rows)
    if agg.empty:
        return written, agg
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(agg) + 1.4))
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
    written += _save(fig, out, "aggregate_iqm")

    all_scores = np.concatenate([np.concatenate(list(d.values())) for d in scores.values()])
    taus = np.linspace(min(0.0, all_scores.min()), max(1.2, all_scores.max()), 200)
    rng = np.random.default_rng(SEED)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, per_env in scores.items():
        envs = list(per_env.values())
        profile = np.mean([(x[:, None] > taus).mean(axis=0) for x in envs], axis=0)
        boots = []
        for _ in range(1000):  # stratified: resample each env's runs on their own
            boots.append(np.mean([(x[rng.integers(0, len(x), len(x))][:, None] > taus).mean(axis=0) for x in envs], 0))
        low, high = np.percentile(boots, [2.5, 97.5], axis=0)
        (line,) = ax.plot(taus, profile, label=label, linewidth=1.8)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("Performance profiles (95% stratified bootstrap CIs)")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written += _save(fig, out, "performance_profiles")
    return written, agg


# --------------------------------------------------------------------------- the report


def write_report(
    roots: Sequence[Path],
    out: Path,
    by: Sequence[str] = ("auto",),
    quiet: bool = False,
    metrics: Sequence[str] = ("return_mean",),
) -> Report:
    """Read the runs under ``roots``; write tables, plots and ``report.md`` into ``out``.

    One table per final evaluation metric: ``table.*`` for the first (the return by
    default), ``table_<metric>.*`` for the others (e.g. ``success_rate``).
    """
    runs = load_runs([Path(r) for r in roots])
    by = auto_by(runs) if list(by) == ["auto"] else list(by)
    reference = load_reference()
    tables = {m: build_table(runs, by, reference, metric=m) for m in metrics}
    table = tables[metrics[0]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(table=table, runs=runs, by=by)
    markdowns = {}
    for i, (metric, t) in enumerate(tables.items()):
        stem = "table" if i == 0 else f"table_{metric}"
        markdowns[metric] = format_markdown(t, by)
        (out / f"{stem}.md").write_text(markdowns[metric] + "\n")
        (out / f"{stem}.tex").write_text(format_latex(t, by, metric) + "\n")
        t.to_csv(out / f"{stem}.csv", index=False)
    markdown = markdowns[metrics[0]]
    thresholds = {r.env: r.mean for r in reference.itertuples() if r.kind == "threshold"}
    keyed, by_cols = with_group_keys(runs, by)
    report.figures += plot_curves(keyed, by_cols, out, thresholds)
    scores, left_out = normalised_scores(keyed, by_cols, reference)
    figures, agg = plot_aggregates(scores, out)
    report.figures += figures
    if left_out:
        report.notes.append(
            "Left out of the aggregate plots (no random-policy score or threshold in the reference file, "
            f"or not run by every group): {', '.join(left_out)}."
        )
    failed = runs[runs["status"] != "completed"]
    lines = [
        "# pglab report",
        "",
        f"Runs read: {len(runs)} ({len(runs) - len(failed)} completed, {len(failed)} failed or unfinished) "
        f"from {', '.join(f'`{r}`' for r in roots)}.",
        "",
        f"Final evaluation return per env and {', '.join(by)}: mean ± sample std over seeds; IQM (mean of the "
        f"middle 50%) with a 95% percentile-bootstrap CI ({N_RESAMPLES:,} resamples); solved = runs whose "
        "evaluation reached the env's threshold, with their mean env steps and wall seconds to it; "
        "published = the reference number shipped with pglab (source in `pglab/data/reference_results.csv`).",
        "",
        markdown,
        "",
    ]
    for metric in list(metrics)[1:]:
        lines += [f"### Final `{metric}`", "", markdowns[metric], ""]
    if not agg.empty:
        lines += [
            "## Aggregate over envs (normalised: 0 = random policy, 1 = solved threshold)",
            "",
            "| group | envs | IQM [95% stratified bootstrap CI] |",
            "|---|---|---|",
        ]
        for r in agg.to_dict("records"):
            lines.append(f"| {r['group']} | {r['envs']} | {r['iqm']:.3f} [{r['iqm_low']:.3f}, {r['iqm_high']:.3f}] |")
        lines.append("")
    lines += [f"- {note}" for note in report.notes]
    if len(failed):
        lines += ["", "## Failed or unfinished runs", ""]
        lines += [f"- `{r['run_dir']}`: {r['status']}: {r['error']}" for r in failed.to_dict("records")]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in report.figures if p.suffix == ".png"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print(markdown)
        print(f"\nreport: {out / 'report.md'} (table.md, table.tex, table.csv, {len(report.figures)} plots)")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pglab.report", description="Tables and plots from pglab run or sweep folders."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (searched at any depth)")
    parser.add_argument(
        "--by",
        default="auto",
        help="config keys to group by, comma-separated (default: auto = algo plus every key that differs "
        "between runs of the same env and algo, e.g. a swept learning rate)",
    )
    parser.add_argument(
        "--metrics",
        default="return_mean",
        help="final evaluation metrics, one table each, comma-separated (default: return_mean; "
        "e.g. return_mean,success_rate,optimality)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first dir>/report)")
    args = parser.parse_args(argv)
    out = args.out or (args.dirs[0] / "report")
    split = lambda text: [k.strip() for k in text.split(",") if k.strip()]  # noqa: E731
    try:
        write_report(args.dirs, out, by=split(args.by), metrics=split(args.metrics) or ["return_mean"])
    except (FileNotFoundError, ValueError) as err:
        print(f"pglab report: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
