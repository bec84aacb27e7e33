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
    variant: str = ""  # the job's own overrides besides algo, env and seed (e.g. algo.kl_coef=0.05)

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env}-s{self.seed}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides, as Hydra recorded them (``.hydra/overrides.yaml``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except Exception:  # no Hydra record (a run made without Hydra), or an unreadable one
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


_NOT_VARIANTS = ("seed", "algo", "env")


def _label_variants(records: list[RunRecord]) -> None:
    """Set each record's ``variant``: its overrides that not every job shares, besides algo,
    env and seed (a sweep over ``algo.kl_coef`` gets one row per coefficient, not one row
    that mixes them)."""
    overrides = {r.run_dir: _overrides(r.run_dir) for r in records}
    if not overrides:
        return
    common = set.intersection(*(set(o) for o in overrides.values()))
    for r in records:
        own = [o for o in overrides[r.run_dir] if o not in common]
        r.variant = " ".join(o for o in own if o.split("=", 1)[0].lstrip("+~") not in _NOT_VARIANTS)


def collect_runs(root: Path) -> list[RunRecord]:
    """Every run under ``root`` (any depth), sorted by algo, env, variant, seed."""
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
    _label_variants(records)
    return sorted(records, key=lambda r: (r.algo, r.env, r.variant, -1 if r.seed is None else r.seed))


def format_sweep_table(runs: list[RunRecord]) -> str:
    """Markdown: algo × env (× the jobs' other varying overrides, when there are any), final
    eval return mean ± std over completed seeds, seeds, failed."""
    cells: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        cells[(r.algo, r.env, r.variant)].append(r)
    variants = any(r.variant for r in runs)
    head = "| algo | env | " + ("overrides | " if variants else "")
    lines = [
        head + "final eval return (mean ± std) | seeds | failed |",
        "|---|---|" + ("---|" if variants else "") + "---|---|---|",
    ]
    for (algo, env, variant), rs in sorted(cells.items()):
        done = [r.final_return for r in rs if r.status == "completed" and r.final_return is not None]
        failed = len(rs) - len(done)
        digits = 1 if not done or max(abs(x) for x in done) >= 10 else 3  # returns of a few units (judge scores)
        value = f"{np.mean(done):.{digits}f} ± {np.std(done):.{digits}f}" if done else "— (no completed run)"
        keys = f"| {algo} | {env} | " + (f"{variant} | " if variants else "")
        lines.append(f"{keys}{value} | {len(done)} | {failed if failed else ''} |")
    if not cells:
        lines.append("| — | — | no runs found | 0 | |")
    return "\n".join(lines)
