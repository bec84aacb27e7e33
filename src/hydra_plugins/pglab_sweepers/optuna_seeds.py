"""``hydra/sweeper=optuna_seeds``: hydra-optuna-sweeper's search, each trial scored on several seeds.

A setting tuned on one seed is tuned to that seed's luck. Here every trial runs once per
seed in ``hydra.sweeper.seeds`` (each its own job and run folder, launched together by the
configured launcher, so ``hydra/launcher=joblib`` runs them in parallel), and Optuna is told
the mean of the seeds' returns (the final evaluation return ``run.py`` returns). A seed
whose job failed returns NaN, so the trial's mean is NaN and Optuna records the trial as
failed. Everything else (sampler, ``params``, ``n_trials``, ``n_jobs``: trials per batch,
``optimization_results.yaml``) is hydra-optuna-sweeper's; ``<sweep dir>/trials.csv`` adds
each trial's per-seed returns, the evidence behind the best parameters.
"""

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig

from pglab.job_dir import TRIALS_CSV

log = logging.getLogger(__name__)

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules, where
# dataclasses cannot resolve string annotations (and OmegaConf needs the real types).
SEED_KEY = "seed"


@dataclass
class TrialResult:
    """One trial: its overrides (without the seed) and each seed's return, in ``seeds`` order."""

    overrides: tuple[str, ...]
    returns: list[float]

    @property
    def mean(self) -> float:
        """The objective: NaN when any seed failed (``run.py`` returns NaN for a failed job)."""
        return math.fsum(self.returns) / len(self.returns)


class SeedAveragingLauncher(Launcher):
    """Launches each trial once per seed through ``inner`` and returns one job per trial,
    whose return value is the mean over the seeds.

    The inner jobs are numbered by this launcher (``hydra.job.num``): the sweeper counts
    trials, and each trial is ``len(seeds)`` jobs.
    """

    def __init__(self, inner: Launcher, seeds: Sequence[int]) -> None:
        self.inner = inner
        self.seeds = list(seeds)
        self.results: list[TrialResult] = []
        self.next_job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.inner.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        per_seed = [[*trial, f"{SEED_KEY}={s}"] for trial in job_overrides for s in self.seeds]
        returns = self.inner.launch(per_seed, initial_job_idx=self.next_job_idx)
        self.next_job_idx += len(per_seed)
        if len(returns) != len(per_seed):
            raise RuntimeError(f"the launcher returned {len(returns)} jobs for {len(per_seed)} (trial x seed) jobs")
        n = len(self.seeds)
        return [self._trial(trial, returns[i * n : (i + 1) * n]) for i, trial in enumerate(job_overrides)]

    def _trial(self, trial: Sequence[str], jobs: Sequence[JobReturn]) -> JobReturn:
        """One trial's job: the seeds' mean, or the first seed's failure (the job raised:
        hydra-optuna-sweeper's ``max_failure_rate`` then decides whether the sweep goes on)."""
        failed = [j for j in jobs if j.status != JobStatus.COMPLETED]
        result = TrialResult(tuple(trial), [math.nan if j in failed else _value(j) for j in jobs])
        self.results.append(result)
        log.info("trial %s: %s -> mean %.4g", " ".join(trial), result.returns, result.mean)
        if failed:
            log.error("trial %s: a seed's job raised: %r", " ".join(trial), failed[0]._return_value)
            return JobReturn(overrides=list(trial), _return_value=failed[0]._return_value, status=JobStatus.FAILED)
        return JobReturn(overrides=list(trial), _return_value=result.mean, status=JobStatus.COMPLETED)


def _value(job: JobReturn) -> float:
    """A completed seed's return (NaN from a run that pglab recorded as failed)."""
    try:
        return float(job.return_value)
    except (TypeError, ValueError):
        return math.nan


def write_trials(path: Path, seeds: Sequence[int], results: Sequence[TrialResult]) -> None:
    """``trials.csv``: one row per trial this sweep ran, in launch order: overrides, each
    seed's return, the mean. (A study continued from a persistent ``storage`` keeps its
    earlier trials there, not here.)"""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "overrides", *(f"seed_{s}" for s in seeds), "mean"])
        for i, r in enumerate(results):
            writer.writerow([i, " ".join(r.overrides), *r.returns, r.mean])


class SeedAveragedOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's ``OptunaSweeperImpl`` with its launcher wrapped in a
    :class:`SeedAveragingLauncher`."""

    def __init__(self, seeds: Sequence[int], **optuna: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"hydra.sweeper.seeds={list(seeds)}: give distinct seeds, at least one")
        self.seeds = list(seeds)
        self.optuna = OptunaSweeperImpl(**optuna)
        self.launcher: SeedAveragingLauncher | None = None
        self.sweep_dir: Path | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = SeedAveragingLauncher(self.optuna.launcher, self.seeds)
        self.optuna.launcher = self.launcher
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> None:
        assert self.launcher is not None and self.sweep_dir is not None, "setup() first"
        try:
            self.optuna.sweep(arguments)
        finally:
            if self.launcher.results:
                write_trials(self.sweep_dir / TRIALS_CSV, self.seeds, self.launcher.results)


@dataclass
class SeedAveragedOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.pglab_sweepers.optuna_seeds.SeedAveragedOptunaSweeper"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna_seeds", node=SeedAveragedOptunaSweeperConf, provider="pglab"
)
