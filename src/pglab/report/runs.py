"""The one reader of run folders: ``summary.json``, ``metrics.jsonl`` and Hydra's overrides.

Runs are found by their ``summary.json`` at any depth, so any launcher's folder layout
works; ``earlier-<n>/`` folders (runs moved aside by a rerun into the same folder) are
skipped. A job whose summary says anything but ``completed`` (failed, or still
``running`` because it was killed) is kept and counted as failed, never dropped. A
``summary.json`` that cannot be trusted (not JSON, not an object, no config, ``completed``
without a final return: :func:`pglab.report.identity.summary_problem`) gives a run with
status ``damaged`` and the reason, naming the file; a completed run whose final return is
not finite (NaN, inf) gives status ``diverged``: both count as failed, never as a number.

Each run is counted once: folders that hold the same run (the same algo, env, seed and
result-relevant config, :func:`pglab.report.identity.run_key`; a sweep rerun into the same
folder with another job order, say) are reduced to one by :func:`count_once`, and
:func:`footer_lines` says which were ignored.

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

from pglab.report.identity import finite_or_none, number, run_key, summary_problem

DAMAGED = "damaged"  # the status of a run whose summary.json cannot be trusted
DIVERGED = "diverged"  # the status of a completed run whose final return is not finite


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
    mtime: float = 0.0  # summary.json's modification time (the newest of duplicates is counted)
    duplicates: list[Path] = field(default_factory=list)  # folders of the same run, ignored for this one

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
    """The record of the run whose ``summary.json`` is ``path`` (never raises for its contents)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        mtime = path.stat().st_mtime
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        return RunRecord(path.parent, DAMAGED, f"{path}: cannot be read: {err}")
    problem = summary_problem(data)
    if problem is not None:
        return RunRecord(path.parent, DAMAGED, f"{path}: {problem}", mtime=mtime)
    config = data["config"]
    status, error = data["status"], data.get("error")
    final = number(data["final"]["return_mean"]) if status == "completed" else None
    if final is not None and finite_or_none(final) is None:
        status, error = DIVERGED, f"the final return_mean is {final} (not finite)"
    return RunRecord(
        run_dir=path.parent,
        status=status,
        error=error if isinstance(error, str) or error is None else str(error),
        algo=data.get("algo") or _name(config, "algo"),
        env=data.get("env") or _name(config, "env"),
        seed=data.get("seed", config.get("seed")),
        summary=data,
        config=config,
        mtime=mtime,
    )


def _name(config: dict[str, Any], group: str) -> Any:
    """``config[group]["name"]``, or ``None`` where the config lacks it."""
    node = config.get(group)
    return node.get("name") if isinstance(node, dict) else None


def summary_paths(root: Path) -> Iterator[Path]:
    """Every ``summary.json`` under ``root`` (any depth, sorted), outside ``earlier-*`` folders."""
    root = Path(root)
    for path in sorted(root.rglob("summary.json")):
        if not any(part.startswith("earlier-") for part in path.relative_to(root).parts):
            yield path


def read_runs(roots: Sequence[Path]) -> list[RunRecord]:
    """Every run under ``roots``, root by root, in path order, each counted once (:func:`count_once`).

    Raises:
        FileNotFoundError: A root does not exist.
    """
    records = []
    for root in roots:
        if not Path(root).exists():
            raise FileNotFoundError(f"{root}: no such folder")
        records += [read_summary(path) for path in summary_paths(root)]
    return count_once(records)


def collect_runs(root: Path) -> list[RunRecord]:
    """Every run under ``root`` (any depth; none if it does not exist), each counted once
    (:func:`count_once`), with its :func:`label_variants` variant, sorted by algo, env,
    variant, seed."""
    records = count_once([read_summary(path) for path in summary_paths(root)] if Path(root).exists() else [])
    label_variants(records)
    return sorted(
        records, key=lambda r: (str(r.algo or "?"), str(r.env or "?"), r.variant, -1 if r.seed is None else r.seed)
    )


def count_once(records: list[RunRecord]) -> list[RunRecord]:
    """``records`` with one record per run (the same :func:`pglab.report.identity.run_key`:
    algo, env, seed and result-relevant config), in their order.

    Of folders that hold the same run the completed one counts (among completed ones, the
    newest ``summary.json``; among unfinished ones too); the others are listed in its
    ``duplicates``. Damaged records have no config to compare, so each counts on its own.
    """
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.status == DAMAGED:
            continue
        key = run_key(r.config)
        held = best.get(key)
        if held is None or (r.completed, r.mtime) > (held.completed, held.mtime):
            best[key] = r
    kept = {id(r) for r in best.values()}
    for r in records:
        if r.status != DAMAGED and id(r) not in kept:
            best[run_key(r.config)].duplicates.append(r.run_dir)
    return [r for r in records if r.status == DAMAGED or id(r) in kept]


DUPLICATES_NOTE = "{n} duplicate run folder{s} ignored (same algo, env, config and seed): {paths}"


def footer_lines(records: list[RunRecord]) -> list[str]:
    """What a table of ``records`` leaves out, one line each: every damaged run folder
    (naming its file and why), and the duplicate folders :func:`count_once` ignored."""
    lines = [f"damaged run folder: {r.error}" for r in records if r.status == DAMAGED]
    ignored = sorted(str(p) for r in records for p in r.duplicates)
    if ignored:
        plural = "" if len(ignored) == 1 else "s"
        lines.append(DUPLICATES_NOTE.format(n=len(ignored), s=plural, paths=", ".join(ignored)))
    return lines


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
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def finite(value: Any) -> float:
    """A logged number as a float; NaN for a missing, non-numeric or non-finite one.

    ``metrics.jsonl`` holds non-finite values as text (``"nan"``, ``"inf"``), see
    :mod:`pglab.run_logger` (a hand-edited file may hold a bare ``NaN``, which Python's
    json reads too); they would swamp a mean over seeds, so they count as missing.
    """
    x = finite_or_none(value)
    return math.nan if x is None else x
