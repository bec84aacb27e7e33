"""Condense a finished sweep into a result set the docs can be generated from.

``docs/results/<name>/runs/<job>/`` gets each run's ``summary.json``, the lines of its
``metrics.jsonl`` that tables and plots read (evaluations, and the training lines that
carry ``train/kl``) and its ``samples.jsonl`` where it wrote one; W&B files,
checkpoints, policies and Hydra's folders are left behind. The runs are read by the
report's reader (:func:`pglab.report.runs.read_runs`: each run once, damaged folders left
out), so a result set holds what the report counted.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from pglab.docgen.provenance import FILE, from_machine, write
from pglab.job_dir import TRIALS_CSV
from pglab.machine import machine_info
from pglab.report.runs import DAMAGED, RunRecord, metric_lines, read_runs
from pglab.run_dir import SAMPLES

RUNS = "runs"


def _kept(line: dict[str, Any]) -> bool:
    """A metrics line the docs read: an evaluation, or a training line with ``train/kl``."""
    return "train/kl" in line or any(k.startswith("eval/") for k in line)


def export_run(run_dir: Path, summary: dict[str, Any], dest: Path) -> None:
    """One run folder's ``summary.json`` (its ``run_dir`` made relative) and kept metrics lines."""
    dest.mkdir(parents=True)
    summary = dict(summary, run_dir=f"{RUNS}/{dest.name}")
    (dest / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [json.dumps(line) for line in metric_lines(run_dir) if _kept(line)]
    (dest / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))
    if (run_dir / SAMPLES).exists():  # the evaluations' episodes as text (a language model's replies)
        shutil.copyfile(run_dir / SAMPLES, dest / SAMPLES)


def export_sweep(sweep_dirs: list[Path], dest: Path, command: str, notes: str = "") -> int:
    """Replace the result set ``dest`` by the runs under ``sweep_dirs``; returns how many.

    Raises:
        ValueError: no completed run under ``sweep_dirs``.
    """
    records = [r for r in read_runs(sweep_dirs) if r.status != DAMAGED and r.summary is not None]
    if not any(r.completed for r in records):
        raise ValueError(f"no completed run under {', '.join(map(str, sweep_dirs))}")
    fresh = dest.with_name(f".{dest.name}.export")  # written aside: a failed export leaves the old set
    shutil.rmtree(fresh, ignore_errors=True)
    for record in records:
        assert record.summary is not None
        export_run(record.run_dir, record.summary, fresh / RUNS / record.run_dir.name)
    newest = max(r.mtime for r in records)
    write(fresh, from_machine(command, dt.date.fromtimestamp(newest).isoformat(), measured_on(records), notes))
    dest.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest / RUNS, ignore_errors=True)
    (fresh / RUNS).rename(dest / RUNS)
    (fresh / FILE).replace(dest / FILE)
    fresh.rmdir()
    return len(records)


def export_trials(sweep_dir: Path, dest: Path, command: str, notes: str = "") -> int:
    """Replace the result set ``dest`` by a seed-averaged Optuna study's ``trials.csv`` (each
    trial's overrides and per-seed final returns), not its runs; returns the trials.

    Raises:
        ValueError: ``sweep_dir`` holds no ``trials.csv``.
    """
    source = sweep_dir / TRIALS_CSV
    if not source.exists():
        raise ValueError(f"{source}: no such file (a hydra/sweeper=optuna_seeds sweep writes it)")
    records = [r for r in read_runs([sweep_dir]) if r.status != DAMAGED and r.summary is not None]
    newest = max([source.stat().st_mtime, *(r.mtime for r in records)])
    dest.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest / RUNS, ignore_errors=True)  # the set is the study now, not runs
    shutil.copyfile(source, dest / TRIALS_CSV)
    write(dest, from_machine(command, dt.date.fromtimestamp(newest).isoformat(), measured_on(records), notes))
    with source.open(newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1  # rows, the header apart (csv: quoted fields may hold newlines)


def measured_on(records: list[RunRecord]) -> dict[str, str]:
    """The machine the runs name in their summaries (``machine``); runs written before
    summaries named it count as this machine's. Runs from several machines name them all."""
    here = machine_info()
    named = [(r.summary or {}).get("machine") or here for r in records]
    return {key: " / ".join(dict.fromkeys(m[key] for m in named)) for key in here}
