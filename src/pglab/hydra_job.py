"""The Hydra task function behind ``run.py``: one job of a single run or of a sweep.

A single run that does not succeed prints one line on stderr and exits with the code
:mod:`pglab.faults` gives its cause (2 a config error, 1 a failed run, 3 an unwritable
output folder, 4 a folder in use, 130/143 a signal); a traceback goes to ``summary.json``
and ``run.log``, never to the terminal. In a multirun a failed job never stops the
others: it is recorded in its ``summary.json``, returns NaN, and the sweep callback
(:mod:`pglab.callbacks`) reports every failure and exits non-zero once all jobs have
ended. A signal stops the whole sweep (each job keeps its checkpoint; the same command
resumes it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pglab.algos.common import NonFiniteError
from pglab.config import ConfigError, validate
from pglab.experiment import run
from pglab.faults import EXIT_BUSY, EXIT_CONFIG, EXIT_FAILED, EXIT_OUTPUT, output_error
from pglab.folder_lock import FolderBusy
from pglab.job_dir import register_resolver
from pglab.numbers import score
from pglab.run_dir import SUMMARY, RunFolder, Summary
from pglab.run_logger import offline_wandb_dirs
from pglab.signals import Interrupted, StopRequest, signal_name, stop_on_signals, stop_when_parent_dies

log = logging.getLogger("pglab")

LAUNCHER_PID = "PGLAB_LAUNCHER_PID"  # set by run.py: a joblib worker's jobs stop if it dies

register_resolver()  # hydra.sweep.subdir names a job's folder with it, in whichever process runs the job


def main(cfg: DictConfig) -> float:
    """Validate the job's config, run it, and turn its outcome into an exit code or NaN."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    group = Path(hc.sweep.dir).name if multirun else run_dir.name
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    try:
        conf = validate(cfg)
    except ConfigError as err:
        RunFolder(run_dir, config).write_summary(Summary(status="failed", config=config, error=str(err)))
        return _failed(f"config error: {err}", EXIT_CONFIG, multirun)
    worker = _in_sweep_worker(multirun)
    with stop_on_signals() as stop, stop_when_parent_dies(stop) if worker else contextlib.nullcontext():
        try:
            final = run(conf, run_dir, config=config, group=group, progress_bar=_show_bar(multirun), stop=stop)
        except (Interrupted, KeyboardInterrupt) as err:
            interrupted = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        except Exception as err:
            return failed_job(err, run_dir, config, multirun)
        else:
            interrupted = None
    if interrupted is not None:  # outside the handlers: submitit's own take over for its requeue
        _interrupted(interrupted, stop, run_dir, worker)
    if not multirun:
        print("\n".join(end_of_run_lines(final, conf.eval.final_episodes, run_dir)))
    return final


def failed_job(err: Exception, run_dir: Path, config: dict, multirun: bool) -> float:
    """A job that raised ``err`` (not a signal): its one line, then NaN in a multirun (the
    exit code :mod:`pglab.faults` gives the cause otherwise)."""
    if isinstance(err, FolderBusy):
        return _failed(str(err), EXIT_BUSY, multirun)
    if isinstance(err, ConfigError):  # found where the job runs (a SLURM node's memory, cores, device)
        if not (run_dir / SUMMARY).exists():  # the sweep's table must see the refused job
            RunFolder(run_dir, config).write_summary(Summary(status="failed", config=config, error=str(err)))
        return _failed(f"config error: {err}", EXIT_CONFIG, multirun)
    if isinstance(err, NonFiniteError):
        return _failed(f"run failed: {err}", EXIT_FAILED, multirun)
    return _crashed(err, run_dir, multirun)


def end_of_run_lines(final: float, episodes: int, run_dir: Path) -> list[str]:
    """What a single run prints at its end: the final return (with the precision its scale
    needs, :func:`pglab.numbers.score`) and a ``wandb sync`` command per offline W&B run,
    quoted so that it can be pasted into any shell."""
    lines = [f"final eval return ({episodes} episodes): {score(final)}  [{run_dir}]"]
    for path in offline_wandb_dirs(run_dir):
        lines.append(f"W&B run saved offline; sync it with:  wandb sync {shlex.quote(str(path))}")
    return lines


def _show_bar(multirun: bool) -> bool:
    return sys.stderr.isatty() and not multirun


def _in_sweep_worker(multirun: bool) -> bool:
    """True in a local sweep's worker process (joblib): a child of the ``run.py`` launcher."""
    launcher = os.environ.get(LAUNCHER_PID)
    return multirun and launcher is not None and launcher != str(os.getpid()) and launcher == str(os.getppid())


def _crashed(err: Exception, run_dir: Path, multirun: bool) -> float:
    """An error while running: its traceback to ``run.log`` (and summary.json), one line to the terminal."""
    out = output_error(err, run_dir)
    if out is not None:
        return _failed(f"output error: {out}; rerun the same command to resume", EXIT_OUTPUT, multirun)
    _traceback_to_log_file(f"{run_dir.name}: the run failed", err)
    where = run_dir / SUMMARY
    message = f"run failed: {type(err).__name__}: {err}  (traceback in {where} and run.log)"
    return _failed(message, EXIT_FAILED, multirun)


def _traceback_to_log_file(message: str, err: BaseException) -> None:
    """Log ``err`` with its traceback to the log files only (Hydra's ``run.log``), not the console."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), (type(err), err, err.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _interrupted(err: Interrupted, stop: StopRequest, run_dir: Path, worker: bool) -> NoReturn:
    """A signal stopped the run: one line, a launcher's requeue if it asked, exit 128 + signal.

    A multirun stops too: its other jobs would be stopped by the same signal. In a joblib
    worker (joblib; its launcher is stopping too) the process ends at once: no further job may start.
    """
    then = "the launcher requeues the job, which resumes" if stop.requeue else "rerun the same command to resume"
    line = f"pglab: interrupted by {signal_name(err.signum)}: {run_dir} keeps its checkpoint; {then}"
    print(line, file=sys.stderr)
    log.info(line)
    if stop.requeue is not None:
        stop.requeue(err.signum, None)  # submitit: requeue the job, then exit
    if worker:  # no further job may start in this process
        logging.shutdown()
        os._exit(err.exit_code)
    sys.exit(err.exit_code)


def _failed(message: str, code: int, multirun: bool) -> float:
    """One line: logged in a multirun (the job returns NaN), printed and exit ``code`` otherwise."""
    if multirun:
        log.error("pglab: %s", message)
        return math.nan
    print(f"pglab: {message}", file=sys.stderr)
    sys.exit(code)
