"""Reading run folders back: the compact end-of-sweep table.

Runs are found by their ``summary.json`` at any depth, so the table works for any
launcher's folder layout (``earlier-<n>/`` folders of replaced runs are skipped). A job
whose summary says anything but ``completed`` (failed, or still ``running`` because it
was killed) is counted as failed, never dropped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class RunRecord:
    """What the sweep table needs from one run folder."""

    run_dir: Path
    algo: str
    env: str
    seed: int | None
    status: str
    final_return: float | None
    error: str | None

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env}-s{self.seed}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect_runs(root: Path) -> list[RunRecord]:
    """Every run under ``root`` (any depth), sorted by algo, env, seed."""
    records = []
    for path in sorted(Path(root).rglob("summary.json")):
        if any(part.startswith("earlier-") for part in path.relative_to(root).parts):
            continue  # an earlier run moved aside by a rerun into the same folder
        data = _read(path)
        if data is None:
            records.append(RunRecord(path.parent, "?", "?", None, "unreadable", None, f"cannot read {path}"))
            continue
        config = data.get("config") or {}
        algo = data.get("algo") or (config.get("algo") or {}).get("name", "?")
        env = data.get("env") or (config.get("env") or {}).get("name", "?")
        seed = data.get("seed", config.get("seed"))
        final = (data.get("final") or {}).get("return_mean")
        status = data.get("status", "unknown")
        error = data.get("error") or (None if status == "completed" else f"status {status}")
        records.append(RunRecord(path.parent, str(algo), str(env), seed, status, final, error))
    return sorted(records, key=lambda r: (r.algo, r.env, -1 if r.seed is None else r.seed))


def format_sweep_table(runs: list[RunRecord]) -> str:
    """Markdown: algo × env, final eval return mean ± std over completed seeds, seeds, failed."""
    cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        cells[(r.algo, r.env)].append(r)
    lines = [
        "| algo | env | final eval return (mean ± std) | seeds | failed |",
        "|---|---|---|---|---|",
    ]
    for (algo, env), rs in sorted(cells.items()):
        done = [r.final_return for r in rs if r.status == "completed" and r.final_return is not None]
        failed = len(rs) - len(done)
        value = f"{np.mean(done):.1f} ± {np.std(done):.1f}" if done else "— (no completed run)"
        lines.append(f"| {algo} | {env} | {value} | {len(done)} | {failed if failed else ''} |")
    if not cells:
        lines.append("| — | — | no runs found | 0 | |")
    return "\n".join(lines)


def offline_wandb_dirs(root: Path) -> list[Path]:
    """Offline W&B run folders under ``root`` (what ``wandb sync`` uploads)."""
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())
