"""``hydra/launcher=vectorized``: a sweep's jobs that differ only in their seed, trained in one
process as one batched computation (:mod:`pglab.seed_group`, :mod:`pglab.algos.seed_stack`).

    python run.py -m hydra/launcher=vectorized algo=a2c env=mountaincar seed=0,1,2,3,4

The launcher groups the jobs by their overrides without ``seed``. A group whose setting
stacks (pglab's A2C on the CPU, MLP networks, no KL reference) trains as one seed stack;
any other group runs its jobs one after another as Hydra's basic launcher does, after one
line saying why. Either way every job has its own folder (named as with any launcher, so a
rerun finds its finished and interrupted jobs), ``.hydra/`` configs, ``run.log``, files and
W&B run, and the sweep ends with the same table and report.
"""

import copy
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pglab.config import ConfigError, validate
from pglab.hydra_job import failed_job
from pglab.preflight import preflight
from pglab.seed_group import SeedJob, current_job, run_seed_group, stack_refusal
from pglab.signals import Interrupted, signal_name, stop_on_signals

log = logging.getLogger(__name__)

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules, where
# dataclasses cannot resolve string annotations.
SEED_KEY = "seed"


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.pglab_launchers.vectorized.VectorizedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf, provider="pglab")


def setting_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides without its seed: the jobs of one stack share it."""
    return tuple(sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") != SEED_KEY))


class _JobLogFilter(logging.Filter):
    """Passes a record to one job's ``run.log``: the job's own lines and the group's."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        return job is None or job == self.run_dir


class VectorizedLauncher(Launcher):
    """See the module docstring."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, overrides in enumerate(job_overrides):
            groups.setdefault(setting_key(overrides), []).append(i)
        returns: list[JobReturn | None] = [None] * len(configs)
        for members in groups.values():
            group = [configs[i] for i in members]
            why = self._refusal(group)
            if why is None:
                done = self._run_stacked(group)
            else:
                log.info(f"hydra/launcher=vectorized: {why}: its {len(group)} job(s) run one at a time")
                done = [self._run_alone(c) for c in group]
            for i, ret in zip(members, done, strict=True):
                returns[i] = ret
        return [r for r in returns if r is not None]

    @staticmethod
    def _refusal(group: list[DictConfig]) -> str | None:
        """Why the group does not train as one stack, None if it does."""
        try:
            cfg = validate(_task_config(group[0]))
            return stack_refusal(cfg, preflight(cfg))
        except ConfigError as err:
            return f"its setting is refused ({err})"

    def _run_alone(self, sweep_config: DictConfig) -> JobReturn:
        assert self.hydra_context is not None and self.task_function is not None
        log.info(f"\t#{sweep_config.hydra.job.num} : {' '.join(filter_overrides(sweep_config.hydra.overrides.task))}")
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        assert self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _run_stacked(self, group: list[DictConfig]) -> list[JobReturn]:
        """The group's jobs as one seed stack: each job's folder and ``.hydra/`` prepared as
        Hydra's ``run_job`` prepares them, then :func:`pglab.seed_group.run_seed_group`; each
        job's outcome as :func:`pglab.hydra_job.main` turns it into a line and a return value."""
        assert self.hydra_context is not None and self.config is not None
        callbacks = self.hydra_context.callbacks
        lines = ", ".join(f"#{c.hydra.job.num}" for c in group)
        log.info(f"hydra/launcher=vectorized: jobs {lines} train as one seed stack")
        prepared = [_prepare(c) for c in group]
        configs = []
        for sweep_config, (task_cfg, _) in zip(group, prepared, strict=True):
            callbacks.on_job_start(config=sweep_config, task_function=self.task_function)
            config = OmegaConf.to_container(task_cfg, resolve=True, enum_to_str=True)
            assert isinstance(config, dict)
            configs.append(config)
        sweep_name = Path(str(group[0].hydra.sweep.dir)).name
        values: list[float] = [math.nan] * len(group)
        stopped: list[BaseException] = []
        with _job_logs(group[0], [run_dir for _, run_dir in prepared]), stop_on_signals() as stop:
            jobs, places = [], []
            for k, ((task_cfg, run_dir), config) in enumerate(zip(prepared, configs, strict=True)):
                try:
                    jobs.append(SeedJob(validate(task_cfg), run_dir, config, sweep_name))
                    places.append(k)
                except ConfigError as err:  # as hydra_job.main: recorded, the job returns NaN
                    values[k] = _failed(err, run_dir, config)
            for k, outcome in zip(places, run_seed_group(jobs, stop), strict=True):
                if isinstance(outcome, float):
                    values[k] = outcome
                elif isinstance(outcome, Interrupted | KeyboardInterrupt):
                    stopped.append(outcome)
                else:
                    values[k] = _failed(outcome, prepared[k][1], configs[k])
        if stopped:
            _interrupted(stopped[0], len(stopped))
        returns = []
        for sweep_config, (task_cfg, _), value in zip(group, prepared, values, strict=True):
            ret = _job_return(sweep_config, task_cfg, value)
            callbacks.on_job_end(config=sweep_config, job_return=ret)
            returns.append(ret)
        return returns


