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
* for runs that log ``train/kl`` (a policy trained with a KL penalty to a frozen reference,
  such as ``env=dialogue_lm`` swept over ``algo.kl_coef``), the reward-vs-KL trade-off: a
  table per env and group of the last ``train/episode_return`` (judge reward) and the last
  ``train/kl`` (nats per reply) of each run, mean ± sample std over seeds, with the final
  evaluation return and success rate (``reward_kl.md``, ``.tex``, ``.csv``), and a plot of
  each group's trajectory over training, reward against KL (``reward_vs_kl.png``, ``.pdf``);
  see :func:`reward_kl_table` and :func:`plot_reward_vs_kl`;
* ``report.md`` with the tables and the plots embedded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
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


def metric_lines(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The lines of a run's ``metrics.jsonl`` as dicts (none if there is no file; a line
    that is not a JSON object, e.g. one cut by a kill, is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def load_curves(run_dir: Path) -> pd.DataFrame:
    """The evaluation lines of one run: ``env_steps``, ``wall_s``, ``return`` (mean eval return)."""
    rows = [
        (row["env_steps"], row.get("time/wall_s", math.nan), row["eval/return_mean"])
        for row in metric_lines(run_dir)
        if "eval/return_mean" in row
    ]
    return pd.DataFrame(rows, columns=["env_steps", "wall_s", "return"])


def _finite(value: Any) -> float:
    """A logged number as a float; NaN for a missing, non-numeric or non-finite one.

    ``metrics.jsonl`` holds non-finite values as text (``"nan"``, ``"inf"``), see
    :mod:`pglab.run_logger`; they would swamp a mean over seeds, so they count as missing.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def load_train_curves(run_dir: Path) -> pd.DataFrame:
    """The training lines of one run that carry a KL to the reference policy.

    Args:
        run_dir: A run folder holding ``metrics.jsonl``.

    Returns:
        One row per log line with ``train/kl``, sorted by env steps (stable, so file order
        among equal steps): ``env_steps``; ``kl``, the line's ``train/kl`` (mean
        KL(policy ‖ reference) per reply since the previous log line, nats); ``reward``, its
        ``train/episode_return`` (mean judge reward of those replies). A missing or
        non-finite value is NaN. Lines of the supervised (SFT) stage, those with any
        ``sft/`` key, are left out. Empty when the run logs no ``train/kl``.
    """
    rows = [
        (row["env_steps"], _finite(row["train/kl"]), _finite(row.get("train/episode_return")))
        for row in metric_lines(run_dir)
        if "train/kl" in row and not any(k.startswith("sft/") for k in row)
    ]
    frame = pd.DataFrame(rows, columns=["env_steps", "kl", "reward"])
    return frame.sort_values("env_steps", kind="stable", ignore_index=True)


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
    reward_kl: pd.DataFrame | None = None  # reward_kl_table(runs, by); None when no run logs train/kl


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


def _digits(values: pd.Series) -> int:
    """Decimals for a table of these values: 1 for returns in the tens and hundreds, 3 for
    scores of a few units (success rates, judge rewards), where one decimal hides the differences."""
    finite = values.dropna().abs()
    return 3 if len(finite) and float(finite.max()) < 10 else 1


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
    digits = _digits(table["mean"])
    for d in table.to_dict("records"):
        ci = f"{_fmt(d['iqm'], digits)} [{_fmt(d['iqm_low'], digits)}, {_fmt(d['iqm_high'], digits)}]"
        solved = f"{d['solved']}/{d['seeds']}" + (f" (≥ {d['threshold']:g})" if not math.isnan(d["threshold"]) else "")
        cells = [
            str(d["env"]),
            *(str(d[k]) for k in keys),
            f"{_fmt(d['mean'], digits)} ± {_fmt(d['std'], digits)}" if d["seeds"] else "— (no completed run)",
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


def _on_grid(
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


# --------------------------------------------------------------------------- reward vs KL


@dataclass
class _KLGroup:
    """The completed runs of one env and group that log ``train/kl``, with their training lines."""

    env: str
    keys: dict[str, str]  # --by key -> its value as text
    label: str  # legend label: the keys that vary between the env's groups, e.g. "kl_coef=0.05"
    runs: pd.DataFrame  # rows of load_runs
    curves: list[pd.DataFrame]  # load_train_curves, one per run, in the order of ``runs``


def _order_key(value: str) -> tuple[int, float, str]:
    """Sort key for a group key's text: numbers by value (``"2.0"`` before ``"10.0"``), then text."""
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (1, 0.0, value) if math.isnan(number) else (0, number, value)


