"""The training loop between an algorithm's updates: when to log, evaluate and checkpoint.

An algorithm calls :class:`TrainingLoop` (its ``on_update``) after every update. The loop
folds the update's metrics into a window, writes a metrics line every ``log_every_steps``,
evaluates every ``eval.every_steps`` (recording the first evaluation that reaches the
env's ``solved`` criterion), saves a checkpoint every ``checkpoint_every_steps``, and shows
progress. Each schedule is an :class:`Every`; everything a resume must restore besides the
agent and the RNGs is a :class:`LoopState`, saved in the checkpoint as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pglab.algos.common import Agent, Update
from pglab.config import Config, ConfigError
from pglab.evaluation import Evaluates
from pglab.numbers import score
from pglab.run_dir import VIDEO_DIR, RunFolder
from pglab.run_logger import RunLogger
from pglab.signals import StopRequest
from pglab.solved import is_solved, missing_metrics
from pglab.video import Recorder

log = logging.getLogger("pglab")


@dataclass
class Every:
    """A schedule: due once ``env_steps`` reaches ``next``, then every ``interval`` steps on."""

    interval: int
    next: int

    @classmethod
    def starting(cls, interval: int) -> Every:
        return cls(interval, interval)

    def due(self, env_steps: int) -> bool:
        return env_steps >= self.next

    def advance(self, env_steps: int) -> None:
        """Move past ``env_steps`` (an update may cross several due points at once)."""
        while self.next <= env_steps:
            self.next += self.interval


@dataclass
class Solved:
    """The first evaluation that met the env's criterion (``env.solved``, :mod:`pglab.solved`)."""

    env_steps: int | None = None
    wall_s: float | None = None
    train_s: float | None = None  # the same, without evaluations

    def record(
        self,
        criterion: Mapping[str, float],
        metrics: Mapping[str, float],
        env_steps: int,
        wall_s: float,
        train_s: float,
    ) -> bool:
        """Record this evaluation (``metrics``: ``eval/<name>`` → value) if it is the first
        to meet ``criterion``; True if it is.

        Raises:
            ConfigError: the criterion names a metric this env's evaluation does not report.
        """
        if missing := missing_metrics(criterion, metrics):
            reported = ", ".join(sorted(k.removeprefix("eval/") for k in metrics if k.startswith("eval/")))
            raise ConfigError(f"env.solved.{missing[0]}: this env's evaluation does not report it (it has {reported})")
        if self.env_steps is not None or not is_solved(criterion, metrics):
            return False
        self.env_steps, self.wall_s, self.train_s = env_steps, wall_s, train_s
        return True


