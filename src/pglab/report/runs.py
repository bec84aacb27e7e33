"""The one reader of run folders: ``summary.json``, ``metrics.jsonl`` and Hydra's overrides.

Runs are found by their ``summary.json`` at any depth, so any launcher's folder layout
works; ``earlier-<n>/`` folders (runs moved aside by a rerun into the same folder) are
skipped. A job whose summary says anything but ``completed`` (failed, or still
``running`` because it was killed) is kept and counted as failed, never dropped; an
unreadable ``summary.json`` gives a run with status ``unreadable``.

Plain Python and the standard library only (``yaml`` on demand): the end-of-sweep table
(:mod:`pglab.report.sweep_table`) reads runs through here without loading pandas; the
report's tables (:mod:`pglab.report.frames`) are built from the same records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One run folder as its ``summary.json`` describes it.

    ``algo``, ``env`` and ``seed`` come from the summary's own keys, else from its
    ``config``; ``summary`` is the whole file (``None`` when it cannot be read, with the
    reason in ``error``); ``variant`` is set by :func:`label_variants`.
    """

    run_dir: Path
    status: str
    error: str | None
    algo: Any = None
    env: Any = None
    seed: int | None = None
    summary: dict[str, Any] | None = None
    variant: str = ""  # the job's own overrides besides algo, env and seed (e.g. algo.kl_coef=0.05)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def final(self) -> dict[str, Any]:
        """The final evaluation's metrics (``return_mean``, ``success_rate``, ...); empty if none."""
        return (self.summary or {}).get("final") or {}

    @property
    def final_return(self) -> float | None:
        """The final evaluation's mean return of a completed run; ``None`` otherwise."""
        return self.final.get("return_mean") if self.completed else None

    @property
    def name(self) -> str:
        return f"{self.algo or '?'}-{self.env or '?'}-s{self.seed}"

    @property
    def reason(self) -> str | None:
        """Why the run is not completed: its error, else its status; ``None`` when completed."""
        return self.error or (None if self.completed else f"status {self.status}")


def read_summary(path: Path) -> RunRecord:
    """The record of the run whose ``summary.json`` is ``path``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        return RunRecord(path.parent, "unreadable", f"cannot read {path}: {err}")
    if not isinstance(data, dict):
        return RunRecord(path.parent, "unreadable", f"cannot read {path}: not a JSON object")
    config = data.get("config") or {}
    return RunRecord(
        run_dir=path.parent,
        status=data.get("status", "unknown"),
        error=data.get("error"),
        algo=data.get("algo") or (config.get("algo") or {}).get("name"),
        env=data.get("env") or (config.get("env") or {}).get("name"),
        seed=data.get("seed", config.get("seed")),
        summary=data,
        config=config,
    )


def summary_paths(root: Path) -> Iterator[Path]:
    """Every ``summary.json`` under ``root`` (any depth, sorted), outside ``earlier-*`` folders."""
    root = Path(root)
    for path in sorted(root.rglob("summary.json")):
        if not any(part.startswith("earlier-") for part in path.relative_to(root).parts):
            yield path


def read_runs(roots: Sequence[Path]) -> list[RunRecord]:
    """Every run under ``roots``, root by root, in path order.

    Raises:
        FileNotFoundError: A root does not exist.
    """
    records = []
    for root in roots:
        if not Path(root).exists():
            raise FileNotFoundError(f"{root}: no such folder")
        records += [read_summary(path) for path in summary_paths(root)]
    return records


def collect_runs(root: Path) -> list[RunRecord]:
    """Every run under ``root`` (any depth; none if it does not exist), with its
    :func:`label_variants` variant, sorted by algo, env, variant, seed."""
    records = [read_summary(path) for path in summary_paths(root)] if Path(root).exists() else []
    label_variants(records)
    return sorted(
        records, key=lambda r: (str(r.algo or "?"), str(r.env or "?"), r.variant, -1 if r.seed is None else r.seed)
    )


def hydra_overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides, as Hydra recorded them (``.hydra/overrides.yaml``)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except Exception:  # no Hydra record (a run made without Hydra), or an unreadable one
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


_NOT_VARIANTS = ("seed", "algo", "env")


def label_variants(records: list[RunRecord]) -> None:
    """Set each record's ``variant``: its overrides that not every job shares, besides algo,
    env and seed (a sweep over ``algo.kl_coef`` gets one row per coefficient, not one row
    that mixes them)."""
    overrides = {r.run_dir: hydra_overrides(r.run_dir) for r in records}
    if not overrides:
        return
    common = set.intersection(*(set(o) for o in overrides.values()))
    for r in records:
        own = [o for o in overrides[r.run_dir] if o not in common]
        r.variant = " ".join(o for o in own if o.split("=", 1)[0].lstrip("+~") not in _NOT_VARIANTS)


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


def finite(value: Any) -> float:
    """A logged number as a float; NaN for a missing, non-numeric or non-finite one.

    ``metrics.jsonl`` holds non-finite values as text (``"nan"``, ``"inf"``), see
    :mod:`pglab.run_logger`; they would swamp a mean over seeds, so they count as missing.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
