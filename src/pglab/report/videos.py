"""The report's "Videos" section: where runs recorded evaluation videos (``eval.video``),
the last video of the best and of the median run of each env and group.

Best: the highest final evaluation return; median: the run at the middle of the sorted
returns (the lower middle for an even count), so the reader sees a typical run next to
the luckiest. The last video is the one of the highest env step (the final evaluation's).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pandas as pd

from pglab.report.identity import VIDEO_DIR, training_video_steps


def last_video(run_dir: Path) -> Path | None:
    """The training video of the highest env step in ``run_dir/videos``, None if none."""
    found = [(steps, p) for p in (run_dir / VIDEO_DIR).glob("*") if (steps := training_video_steps(p)) is not None]
    return max(found, default=(None, None))[1]


def video_lines(keyed: pd.DataFrame, group_cols: list[str], out: Path) -> list[str]:
    """Markdown for ``report.md`` in ``out`` (links relative to it); [] when no run has videos."""
    completed = keyed[keyed["status"] == "completed"]
    rows = []
    for key, group in completed.groupby(["env", *group_cols], sort=True):
        ranked = group.sort_values("final", ascending=False, kind="stable")
        picks = {"best": ranked.iloc[0], "median": ranked.iloc[len(ranked) // 2]}
        if len(ranked) == 1:
            picks = {"the run": ranked.iloc[0]}
        links = []
        for label, run in picks.items():
            video = last_video(Path(run["run_dir"]))
            if video is not None:
                rel = urllib.parse.quote(os.path.relpath(video, out))
                links.append(f"[{label}: seed {run['seed']}, return {run['final']:.4g}]({rel})")
        if links:
            keys = key if isinstance(key, tuple) else (key,)
            rows.append(f"| {' | '.join(str(k) for k in keys)} | {' · '.join(links)} |")
    if not rows:
        return []
    columns = ["env", *(c.removeprefix("grp.") for c in group_cols), "last video"]
    return ["## Videos", "", f"| {' | '.join(columns)} |", "|" + "---|" * len(columns), *rows, ""]
