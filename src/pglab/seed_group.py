"""Jobs that differ only in their seed, trained in one process as one seed stack.

:func:`run_seed_group` is :func:`pglab.experiment.run` for S jobs at once (what
``hydra/launcher=vectorized`` calls): every job keeps its own folder, lock, ``summary.json``,
``metrics.jsonl``, checkpoints, evaluations, W&B run and resume, built by the same functions
a run alone uses, while one seed stack (:data:`STACKS`: :mod:`pglab.algos.seed_stack` and its
PPO and REINFORCE kin) trains their agents in lockstep. A job that fails (a NaN loss, a fault, a full
disk) ends alone and the others train on; a signal stops every job at the same update,
each with its checkpoint. Jobs resume together when their checkpoints are at the same env
step (a sweep stopped by a signal), and in separate stacks otherwise.

Between updates each job runs with its own random state in the process's generators
(Python, numpy, torch: :mod:`pglab.random_state`), so its evaluations, checkpoints and
resume are those of its run alone, and its log lines go to its own ``run.log``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pglab import folder_lock, random_state
from pglab.algos.common import NonFiniteError, Update
from pglab.algos.seed_stack import SeedStack, SeedStackA2C, SeedStackClass
from pglab.algos.seed_stack_ppo import SeedStackPPO
from pglab.algos.seed_stack_reinforce import SeedStackReinforce
from pglab.config import Config
from pglab.envs import VectorEnv, env_seeds, make_seed_stack_env
from pglab.experiment import build_loop, finish, open_logger, record_end, starting_summary
from pglab.loop import TrainingLoop
from pglab.preflight import Plan, preflight
from pglab.run_dir import Checkpoint, CheckpointDoesNotFit, RunFolder
from pglab.run_logger import RunLogger
from pglab.seed_evaluation import StackEvaluations
from pglab.signals import Interrupted, StopRequest

log = logging.getLogger("pglab")

STACKS: dict[type, SeedStackClass] = {s.algo: s for s in (SeedStackA2C, SeedStackPPO, SeedStackReinforce)}

current_job: contextvars.ContextVar[Path | None] = contextvars.ContextVar("pglab_seed_job", default=None)


@dataclass
class SeedJob:
    """One job of a group: its validated config, its folder, the config the folder stores
    (``config``, resolved) and its W&B group."""

    cfg: Config
    run_dir: Path
    config: dict[str, Any]
    group: str


@dataclass
class _Member:
    """A job while its group trains: its folder, logger and loop, and its random state."""

    job: SeedJob
    folder: RunFolder
    plan: Plan
    resumed: Checkpoint | None
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    summary: Any = None
    logger: RunLogger | None = None
    loop: TrainingLoop | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator = field(default_factory=torch.Generator)
    started_at: float = field(default_factory=time.perf_counter)
    stop: StopRequest = field(default_factory=StopRequest)  # the group's signal, taken once per update

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The job's random state in the process's generators, and its log lines to its
        ``run.log``, while the block runs."""
        self.rng["torch"] = self.generator.get_state()
        random_state.restore(self.rng)
        token = current_job.set(self.job.run_dir)
        try:
            yield
        finally:
            current_job.reset(token)
            self.rng = random_state.capture()
            self.generator.set_state(self.rng["torch"])


def stack_refusal(cfg: Config, plan: Plan) -> str | None:
    """Why jobs of ``cfg``'s setting cannot train as one seed stack, None if they can."""
    stack = STACKS.get(plan.algo)
    if stack is None:
        return f"algo={cfg.algo.name} has no seed-stacked update (algo=reinforce, a2c and ppo have)"
    if plan.device.type != "cpu":
        return f"hardware.device={plan.device.type}: seed stacks run on the CPU"
    if cfg.hardware.compile:
        return "hardware.compile=true does not stack"
    if plan.env.capabilities.token_observations:
        return f"env={cfg.env.name} observes tokens (a transformer policy does not stack)"
    if cfg.sft_steps > 0:
        return "an SFT stage and its KL reference do not stack"
    return stack.config_refusal(cfg.algo)


