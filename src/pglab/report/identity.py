"""What makes two run folders the same run, and what a ``summary.json`` must hold to count.

Shared by the run side (:mod:`pglab.run_dir`: skip, resume, ``earlier-<n>/``) and the
report side (:mod:`pglab.report.runs`: the sweep table and the report), so that "the same
config" and "a damaged summary" mean one thing everywhere. Standard library only: the
report never loads torch, and the run never loads pandas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Keys that do not change what a run computes: where it runs, how it reports, how often it
# checkpoints, which tuned file set the values. A rerun that changes only these (a longer
# SLURM time limit after a time-out, W&B settings, another launcher) still skips or resumes,
# and the report counts two folders that differ only in these as one run.
VIDEO_DIR = "videos"  # a run folder's evaluation videos (pglab.video writes, the report links them)
VIDEO_SUFFIXES = (".mp4", ".gif")


def training_video_steps(path: Path) -> int | None:
    """The env step of a training video, ``videos/<env_steps>.mp4`` (or ``.gif``); None for
    any other file there (pglab-eval's ``eval_<seed>.mp4``, an unfinished ``.part``)."""
    if path.suffix not in VIDEO_SUFFIXES or not path.stem.isdigit():
        return None
    return int(path.stem)


NOT_RESULT_KEYS = (
    ("hardware", "cluster"),
    ("hardware", "num_threads"),
    ("logger",),
    ("progress_every_s",),
    ("checkpoint_every_steps",),
    ("tuned_file",),
    ("eval", "video"),  # videos are recorded on an env of their own: the metrics are the same
    ("eval", "video_episodes"),
    ("eval", "video_every"),
)


def normalised(config: Any) -> Any:
    """A config as JSON would give it back, so configs from files and from Hydra compare equal."""
    return json.loads(json.dumps(config))


def result_config(config: Any) -> Any:
    """The part of a run's config that decides its results (what skip and resume compare)."""
    out = normalised(config)
    for path in NOT_RESULT_KEYS:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def run_key(config: dict[str, Any]) -> str:
    """One text per run that computes the same thing: algo, env, seed and every other
    result-relevant key (two folders with the same key hold the same run)."""
    return json.dumps(result_config(config), sort_keys=True)


def number(value: Any) -> float | None:
    """A logged number as a float (``"nan"``/``"inf"`` text included, as pglab writes
    non-finite values); ``None`` for anything that is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(value)
    return None


def summary_problem(data: Any) -> str | None:
    """Why a parsed ``summary.json`` cannot be trusted (``None``: it can).

    A summary must be a JSON object with a ``status`` text (any: ``running``, ``failed``,
    ``interrupted``, ... count as not completed) and a ``config`` object; a ``completed``
    one must also hold its ``final`` evaluation with a numeric ``return_mean`` (possibly
    non-finite: that run diverged, it is not damaged).
    """
    if not isinstance(data, dict):
        return f"not a JSON object (a {type(data).__name__})"
    if not isinstance(data.get("status"), str) or not data["status"]:
        return f"no status (it is {data.get('status')!r})"
    if not isinstance(data.get("config"), dict):
        return "no config object"
    if data["status"] != "completed":
        return None
    final = data.get("final")
    if not isinstance(final, dict):
        return "status completed but no final evaluation"
    if number(final.get("return_mean")) is None:
        return f"status completed but its final return_mean is {final.get('return_mean')!r}"
    return None


def finite_or_none(value: Any) -> float | None:
    """A logged number as a finite float; ``None`` for a missing, non-numeric or non-finite one."""
    x = number(value)
    return x if x is not None and math.isfinite(x) else None
