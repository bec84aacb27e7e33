"""The report's main table: one row per env × group of a final evaluation metric, as a
DataFrame (``table.csv``), markdown (``table.md``) and booktabs LaTeX (``table.tex``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pglab.report.fmt import MEAN_STD, MEAN_STD_TEX, digits, fmt, markdown_head, markdown_row, steps, tex
from pglab.report.frames import load_reference
from pglab.report.groups import key_tuple, with_group_keys
from pglab.report.stats import iqm, iqm_ci, mean_std
from pglab.solved import describe


def _cell_stats(cell: pd.DataFrame, column: str, seeds_in_env: set[Any], criterion: str) -> dict[str, Any]:
    """The statistics of one env × group's runs (``cell``) of the final ``column``."""
    done = cell[cell["status"] == "completed"]
    x = done[column].dropna().to_numpy(dtype=float)
    solved = done["solved_at_env_steps"].dropna()
    solved_wall = done["solved_at_wall_s"].dropna()
    mean, std = mean_std(x)
    low, high = iqm_ci(x)
    return {
        "seeds": len(x),
        "failed": int((cell["status"] != "completed").sum()),
        "missing": len(seeds_in_env - set(cell["seed"].dropna())),
        "mean": mean,
        "std": std,
        "iqm": float(iqm(x)) if len(x) else math.nan,
        "iqm_low": low,
        "iqm_high": high,
        "solved": len(solved),
        "solved_env_steps": float(solved.mean()) if len(solved) else math.nan,
        "solved_wall_s": float(solved_wall.mean()) if len(solved_wall) else math.nan,
        "criterion": criterion,
        "wall_s": float(done["wall_s"].mean()) if len(done) else math.nan,
        "sps": float(done["sps"].mean()) if len(done) else math.nan,
    }


def solved_criterion(env_runs: pd.DataFrame) -> str:
    """The ``env.solved`` criterion of a table cell's runs as text (``return ≥ -110``), from
    their configs (``cfg.env.solved.<metric>``); runs written before the criterion existed
    name a return threshold (``cfg.env.solved_threshold``). "" when the runs name none."""
    prefix = "cfg.env.solved."
    criterion = {
        c.removeprefix(prefix): float(env_runs[c].dropna().iloc[0])
        for c in env_runs.columns
        if c.startswith(prefix) and env_runs[c].notna().any()
    }
    old = "cfg.env.solved_threshold"
    if not criterion and old in env_runs.columns and env_runs[old].notna().any():
        criterion = {"return_mean": float(env_runs[old].dropna().iloc[0])}
    return describe(criterion)


def return_thresholds(runs: pd.DataFrame) -> dict[str, float]:
    """Per env, the return its runs count as solved (``cfg.env.solved.return_mean``) where
    their criterion names one: the dashed line of the learning curves."""
    column = "cfg.env.solved.return_mean"
    if column not in runs.columns:
        return {}
    named = runs[runs[column].notna()]
    return {str(env): float(cell[column].iloc[0]) for env, cell in named.groupby("env")}


def build_table(
    runs: pd.DataFrame, by: list[str], reference: pd.DataFrame | None = None, metric: str = "return_mean"
) -> pd.DataFrame:
    """One row per env × group of the final evaluation's ``metric`` (``return_mean``,
    ``success_rate``, ...): completed seeds, failed runs, missing seeds (seeds that other
    groups of the env have), mean and sample std (:func:`pglab.report.stats.mean_std`),
    IQM with its bootstrap CI, runs that met the env's ``solved`` criterion and their mean
    env steps and wall seconds to it, wall seconds, SPS, and the published reference."""
    runs, by_cols = with_group_keys(runs, by)
    column = f"final.{metric}"
    if column not in runs.columns:
        known = sorted(c.removeprefix("final.") for c in runs.columns if c.startswith("final."))
        raise ValueError(f"--metrics {metric}: not a final evaluation metric of these runs ({', '.join(known)})")
    reference = load_reference() if reference is None else reference
    published = {(r.env, r.algo): r for r in reference.itertuples() if r.kind == "published"}
    rows = []
    for env, env_runs in runs.groupby("env", sort=True):
        seeds_in_env = set(env_runs["seed"].dropna())
        for key, cell in env_runs.groupby(by_cols, sort=True):
            row: dict[str, Any] = {"env": env}
            row.update({k.removeprefix("grp."): v for k, v in zip(by_cols, key_tuple(key), strict=True)})
            row.update(_cell_stats(cell, column, seeds_in_env, solved_criterion(cell)))
            ref = published.get((env, row.get("algo"))) if metric == "return_mean" else None
            row["reference"] = f"{ref.mean:.3f} ± {ref.std:.3f} ({int(ref.env_steps):,} steps)" if ref else ""
            rows.append(row)
    return pd.DataFrame(rows)