def _labels(keys: list[tuple[str, ...]], by: list[str]) -> list[str]:
    """Legend labels ``name=value`` of the keys that differ between ``keys`` (all of them if none
    differs); ``name`` is the key's last dotted part (``algo.kl_coef`` -> ``kl_coef``) unless two
    shown keys share it."""
    shown = [i for i in range(len(by)) if len({k[i] for k in keys}) > 1] or list(range(len(by)))
    short = [by[i].rsplit(".", 1)[-1] for i in shown]
    names = short if len(set(short)) == len(short) else [by[i] for i in shown]
    return [", ".join(f"{name}={k[i]}" for name, i in zip(names, shown, strict=True)) for k in keys]


def _kl_groups(runs: pd.DataFrame, by: list[str]) -> list[_KLGroup]:
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
        cells = []
        for key, cell in env_runs.groupby(by_cols, sort=False):
            cells.append((tuple(str(k) for k in (key if isinstance(key, tuple) else (key,))), cell))
        cells.sort(key=lambda kc: tuple(_order_key(v) for v in kc[0]))
        labels = _labels([k for k, _ in cells], by)
        for (key, cell), label in zip(cells, labels, strict=True):
            groups.append(
                _KLGroup(
                    env=str(env),
                    keys=dict(zip(by, key, strict=True)),
                    label=label,
                    runs=cell,
                    curves=[curves[d] for d in cell["run_dir"]],
                )
            )
    return groups