def _stack_evaluations(members: list[_Member], stack: SeedStack) -> StackEvaluations | None:
    """The stack's joint evaluations, None where the members' own must run (see
    :class:`~pglab.seed_evaluation.StackEvaluations`; a stack whose seeds count their own env
    steps evaluates each on its own schedule)."""
    cfg, plan = members[0].job.cfg, members[0].plan
    if not stack.shares_env_steps or not isinstance(stack, SeedStackA2C) or not cfg.eval.deterministic:
        return None
    n = min(cfg.eval.num_envs, cfg.eval.final_episodes)
    run_seeds = [m.job.cfg.seed for m in members]

    def make_env(ids: list[int]) -> VectorEnv:
        return make_seed_stack_env(plan.env.evaluation(), n, [run_seeds[i] for i in ids], plan.device, "eval")

    if cfg.eval.samples:  # text samples need each seed's own envs, where the env writes them
        probe = make_env([0])
        traces = probe.supports_traces
        probe.close()
        if traces:
            return None
    seeds = [env_seeds(seed, n, "eval") for seed in run_seeds]
    return StackEvaluations(stack, make_env, seeds, plan.env.success_when)


def run_seed_group(jobs: list[SeedJob], stop: StopRequest) -> list[float | BaseException]:
    """Run ``jobs`` (configs equal but for the seed) as seed stacks; per job its final
    evaluation return, or the error that ended it (already recorded in its folder). After
    a signal, the stacks not yet started are not started: their jobs get the signal."""
    results: list[float | BaseException | None] = [None] * len(jobs)
    with contextlib.ExitStack() as locks:
        pending: dict[int, list[tuple[int, _Member]]] = defaultdict(list)
        for i, job in enumerate(jobs):
            try:
                member, completed = _open(job, locks)
            except Exception as err:  # a refused or busy folder costs only its job
                results[i] = err
                continue
            if completed is not None:
                results[i] = completed
            else:
                pending[member.resumed.env_steps if member.resumed else 0].append((i, member))
        for _, group in sorted(pending.items(), reverse=True):  # resumed stacks first
            if stop.signum is not None:
                for i, _ in group:
                    results[i] = Interrupted(stop.signum)
                continue
            for i, outcome in zip([i for i, _ in group], _train([m for _, m in group], stop), strict=True):
                results[i] = outcome
    return [r if r is not None else RuntimeError("the job did not run") for r in results]


def _open(job: SeedJob, locks: contextlib.ExitStack) -> tuple[_Member, float | None]:
    """Preflight, lock and open the job's folder; its final return when it already completed."""
    token = current_job.set(job.run_dir)
    try:
        plan = preflight(job.cfg)
        folder = RunFolder(job.run_dir, job.config)
        locks.enter_context(folder_lock.hold(folder.path))
        opened = folder.open()
    finally:
        current_job.reset(token)
    if opened.completed is not None:
        return _Member(job, folder, plan, None), float((opened.completed.final or {})["return_mean"])
    return _Member(job, folder, plan, opened.checkpoint), None


def _train(members: list[_Member], stop: StopRequest) -> list[float | BaseException]:
    """Build every member as its run alone builds itself, then train them as one stack."""
    outcomes: dict[int, float | BaseException] = {}
    ready: list[tuple[int, _Member]] = []
    for i, m in enumerate(members):
        try:
            _build(m)
            ready.append((i, m))
        except CheckpointDoesNotFit as err:  # as a run alone: recorded, set aside, started afresh alone
            _fail(m, err, stop)
            m.folder.set_aside_checkpoint(str(err))
            fresh = _Member(m.job, m.folder, m.plan, None)
            outcomes[i] = _train([fresh], stop)[0]
        except BaseException as err:
            outcomes[i] = _fail(m, err, stop)
    if ready:
        outcomes |= _train_stack(ready, stop)
    return [outcomes[i] for i in range(len(members))]


def _build(m: _Member) -> None:
    """The member's summary, logger, envs, agent and loop (:func:`pglab.experiment.build_loop`:
    the first evaluation of a fresh run, the checkpoint of a resumed one)."""
    cfg, folder = m.job.cfg, m.folder
    m.started_at = time.perf_counter() - (float(m.resumed.run_state["wall_s"]) if m.resumed else 0.0)
    m.summary = starting_summary(cfg, folder, m.resumed)
    folder.write_summary(m.summary)
    token = current_job.set(m.job.run_dir)
    try:
        m.logger = open_logger(cfg, folder, m.summary, m.resumed, m.job.group)  # seeds the generators
        m.loop, _ = build_loop(
            cfg, m.plan, folder, m.summary, m.resumed, m.logger, m.started_at, False, m.closing, m.stop
        )  # its own training env is left unused: the stack's holds the same envs
    finally:
        current_job.reset(token)
    m.rng = random_state.capture()
    m.generator.set_state(m.rng["torch"])


