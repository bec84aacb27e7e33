"""pandas views of what :mod:`pglab.report.runs` reads: runs, evaluation and training
curves, and the reference numbers shipped with pglab."""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from pglab.report.runs import DAMAGED, RunRecord, finite, metric_lines, read_runs


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_row(record: RunRecord) -> dict[str, Any]:
    """One row of :func:`load_runs`; an unreadable run has only ``run_dir``, ``status``, ``error``."""
    if record.summary is None:
        return {"run_dir": str(record.run_dir), "status": record.status, "error": record.error}
    data, completed = record.summary, record.completed
    row = {
        "run_dir": str(record.run_dir),
        "status": record.status,
        "error": record.error,
        "env": record.env,
        "algo": record.algo,
        "seed": record.seed,
        "env_steps": data.get("env_steps", math.nan) if completed else math.nan,
        "final": record.final.get("return_mean", math.nan) if completed else math.nan,
        "solved_at_env_steps": data.get("solved_at_env_steps"),
        "solved_at_wall_s": data.get("solved_at_wall_s"),
        "wall_s": data.get("wall_s", math.nan) if completed else math.nan,
        "sps": data.get("sps", math.nan) if completed else math.nan,
    }
    row.update({f"final.{k}": (v if completed else math.nan) for k, v in record.final.items()})
    row.update({f"cfg.{k}": v for k, v in _flatten(record.config).items()})
    return row


def load_runs(roots: Sequence[Path]) -> pd.DataFrame:
    """One row per run under ``roots``: status, seed, final metrics, timings, flat config.

    Columns: ``run_dir``, ``status``, ``error``, ``env``, ``algo``, ``seed``, ``final``
    (final eval mean return; NaN unless completed), ``final.<metric>`` for every final
    evaluation metric (``return_mean``, ``success_rate``, ``optimality``, ...),
    ``env_steps`` (trained), ``solved_at_env_steps``, ``solved_at_wall_s``, ``wall_s``, ``sps``, and ``cfg.<key>``
    for every config key. The runs are read by :func:`pglab.report.runs.read_runs` (each
    run once; a damaged folder has only ``run_dir``, ``status`` and ``error``).

    Raises:
        FileNotFoundError: A root does not exist.
        ValueError: There is no run under ``roots``, or none whose summary can be read.
    """
    return runs_frame(read_runs([Path(r) for r in roots]), roots)


def runs_frame(records: Sequence[RunRecord], roots: Sequence[Path]) -> pd.DataFrame:
    """:func:`load_runs` of records already read (``roots``: where, for the error message).

    Raises:
        ValueError: No record, or none but damaged ones.
    """
    where = ", ".join(str(r) for r in roots)
    if not records:
        raise ValueError(f"no runs (summary.json) under {where}")
    if all(r.status == DAMAGED for r in records):
        raise ValueError(f"no readable run under {where}; damaged: {'; '.join(str(r.error) for r in records)}")
    return pd.DataFrame([run_row(r) for r in records])


def load_curves(run_dir: Path) -> pd.DataFrame:
    """The evaluation lines of one run: ``env_steps``, ``wall_s``, ``return`` (mean eval return).

    A missing or non-finite value (``"nan"``, a bare ``NaN``, a line without
    ``time/wall_s``) is NaN: the plots leave such points out, and the report says how
    many (:func:`nonfinite_evals`).
    """
    rows = [
        (finite(row.get("env_steps")), finite(row.get("time/wall_s")), finite(row["eval/return_mean"]))
        for row in metric_lines(run_dir)
        if "eval/return_mean" in row
    ]
    return pd.DataFrame(rows, columns=["env_steps", "wall_s", "return"])


def nonfinite_evals(run_dirs: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per run folder with any: how many of its evaluation lines have a non-finite (or
    missing) return, and how many lack wall seconds; folders with neither are left out."""
    out = {}
    for run_dir in run_dirs:
        curve = load_curves(Path(run_dir))
        counts = (int(curve["return"].isna().sum()), int(curve["wall_s"].isna().sum()))
        if any(counts):
            out[str(run_dir)] = counts
    return out


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
        (finite(row.get("env_steps")), finite(row["train/kl"]), finite(row.get("train/episode_return")))
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
