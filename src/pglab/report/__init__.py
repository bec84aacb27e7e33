"""Reports: the tables and plots that go in a paper, from any set of run or sweep folders.

    python scripts/report.py SWEEP_DIR [SWEEP_DIR ...] [--by algo,algo.baseline] [--out DIR]
    python -m pglab.report SWEEP_DIR ...

Every run under the folders (any depth, any launcher; ``earlier-*`` runs moved aside by a
rerun are left out) is read from its files — ``summary.json`` and ``metrics.jsonl`` —
never from live objects, by one reader (:mod:`pglab.report.runs`) that the end-of-sweep
table (:mod:`pglab.report.sweep_table`, ``sweep_table.md``) and the report share. Every
spread is the sample standard deviation (ddof 1) over seeds, "—" for a single seed
(:func:`pglab.report.stats.mean_std`), and every table's header says so. Runs are grouped
by env and by the ``--by`` config keys (default ``auto``: ``algo`` plus every config key
that differs between runs of the same env and algo, such as a swept learning rate, so that
a row never mixes two settings), and the report holds, following Agarwal et al. (2021),
"Deep RL at the Edge of the Statistical Precipice":

* a table per env and group of the final evaluation return: mean ± sample std (ddof 1),
  the interquartile mean (IQM: the mean of the middle 50 % of runs, ``scipy.stats.trim_mean``
  with 25 % cut from each end) with a 95 % percentile-bootstrap confidence interval
  (``scipy.stats.bootstrap``, 10,000 resamples, seeded), completed seeds, failed runs
  and missing seeds (seeds that other groups of the same env have); the env steps and
  wall seconds until a run met its env's solved criterion (``env.solved``; mean over the runs that did, and
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

Modules: ``runs`` (reading run folders), ``frames`` (them as pandas tables), ``stats``,
``groups`` (the ``--by`` keys), ``tables`` (the main table), ``kl`` (reward vs KL),
``plots``, ``fmt`` (numbers as text), ``write`` (:func:`write_report`), ``sweep_table``,
``command`` (:func:`main`). The names below are loaded on first use, so that importing
:mod:`pglab.report.sweep_table` (at the end of every sweep) loads no pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "runs": ("RunRecord", "collect_runs", "metric_lines", "read_runs"),
    "frames": ("load_curves", "load_reference", "load_runs", "load_train_curves"),
    "stats": ("CONFIDENCE", "N_RESAMPLES", "SEED", "iqm", "iqm_ci", "mean_std", "stratified_iqm_ci"),
    "groups": ("auto_by", "group_label", "with_group_keys"),
    "tables": ("build_table", "format_latex", "format_markdown"),
    "plots": ("normalised_scores", "plot_aggregates", "plot_curves"),
    "kl": (
        "format_reward_kl_latex",
        "format_reward_kl_markdown",
        "plot_reward_vs_kl",
        "reward_kl_table",
        "reward_kl_trajectories",
    ),
    "sweep_table": ("format_sweep_table",),
    "write": ("Report", "write_report"),
    "command": ("main",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "CONFIDENCE",
    "N_RESAMPLES",
    "SEED",
    "Report",
    "RunRecord",
    "auto_by",
    "build_table",
    "collect_runs",
    "format_latex",
    "format_markdown",
    "format_reward_kl_latex",
    "format_reward_kl_markdown",
    "format_sweep_table",
    "group_label",
    "iqm",
    "iqm_ci",
    "load_curves",
    "load_reference",
    "load_runs",
    "load_train_curves",
    "main",
    "mean_std",
    "metric_lines",
    "normalised_scores",
    "plot_aggregates",
    "plot_curves",
    "plot_reward_vs_kl",
    "read_runs",
    "reward_kl_table",
    "reward_kl_trajectories",
    "stratified_iqm_ci",
    "with_group_keys",
    "write_report",
]

if TYPE_CHECKING:
    from pglab.report.command import main
    from pglab.report.frames import load_curves, load_reference, load_runs, load_train_curves
    from pglab.report.groups import auto_by, group_label, with_group_keys
    from pglab.report.kl import (
        format_reward_kl_latex,
        format_reward_kl_markdown,
        plot_reward_vs_kl,
        reward_kl_table,
        reward_kl_trajectories,
    )
    from pglab.report.plots import normalised_scores, plot_aggregates, plot_curves
    from pglab.report.runs import RunRecord, collect_runs, metric_lines, read_runs
    from pglab.report.stats import CONFIDENCE, N_RESAMPLES, SEED, iqm, iqm_ci, mean_std, stratified_iqm_ci
    from pglab.report.sweep_table import format_sweep_table
    from pglab.report.tables import build_table, format_latex, format_markdown
    from pglab.report.write import Report, write_report


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