def _last(values: pd.Series) -> float:
    """The last non-NaN value of a series (NaN if none)."""
    values = values.dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof 1) of the non-NaN values; NaN where there are too few."""
    x = x[~np.isnan(x)]
    return (float(np.mean(x)) if len(x) else math.nan, float(np.std(x, ddof=1)) if len(x) > 1 else math.nan)


def _by_or_auto(runs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    return auto_by(runs) if by is None or list(by) == ["auto"] else list(by)


def reward_kl_table(runs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The reward-vs-KL trade-off at the end of training, one row per env and group.

    Only completed runs whose ``metrics.jsonl`` has ``train/kl`` lines count (see
    :func:`load_train_curves`); groups without such runs have no row.

    Args:
        runs: Runs as :func:`load_runs` reads them.
        by: Group keys, as for :func:`build_table`; ``None`` (or ``["auto"]``) for
            :func:`auto_by` (in a ``kl_coef`` sweep: ``algo``, ``algo.kl_coef``).

    Returns:
        Columns ``env``, one per ``by`` key (its value as text), ``runs`` (completed runs
        with ``train/kl``), ``reward_mean``/``reward_std`` (each run's last
        ``train/episode_return``, the judge reward: mean and sample std over runs),
        ``kl_mean``/``kl_std`` (each run's last ``train/kl``, nats per reply),
        ``eval_return_mean`` and ``eval_success_rate`` (the final evaluation's
        ``return_mean`` and ``success_rate`` from ``summary.json``, mean over runs). Rows
        sorted by env, then by the group keys, numbers by value (increasing ``kl_coef``).
        Empty (with these columns) when no run logs ``train/kl``.

    Example:
        >>> reward_kl_table(load_runs([Path("outputs/multirun/kl_sweep")]))  # doctest: +SKIP
    """
    by = _by_or_auto(runs, by)
    rows = []
    for g in _kl_groups(runs, by):
        reward_mean, reward_std = _mean_std(np.array([_last(c["reward"]) for c in g.curves]))
        kl_mean, kl_std = _mean_std(np.array([_last(c["kl"]) for c in g.curves]))
        evals = {
            name: _mean_std(g.runs[f"final.{name}"].to_numpy(dtype=float))[0]
            if f"final.{name}" in g.runs.columns
            else math.nan
            for name in ("return_mean", "success_rate")
        }
        rows.append(
            {
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
        )
    columns = ["env", *by, "runs", "reward_mean", "reward_std", "kl_mean", "kl_std"]
    return pd.DataFrame(rows, columns=[*columns, "eval_return_mean", "eval_success_rate"])


def reward_kl_trajectories(runs: pd.DataFrame, by: Sequence[str] | None = None, points: int = 200) -> pd.DataFrame:
    """Each group's path through (KL, reward) over training: the lines of :func:`plot_reward_vs_kl`.

    Each run's ``train/kl`` and ``train/episode_return`` are interpolated (linearly in env
    steps) on a common grid of env steps, from where the latest-starting run logs its
    first line to where the shortest run ends, so that every point averages all runs of
    the group; then both are averaged over the runs. SFT lines are left out (see
    :func:`load_train_curves`).

    Args:
        runs: Runs as :func:`load_runs` reads them.
        by: Group keys, as for :func:`reward_kl_table`.
        points: Grid points per group.

    Returns:
        ``points`` rows per env and group, in the order of :func:`reward_kl_table`, in
        increasing env steps: ``env``, ``label`` (legend label, e.g. ``kl_coef=0.05``),
        one column per ``by`` key, ``runs`` (runs averaged), ``env_steps``, ``kl``
        (mean over runs, nats per reply), ``reward`` (mean judge reward). Empty when no
        run logs ``train/kl``.
    """
    by = _by_or_auto(runs, by)
    return _trajectories(_kl_groups(runs, by), by, points)


def _trajectories(groups: list[_KLGroup], by: list[str], points: int) -> pd.DataFrame:
    frames = []
    for g in groups:
        curves = [c.dropna(subset=["kl", "reward"]) for c in g.curves]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        start = max(float(c["env_steps"].min()) for c in curves)
        grid, kl = _on_grid(curves, "env_steps", points, value="kl", start=start)
        _, reward = _on_grid(curves, "env_steps", points, value="reward", start=start)
        columns = {"env": g.env, "label": g.label, **g.keys, "runs": len(curves), "env_steps": grid}
        frames.append(pd.DataFrame({**columns, "kl": np.nanmean(kl, axis=0), "reward": np.nanmean(reward, axis=0)}))
    if not frames:
        return pd.DataFrame(columns=["env", "label", *by, "runs", "env_steps", "kl", "reward"])
    return pd.concat(frames, ignore_index=True)


def plot_reward_vs_kl(runs: pd.DataFrame, out: Path, by: Sequence[str] | None = None, points: int = 200) -> list[Path]:
    """Plot judge reward against KL to the reference over training, one line per group.

    x: ``train/kl`` (KL(policy ‖ reference), nats per reply); y: ``train/episode_return``
    (judge reward). Each line is a group's mean trajectory over training
    (:func:`reward_kl_trajectories`), coloured in group order (increasing ``kl_coef``),
    with a large marker at its final point and a small dot at each run's own last
    (KL, reward). One panel per env with ``train/kl`` lines.

    Args:
        runs: Runs as :func:`load_runs` reads them.
        out: Output folder (exists).
        by: Group keys, as for :func:`reward_kl_table`.
        points: Grid points per line.

    Returns:
        The files written, ``reward_vs_kl.png`` and ``reward_vs_kl.pdf`` in ``out``; none
        when no run logs ``train/kl``.
    """
    by = _by_or_auto(runs, by)
    kl_groups = _kl_groups(runs, by)
    trajectories = _trajectories(kl_groups, by, points)
    if trajectories.empty:
        return []
    groups = {(g.env, g.label): g for g in kl_groups}
    plt = _pyplot()
    envs = list(dict.fromkeys(trajectories["env"]))
    fig, axes = plt.subplots(1, len(envs), figsize=(7 * len(envs), 5), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        env_lines = trajectories[trajectories["env"] == env]
        labels = list(dict.fromkeys(env_lines["label"]))
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(labels)))
        for label, color in zip(labels, colors, strict=True):
            line = env_lines[env_lines["label"] == label]
            ax.plot(line["kl"], line["reward"], color=color, linewidth=1.8, label=label)
            end = (line["kl"].iloc[-1], line["reward"].iloc[-1])
            ax.plot(*end, marker="o", markersize=9, color=color, markeredgecolor="black", linestyle="none")
            finals = [(_last(c["kl"]), _last(c["reward"])) for c in groups[(env, label)].curves]
            ax.scatter(*zip(*finals, strict=True), s=14, color=color, alpha=0.6, linewidths=0, zorder=3)
        ax.set_xlabel("KL(policy ‖ reference), nats per reply  [train/kl]")
        ax.set_ylabel("judge reward  [train/episode_return]")
        ax.set_title(
            f"{env}: reward vs KL to the reference over training\n"
            "(mean over seeds; ● end of training, dots: each seed's last log)"
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "reward_vs_kl")