def _stack_of(ready: list[tuple[int, _Member]]) -> SeedStack:
    """The members' agents as one seed stack; each loop then trains its view of it."""
    loops = [m.loop for _, m in ready]
    agents = [loop.agent for loop in loops if loop is not None]
    kinds = {type(a) for a in agents}
    if len(agents) != len(ready) or len(kinds) != 1 or next(iter(kinds)) not in STACKS:
        raise TypeError(f"a seed stack is built from one pglab algorithm's agents, one per member (got {kinds})")
    stack = STACKS[type(agents[0])](agents, [m.generator for _, m in ready])
    for loop, view in zip(loops, stack.views(), strict=True):
        if loop is not None:
            loop.agent = view
    return stack


def _train_stack(ready: list[tuple[int, _Member]], stop: StopRequest) -> dict[int, float | BaseException]:
    """Train the built members together; each one's outcome by its index."""
    members = [m for _, m in ready]
    outcomes: dict[int, float | BaseException] = {}
    cfg, plan = members[0].job.cfg, members[0].plan
    try:
        stack = _stack_of(ready)
        seeds = [m.job.cfg.seed for m in members]
        env = STACKS[plan.algo].make_env(plan.env, cfg.env.num_envs, seeds, plan.device)
        evaluations = _stack_evaluations(members, stack)
    except Exception as err:  # nothing trained yet: every member fails with it
        return {i: _fail(m, err, stop) for i, m in ready}
    if evaluations is not None:
        for k, m in enumerate(members):
            if m.loop is not None:
                m.loop.evaluator = evaluations.of(k)
    latched = [-1]  # the update at which the members' stop requests last took the signal's

    def on_update(k: int, update: Update | NonFiniteError) -> bool:
        if stack.updates != latched[0]:  # one decision per update for every member
            latched[0] = stack.updates
            for other in members:
                other.stop.signum, other.stop.requeue = stop.signum, stop.requeue
        i, m = ready[k]
        if isinstance(update, NonFiniteError):
            outcomes[i] = _fail(m, update, stop)
            return False
        try:
            with m.active():
                if m.loop is not None and m.loop(update):
                    return True
        except BaseException as err:
            outcomes[i] = _fail(m, err, stop)
            return False
        outcomes[i] = _complete(m, stop)  # the loop stopped it (eval.stop_when_solved)
        return False

    try:
        stack.learn(env, cfg.budget, on_update)
    except BaseException as err:  # the stack itself failed: every job still training fails with it
        for i, m in ready:
            if i not in outcomes:
                outcomes[i] = _fail(m, err, stop)
    finally:
        env.close()
    for i, m in ready:
        if i not in outcomes:
            outcomes[i] = _complete(m, stop)
    if evaluations is not None:
        evaluations.close()
    return outcomes


@contextlib.contextmanager
def _finishing(stop: StopRequest) -> Iterator[None]:
    """A job writes its end: a second signal waits for it (as :func:`pglab.experiment.run`'s)."""
    before, stop.finishing = stop.finishing, True
    try:
        yield
    finally:
        stop.finishing = before


def _complete(m: _Member, stop: StopRequest) -> float | BaseException:
    """The member's final evaluation and end, as :func:`pglab.experiment.run` ends a run."""
    try:
        with m.active():
            if m.loop is None or m.logger is None:
                raise RuntimeError("the job was not built")
            final = m.loop.final_evaluation()
            with _finishing(stop):
                finish(m.job.cfg, m.folder, m.summary, m.loop, final)
                m.closing.close()
                m.logger.finish(m.summary.as_dict(), failed=False)
            return float(final["eval/return_mean"])
    except BaseException as err:
        return _fail(m, err, stop)


def _fail(m: _Member, err: BaseException, stop: StopRequest) -> BaseException:
    """Record how the member ended early (``interrupted`` or ``failed``), as a run alone does."""
    token = current_job.set(m.job.run_dir)
    try:
        with _finishing(stop):
            m.closing.close()
            with contextlib.suppress(OSError):  # a full disk: summary.json keeps its last good version
                if m.summary is not None:
                    record_end(m.folder, m.summary, m.loop, m.started_at, err, m.resumed)
            if m.logger is not None:
                preempted = isinstance(err, Interrupted | KeyboardInterrupt)
                m.logger.finish(m.summary.as_dict(), failed=True, preempted=preempted)
    finally:
        current_job.reset(token)
    return err