@dataclass
class LoopState:
    """Where the loop is: everything a checkpoint restores besides the agent and the RNGs."""

    log: Every
    eval: Every
    checkpoint: Every
    train_s: float = 0.0  # training wall time without evaluations: what SPS divides by
    last_eval: float | None = None  # the last evaluation's mean return (progress display)
    recent_return: float | None = None  # the last logged training return (progress display)
    solved: Solved = field(default_factory=Solved)

    @classmethod
    def fresh(cls, cfg: Config) -> LoopState:
        return cls(
            Every.starting(cfg.log_every_steps),
            Every.starting(cfg.eval.every_steps),
            Every.starting(cfg.checkpoint_every_steps),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        schedules = {k: Every(**data[k]) for k in ("log", "eval", "checkpoint")}
        return cls(**{**data, **schedules, "solved": Solved(**data["solved"])})


@dataclass
class _Window:
    """Metrics accumulated between two log lines."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    returns: list[float] = field(default_factory=list)
    lengths: list[float] = field(default_factory=list)

    def add(self, update: Update) -> None:
        for k, v in update.metrics.items():
            self.sums[k] += v
            self.counts[k] += 1
        self.returns += update.episode_returns.tolist()
        self.lengths += update.episode_lengths.float().tolist()

    def flush(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        if self.returns:
            out["train/episode_return"] = float(np.mean(self.returns))
            out["train/episode_length"] = float(np.mean(self.lengths))
        self.sums.clear()
        self.counts.clear()
        self.returns.clear()
        self.lengths.clear()
        return out


class ProgressDisplay:
    """A tqdm bar on a terminal; plain log lines every ``every_s`` seconds otherwise.

    Both show the env steps capped at ``total``: an update is a whole rollout (or, for
    REINFORCE, whole episodes), so the last one can pass the budget; one log line says by
    how much instead of a count past the total. The rate shown is pglab's env steps/s
    (``time/sps``: training time only, evaluations left out), never tqdm's own.
    """

    # tqdm's default without its rate (it counts evaluation time); the postfix is pglab's
    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"

    def __init__(self, total: int, every_s: float, bar: bool, desc: str) -> None:
        self.total = total
        self.every_s = every_s
        self.desc = desc
        self._last = time.perf_counter()
        self._past_budget_said = False
        self._bar = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit="step", unit_scale=True, dynamic_ncols=True, bar_format=self.BAR_FORMAT
            )

    def update(
        self,
        env_steps: int,
        sps: float,
        recent_return: float | None,
        eval_return: float | None,
        update_steps: int | None = None,
    ) -> None:
        """Show ``env_steps`` (capped at the total); ``update_steps``: the last update's env steps."""
        shown = min(env_steps, self.total)
        stats = f"{sps:,.0f} env steps/s | return {score(recent_return)} | eval {score(eval_return)}"
        if self._bar is not None:
            self._bar.n = shown
            self._bar.set_postfix_str(stats, refresh=False)
            self._bar.refresh()
        else:
            now = time.perf_counter()
            if now - self._last >= self.every_s or env_steps >= self.total:
                self._last = now
                log.info(f"{self.desc} | {shown:,}/{self.total:,} steps ({100.0 * shown / self.total:.0f}%) | {stats}")
        if env_steps > self.total and not self._past_budget_said:
            self._past_budget_said = True
            self._say(self.past_budget_line(env_steps, update_steps))

    def past_budget_line(self, env_steps: int, update_steps: int | None) -> str:
        """The one line saying that the last update went past the budget, and by how much."""
        why = "" if update_steps is None else f"; an update is never cut, and that one was {update_steps:,} env steps"
        over = f"{env_steps:,} env steps of {self.total:,} (+{env_steps - self.total:,}{why})"
        return f"{self.desc}: the last update went past the budget: {over}"

    def _say(self, line: str) -> None:
        """Log ``line``; above the bar, which is cleared and redrawn around it, when there is one."""
        if self._bar is None:
            log.info(line)
            return
        with self._bar.external_write_mode():
            log.info(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class TrainingLoop:
    """``on_update`` of a run, and its evaluations (see the module docstring).

    Args:
        cfg: the run's config (schedules, budget, evaluation episodes, fault injection).
        agent: the agent being trained (checkpoints take its state).
        evaluator: the run's evaluation protocol.
        logger: where metrics lines and samples go.
        folder: where checkpoints go.
        state: a fresh :class:`LoopState`, or one restored from a checkpoint.
        started_at: ``time.perf_counter()`` when the run began (a resumed run: minus the
            wall seconds it had already spent), what ``time/wall_s`` counts from.
        extra: run facts a checkpoint carries besides the loop state (the SFT summary, the W&B id).
        display: the progress bar or lines.
        stop: set by a signal handler (:mod:`pglab.signals`); at the next update the loop
            logs, saves a checkpoint and raises :class:`~pglab.signals.Interrupted`.
        recorder: records videos of evaluation episodes (``eval.video``), None: off.
    """

    def __init__(
        self,
        cfg: Config,
        agent: Agent,
        evaluator: Evaluates,
        logger: RunLogger,
        folder: RunFolder,
        state: LoopState,
        started_at: float,
        extra: dict[str, Any],
        display: ProgressDisplay,
        stop: StopRequest | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.recorder = recorder
        self.cfg, self.agent, self.evaluator, self.logger, self.folder = cfg, agent, evaluator, logger, folder
        self.state, self.extra, self.display = state, extra, display
        self.stop = stop if stop is not None else StopRequest()
        self.budget = cfg.budget
        self.env_steps = agent.env_steps  # as of the last update the loop has seen through
        self.checkpoint_env_steps: int | None = agent.env_steps if agent.env_steps else None  # the last checkpoint's
        self._t_start = started_at
        self._t_mark = time.perf_counter()
        self._window = _Window()

    def wall_s(self) -> float:
        """Seconds since the run began (a resumed run's earlier part included)."""
        return time.perf_counter() - self._t_start

    def evaluate(self, episodes: int, env_steps: int, final: bool = False) -> dict[str, float]:
        """One evaluation: its samples logged, its video recorded when due, its metrics
        returned (not yet logged)."""
        result = self.evaluator(episodes)
        self.logger.log_samples(env_steps, result.samples)
        self._record_video(env_steps, final)
        return result.metrics()

    def _record_video(self, env_steps: int, final: bool) -> None:
        """``videos/<env_steps>.mp4`` and W&B's ``eval/video``: at the final evaluation and at
        the periodic ones whose ``env_steps // eval.every_steps`` is a multiple of
        ``eval.video_every`` (stateless, so a resumed run keeps the schedule). A video
        that cannot be written is a warning: the metrics do not depend on it."""
        ev = self.cfg.eval
        if self.recorder is None or (not final and (env_steps // ev.every_steps) % ev.video_every):
            return
        try:
            path, frames = self.recorder.record(self.folder.path / VIDEO_DIR / f"{env_steps}.mp4")
        except (OSError, RuntimeError) as err:  # a full disk, a broken encoder: the run goes on without it
            log.warning("%s: no video at %d env steps (%s: %s)", self.display.desc, env_steps, type(err).__name__, err)
            return
        log.debug("%s: %d frames in %s", self.display.desc, frames, path)
        self.logger.log_video(env_steps, path)

    def first_evaluation(self) -> None:
        """The evaluation at env step 0 (a fresh run's, before any update)."""
        metrics = self.evaluate(self.cfg.eval.episodes, 0)
        self.logger.log(0, {**metrics, "time/wall_s": self.wall_s()})
        self.state.last_eval = metrics["eval/return_mean"]
        self._t_mark = time.perf_counter()

    def __call__(self, update: Update) -> bool:
        """After an update: log, evaluate, checkpoint as due; False stops training."""
        now = time.perf_counter()
        self.state.train_s += update.train_s if update.train_s is not None else now - self._t_mark
        steps = update.env_steps
        fail_at = self.cfg.debug.fail_at_step
        if fail_at is not None and steps >= fail_at:
            raise RuntimeError(f"debug.fail_at_step={fail_at}: failing on purpose at {steps} steps")
        self._window.add(update)
        sps = steps / max(self.state.train_s, 1e-9)
        if self.stop.signum is not None and steps < self.budget:
            self._stop_here(steps, sps, now)
        checkpoint_due = self.state.checkpoint.due(steps) and steps < self.budget
        if self.state.log.due(steps) or steps >= self.budget or checkpoint_due:
            self._log_window(steps, sps, now)  # a checkpoint starts from an empty window: nothing is lost
        keep_going = True
        if self.state.eval.due(steps) and steps < self.budget:
            keep_going = self._periodic_evaluation(steps)
        if checkpoint_due:
            self.state.checkpoint.advance(steps)
            self.folder.save_checkpoint(self.agent.state_dict(), steps, self.state_dict())
            self.checkpoint_env_steps = steps
        self.display.update(steps, sps, self.state.recent_return, self.state.last_eval, steps - self.env_steps)
        self.env_steps = steps
        self._t_mark = time.perf_counter()
        return keep_going

    def _stop_here(self, steps: int, sps: float, now: float) -> None:
        """A stop was requested: log the window, checkpoint this update, raise Interrupted."""
        self._log_window(steps, sps, now)
        self.folder.save_checkpoint(self.agent.state_dict(), steps, self.state_dict())
        self.env_steps = steps
        self.checkpoint_env_steps = steps
        self.stop.check()

    def _log_window(self, steps: int, sps: float, now: float) -> None:
        row = self._window.flush()
        if "train/episode_return" in row:
            self.state.recent_return = row["train/episode_return"]
        row.update({"time/sps": sps, "time/wall_s": now - self._t_start})
        self.state.log.advance(steps)
        self.logger.log(steps, row)

    def _periodic_evaluation(self, steps: int) -> bool:
        """Evaluate; False when the run is solved and ``eval.stop_when_solved``."""
        metrics = self.evaluate(self.cfg.eval.episodes, steps)
        ret = metrics["eval/return_mean"]
        self.state.last_eval = ret
        solved_now = self.state.solved.record(self.cfg.env.solved, metrics, steps, self.wall_s(), self.state.train_s)
        keep_going = not (solved_now and self.cfg.eval.stop_when_solved)
        if not keep_going:
            log.info("%s: solved at %d env steps; stopping (eval.stop_when_solved)", self.display.desc, steps)
        self.logger.log(steps, {**metrics, "time/wall_s": self.wall_s()})
        self.state.eval.advance(steps)
        return keep_going

    def final_evaluation(self) -> dict[str, float]:
        """The final evaluation (``eval.final_episodes``), logged; it can solve the run too."""
        steps = self.env_steps = self.agent.env_steps
        metrics = self.evaluate(self.cfg.eval.final_episodes, steps, final=True)
        wall = self.wall_s()
        self.logger.log(steps, {**metrics, "time/wall_s": wall})
        self.state.solved.record(self.cfg.env.solved, metrics, steps, wall, self.state.train_s)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores to resume this loop (plain values)."""
        return {"loop": dataclasses.asdict(self.state), "wall_s": self.wall_s(), **self.extra}