def format_reward_kl_markdown(table: pd.DataFrame, by: list[str]) -> str:
    """:func:`reward_kl_table` as markdown, one row per env and group."""
    header = ["env", *by, "runs", "final judge reward (mean ± std)", "final KL, nats/reply (mean ± std)"]
    header += ["final eval return", "final eval success rate"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in table.to_dict("records"):
        cells = [
            str(d["env"]),
            *(str(d[k]) for k in by),
            str(d["runs"]),
            f"{_fmt(d['reward_mean'], 3)} ± {_fmt(d['reward_std'], 3)}",
            f"{_fmt(d['kl_mean'], 3)} ± {_fmt(d['kl_std'], 3)}",
            _fmt(d["eval_return_mean"], 3),
            _fmt(d["eval_success_rate"], 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_reward_kl_latex(table: pd.DataFrame, by: list[str]) -> str:
    """:func:`reward_kl_table` as booktabs LaTeX."""
    cols = ["Environment", *(_tex(k) for k in by), "Runs", "Judge reward (mean $\\pm$ std)"]
    cols += ["KL, nats (mean $\\pm$ std)", "Eval return", "Eval success"]
    lines = ["\\begin{tabular}{" + "l" * (1 + len(by)) + "rrrrr}", "\\toprule", " & ".join(cols) + " \\\\", "\\midrule"]
    for d in table.to_dict("records"):
        cells = [
            _tex(str(d["env"])),
            *(_tex(str(d[k])) for k in by),
            str(d["runs"]),
            f"{_fmt(d['reward_mean'], 3)} $\\pm$ {_fmt(d['reward_std'], 3)}",
            f"{_fmt(d['kl_mean'], 3)} $\\pm$ {_fmt(d['kl_std'], 3)}",
            _fmt(d["eval_return_mean"], 3),
            _fmt(d["eval_success_rate"], 3),
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines).replace("—", "---")


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
    default), ``table_<metric>.*`` for the others (e.g. ``success_rate``). When runs log
    ``train/kl``, also the reward-vs-KL table (``reward_kl.*``, :func:`reward_kl_table`, in
    ``Report.reward_kl``) and plot (``reward_vs_kl.png``/``.pdf``, :func:`plot_reward_vs_kl`),
    and a "Reward vs KL" section in ``report.md``.
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
    reward_kl = reward_kl_table(runs, by)
    kl_markdown = ""
    if not reward_kl.empty:  # runs trained with a KL penalty to a reference policy (train/kl lines)
        report.reward_kl = reward_kl
        kl_markdown = format_reward_kl_markdown(reward_kl, by)
        (out / "reward_kl.md").write_text(kl_markdown + "\n")
        (out / "reward_kl.tex").write_text(format_reward_kl_latex(reward_kl, by) + "\n")
        reward_kl.to_csv(out / "reward_kl.csv", index=False)
        report.figures += plot_reward_vs_kl(runs, out, by)
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
    if kl_markdown:
        lines += [
            "## Reward vs KL",
            "",
            "Judge reward against KL(policy ‖ reference) per env and "
            f"{', '.join(by)}, over the completed runs that log `train/kl`: final judge reward = each run's "
            "last `train/episode_return`, final KL = its last `train/kl` (nats per reply), mean ± sample std "
            "over seeds; final eval return and success rate = the final evaluation, mean over seeds. "
            "Trajectories over training: `reward_vs_kl.png` (mean over seeds on a common env-steps grid).",
            "",
            kl_markdown,
            "",
        ]
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
        if kl_markdown:
            print(f"\nReward vs KL\n\n{kl_markdown}")
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