def _task_config(sweep_config: DictConfig) -> DictConfig:
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def _prepare(sweep_config: DictConfig) -> tuple[DictConfig, Path]:
    """The job's folder (``hydra.sweep.dir``/``subdir``, resolved with the job's Hydra config)
    and its ``.hydra/`` files, as ``hydra.core.utils.run_job`` writes them."""
    HydraConfig.instance().set_config(sweep_config)
    run_dir = (Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)).absolute()
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(sweep_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    task_cfg = _task_config(sweep_config)
    if sweep_config.hydra.output_subdir is not None:
        out = run_dir / str(sweep_config.hydra.output_subdir)
        _save_config(task_cfg, "config.yaml", out)
        _save_config(copy.deepcopy(HydraConfig.instance().cfg), "hydra.yaml", out)
        _save_config(sweep_config.hydra.overrides.task, "overrides.yaml", out)
    return task_cfg, run_dir


@contextmanager
def _job_logs(first: DictConfig, run_dirs: list[Path]) -> Iterator[None]:
    """Hydra's job logging, with one ``<job name>.log`` per job that takes the job's own lines
    (:data:`pglab.seed_group.current_job`) and the group's."""
    configure_log(first.hydra.job_logging, first.hydra.verbose)
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    formatter = files[0].formatter if files else None
    for h in files:
        root.removeHandler(h)
        h.close()
    ours = []
    for run_dir in run_dirs:
        handler = logging.FileHandler(run_dir / f"{first.hydra.job.name}.log")
        handler.setFormatter(formatter or logging.Formatter())
        handler.addFilter(_JobLogFilter(run_dir))
        root.addHandler(handler)
        ours.append(handler)
    try:
        yield
    finally:
        for h in ours:
            root.removeHandler(h)
            h.close()


def _failed(err: BaseException, run_dir: Path, config: dict[str, Any]) -> float:
    token = current_job.set(run_dir)  # the traceback goes to the job's own run.log
    try:
        return failed_job(err if isinstance(err, Exception) else RuntimeError(str(err)), run_dir, config, True)
    finally:
        current_job.reset(token)


def _job_return(sweep_config: DictConfig, task_cfg: DictConfig, value: float) -> JobReturn:
    ret = JobReturn()
    ret.cfg, ret.hydra_cfg = task_cfg, copy.deepcopy(sweep_config)
    ret.overrides = list(OmegaConf.to_container(sweep_config.hydra.overrides.task))  # type: ignore[arg-type]
    ret.working_dir = os.getcwd()
    ret.task_name = str(sweep_config.hydra.job.name)
    ret.return_value, ret.status = value, JobStatus.COMPLETED
    return ret


def _interrupted(err: BaseException, jobs: int) -> None:
    """A signal stopped the stack: one line, exit 128 + signal (every job kept its checkpoint)."""
    stopped = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
    line = (
        f"pglab: interrupted by {signal_name(stopped.signum)}: {jobs} job(s) keep their checkpoints; "
        "rerun the same command to resume"
    )
    print(line, file=sys.stderr)
    log.info(line)
    sys.exit(stopped.exit_code)