def _markdown_cells(d: dict[str, Any], keys: list[str], places: int) -> list[str]:
    """One row of :func:`format_markdown`."""
    ci = f"{fmt(d['iqm'], places)} [{fmt(d['iqm_low'], places)}, {fmt(d['iqm_high'], places)}]"
    solved = f"{d['solved']}/{d['seeds']} ({d['criterion']})"
    return [
        str(d["env"]),
        *(str(d[k]) for k in keys),
        f"{fmt(d['mean'], places)} ± {fmt(d['std'], places)}" if d["seeds"] else "— (no completed run)",
        ci if d["seeds"] else "—",
        str(d["seeds"]),
        str(d["failed"] or ""),
        str(d["missing"] or ""),
        solved if d["criterion"] else "—",
        steps(d["solved_env_steps"]),
        fmt(d["solved_wall_s"], 0),
        fmt(d["wall_s"], 0),
        fmt(d["sps"], 0),
        d["reference"] or "",
    ]


def format_markdown(table: pd.DataFrame, by: list[str]) -> str:
    """The table as markdown, one row per env × group; the spread is the sample std."""
    keys = list(by)
    header = ["env", *keys, MEAN_STD, "IQM [95% CI]", "seeds", "failed", "missing"]
    header += ["solved", "steps to solve", "wall s to solve", "wall s", "SPS", "published"]
    # decimals per env, the same for its rows: a judge score of 2.9 and a return of -104 differ in scale
    places = {env: digits(rows["mean"]) for env, rows in table.groupby("env")}
    lines = markdown_head(header)
    lines += [markdown_row(_markdown_cells(d, keys, places[d["env"]])) for d in table.to_dict("records")]
    return "\n".join(lines)


def _latex_rows(env: Any, rows: pd.DataFrame, by: list[str]) -> list[str]:
    """One env's rows of :func:`format_latex`, the best mean (to one decimal) in bold."""
    best = round(rows["mean"].max(), 1) if rows["mean"].notna().any() else math.nan
    lines = []
    for d in rows.to_dict("records"):
        value = f"{fmt(d['mean'])} $\\pm$ {fmt(d['std'])}" if d["seeds"] else "---"
        if d["seeds"] and round(d["mean"], 1) == best:
            value = f"\\textbf{{{value}}}"
        ci = f"{fmt(d['iqm'])} [{fmt(d['iqm_low'])}, {fmt(d['iqm_high'])}]" if d["seeds"] else "---"
        seeds = str(d["seeds"]) + (f" ({d['failed']} failed)" if d["failed"] else "")
        group = [tex(str(d[k])) for k in by]
        ref = tex(d["reference"]) if d["reference"] else ""
        lines.append(" & ".join([tex(str(env)), *group, value, ci, seeds, ref]) + " \\\\")
    return lines


def format_latex(table: pd.DataFrame, by: list[str], metric: str = "return_mean") -> str:
    """booktabs LaTeX: env, group, mean ± sample std, IQM [CI], seeds; the best mean per env in bold."""
    name = "Return" if metric == "return_mean" else tex(metric.replace("_", " ").capitalize())
    cols = ["Environment", *(tex(k) for k in by), f"{name} ({MEAN_STD_TEX})", "IQM [95\\% CI]", "Seeds", "Published"]
    lines = [
        "\\begin{tabular}{" + "l" * (1 + len(by)) + "rrrl}",
        "\\toprule",
        " & ".join(cols) + " \\\\",
        "\\midrule",
    ]
    for env, rows in table.groupby("env", sort=True):
        lines += [*_latex_rows(env, rows, by), "\\midrule"]
    lines[-1] = "\\bottomrule"
    lines.append("\\end{tabular}")
    return "\n".join(lines).replace("±", "$\\pm$").replace("—", "---")
