"""Hydra callbacks: what happens around a multirun.

At the end of a sweep :class:`SweepCallback` reads every job's ``summary.json`` in the
sweep folder (through :mod:`pglab.report.runs`, the reader the report uses), prints and
saves a compact table (:mod:`pglab.report.sweep_table`; algo × env: final eval return
mean ± sample std over seeds, number of seeds, failed jobs), prints one line per failed
job and the one command that syncs the offline W&B runs, writes the sweep's report
(``pglab.report``: tables, plots and ``report.md`` in ``<sweep dir>/report``), and exits
non-zero when any job failed.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pglab.report.sweep_table import collect_runs, format_sweep_table  # no pandas or matplotlib
from pglab.run_logger import offline_wandb_dirs


class SweepCallback(Callback):
    """Reports a finished multirun; see the module docstring."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = collect_runs(sweep_dir)
        table = format_sweep_table(runs)
        (sweep_dir / "sweep_table.md").write_text(table + "\n")
        print(f"\nSweep results ({sweep_dir}):\n{table}")
        failed = [r for r in runs if not r.completed]
        for r in failed:
            print(f"FAILED {r.name}: {r.reason}  [{r.run_dir}]", file=sys.stderr)
        try:  # the report (tables, plots, report.md) goes into <sweep dir>/report
            from pglab.report.write import write_report

            write_report([sweep_dir], sweep_dir / "report", quiet=True)
            print(f"Report: {sweep_dir / 'report' / 'report.md'}")
        except Exception as err:  # a report problem never costs the sweep's results
            print(f"pglab: the sweep report could not be written: {type(err).__name__}: {err}", file=sys.stderr)
        offline = offline_wandb_dirs(sweep_dir)
        if offline:
            print(f"\n{len(offline)} offline W&B run(s). Sync them with:\n  {sync_command(sweep_dir, offline)}")
        if failed:
            print(f"pglab: {len(failed)} of {len(runs)} jobs failed", file=sys.stderr)
            sys.exit(1)


def sync_command(sweep_dir: Path, offline: list[Path]) -> str:
    """One command, for plain sh (no ``**``), that uploads the ``offline`` W&B run folders
    found under ``sweep_dir``: a glob over the job folders when each run is in
    ``<sweep>/<job>/wandb/``, else (jobs in nested folders) a ``find`` over the sweep."""
    root = shlex.quote(str(sweep_dir))
    if all(p.parent.parent.parent == sweep_dir for p in offline):
        return f"wandb sync {root}/*/wandb/offline-run-*"
    return f"find {root} -type d -path '*/wandb/offline-run-*' -prune -exec wandb sync {{}} +"
