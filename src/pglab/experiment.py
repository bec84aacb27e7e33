"""One run, top to bottom: open the folder, build, (SFT), train, evaluate, summarise.

:func:`run` is what every job calls (``pglab.hydra_job`` wraps it for Hydra): a plain
function of a validated :class:`~pglab.config.Config` and a folder, returning the final
evaluation's mean return. The folder's files and their life cycle are
:mod:`pglab.run_dir`'s; the loop between updates is :mod:`pglab.loop`'s.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pglab import folder_lock, random_state
from pglab.algos.common import Agent
from pglab.config import Config, ConfigError
from pglab.envs import EnvSpec, VectorEnv, demonstrations, env_seeds, make_vec_env, resolve_env, share_starts
from pglab.evaluation import Evaluator
from pglab.loop import LoopState, ProgressDisplay, TrainingLoop
from pglab.preflight import Plan, algo_class, preflight
from pglab.run_dir import Checkpoint, CheckpointDoesNotFit, RunFolder, Summary
from pglab.run_logger import RunLogger
from pglab.signals import Interrupted, StopRequest, signal_name
from pglab.video import Recorder

log = logging.getLogger("pglab")

TIMING_KEYS = ("time/sps", "time/wall_s")  # metrics that measure the machine, not the computation


def run_name(cfg: Config) -> str:
    return f"{cfg.algo.name}-{cfg.env.name}-s{cfg.seed}"


def config_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain JSON-able values (what summaries, checkpoints and W&B store)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)  # type: ignore[return-value]


def run(
    cfg: Config,
    run_dir: Path,
    config: dict[str, Any] | None = None,
    group: str | None = None,
    progress_bar: bool = False,
    stop: StopRequest | None = None,
) -> float:
    """Train and evaluate one agent; write the run folder; return the final eval mean return.

    A folder that holds a completed run of the same result-relevant config is skipped (its
    final return is returned); an interrupted one resumes from its checkpoint; any other
    run's files are moved to ``earlier-<n>/`` first. The folder is locked while the run
    runs (:class:`~pglab.folder_lock.FolderBusy` if another live run holds it). Raises
    whatever made the run fail or stop (``stop``: see :mod:`pglab.signals`), after
    ``summary.json`` says so and the W&B run is finished as failed or preempted.
    """
    plan = preflight(cfg)  # before the folder is touched: a refusal leaves nothing behind
    folder = RunFolder(run_dir, config if config is not None else config_dict(cfg))
    stop = stop or StopRequest()
    with folder_lock.hold(folder.path):
        try:
            return _run_in(folder, cfg, plan, group, progress_bar, stop)
        except CheckpointDoesNotFit as err:  # found when the agent loads it: set aside, start afresh
            folder.set_aside_checkpoint(str(err))
            stop.finishing = False
            return _run_in(folder, cfg, plan, group, progress_bar, stop)


def _run_in(
    folder: RunFolder, cfg: Config, plan: Plan, group: str | None, progress_bar: bool, stop: StopRequest
) -> float:
    """:func:`run` in its locked folder."""
    opened = folder.open()
    if opened.completed is not None:
        return float((opened.completed.final or {})["return_mean"])
    resumed = opened.checkpoint
    started_at = time.perf_counter() - (float(resumed.run_state["wall_s"]) if resumed else 0.0)
    summary = starting_summary(cfg, folder, resumed)
    folder.write_summary(summary)
    logger: RunLogger | None = None
    loop: TrainingLoop | None = None
    with contextlib.ExitStack() as closing:  # envs and the progress display
        try:
            logger = open_logger(cfg, folder, summary, resumed, group)
            loop, env = build_loop(cfg, plan, folder, summary, resumed, logger, started_at, progress_bar, closing, stop)
            loop.agent.learn(env, cfg.budget, loop)
            final = loop.final_evaluation()
            stop.finishing = True  # from here a signal lets the run complete
            finish(cfg, folder, summary, loop, final)
            closing.close()
            logger.finish(summary.as_dict(), failed=False)
            return float(final["eval/return_mean"])
        except BaseException as err:
            stop.finishing = True  # a second signal must not cut the summary and W&B short
            closing.close()
            interrupted = isinstance(err, Interrupted | KeyboardInterrupt)
            with contextlib.suppress(OSError):  # a full disk: summary.json keeps its last good version
                record_end(folder, summary, loop, started_at, err, resumed)
            if logger is not None:
                logger.finish(summary.as_dict(), failed=True, preempted=interrupted)
            raise


def starting_summary(cfg: Config, folder: RunFolder, resumed: Checkpoint | None) -> Summary:
    """The summary of a run that starts (or resumes) now: ``running``."""
    solved = resumed.run_state["loop"]["solved"] if resumed else {}
    return Summary(
        status="running",
        config=folder.config,
        algo=cfg.algo.name,
        env=cfg.env.name,
        seed=cfg.seed,
        env_steps=resumed.env_steps if resumed else 0,
        solved_at_env_steps=solved.get("env_steps"),
        solved_at_wall_s=solved.get("wall_s"),
        solved_at_train_s=solved.get("train_s"),
        sft=resumed.run_state["sft"] if resumed else None,  # the SFT stage does not rerun on resume
        resumed_from_env_steps=resumed.env_steps if resumed else None,
        run_dir=str(folder.path),
    )


def open_logger(
    cfg: Config, folder: RunFolder, summary: Summary, resumed: Checkpoint | None, group: str | None
) -> RunLogger:
    """Threads and seeds for the run, then its logger (a resumed run continues its W&B run)."""
    if cfg.hardware.num_threads > 0:
        torch.set_num_threads(cfg.hardware.num_threads)
    random_state.seed_everything(cfg.seed)
    run_id = resumed.run_state["wandb_id"] if resumed else None
    logger = RunLogger(folder.path, cfg.logger, folder.config, run_name(cfg), group or folder.path.name, run_id)
    summary.wandb_mode = logger.mode
    summary.wandb_offline_reason = logger.offline_reason
    summary.wandb_dir = str(logger.wandb_dir) if logger.wandb_dir else None
    return logger


def build_loop(
    cfg: Config,
    plan: Plan,
    folder: RunFolder,
    summary: Summary,
    resumed: Checkpoint | None,
    logger: RunLogger,
    started_at: float,
    progress_bar: bool,
    closing: contextlib.ExitStack,
    stop: StopRequest,
) -> tuple[TrainingLoop, VectorEnv]:
    """Envs, agent and training loop; restored from the checkpoint, or begun (SFT, first evaluation)."""
    env = make_vec_env(plan.env, cfg.env.num_envs, seed=cfg.seed, device=plan.device)
    closing.callback(env.close)
    n_eval = min(cfg.eval.num_envs, cfg.eval.final_episodes)
    eval_env = make_vec_env(plan.env.evaluation(), n_eval, seed=cfg.seed, device=plan.device, stream="eval")
    closing.callback(eval_env.close)
    agent = prepare_agent(cfg, plan, env)
    summary.eval_seeds = env_seeds(cfg.seed, eval_env.num_envs, "eval")
    evaluator = Evaluator(
        agent.act, eval_env, summary.eval_seeds, plan.env.success_when, cfg.eval.deterministic,
        cfg.eval.samples, plan.device,
    )  # fmt: skip
    recorder = None
    if cfg.eval.video:
        recorder = Recorder(
            agent.act, plan.env.evaluation(), summary.eval_seeds, cfg.eval.video_episodes, cfg.eval.deterministic,
            plan.device,
        )  # fmt: skip
        closing.callback(recorder.close)
    display = ProgressDisplay(cfg.budget, cfg.progress_every_s, progress_bar, run_name(cfg))
    closing.callback(display.close)
    if resumed is not None:
        try:
            agent.load_state_dict(resumed.agent)
            random_state.restore(resumed.rng)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CheckpointDoesNotFit(f"its agent state does not load ({type(err).__name__}: {err})") from err
    elif cfg.sft_steps > 0:
        summary.sft = run_sft(cfg, plan.env, agent, env, logger, stop)
    elif cfg.algo.policy.pretrained:
        agent.set_reference()  # the KL leash holds the policy to its initial model
    state = LoopState.from_dict(resumed.run_state["loop"]) if resumed else LoopState.fresh(cfg)
    extra = {"sft": summary.sft, "wandb_id": logger.run_id}  # what a checkpoint carries besides the loop
    loop = TrainingLoop(cfg, agent, evaluator, logger, folder, state, started_at, extra, display, stop, recorder)
    if resumed is None:
        loop.first_evaluation()
    return loop, env


def build_agent(cfg: Config, env: VectorEnv, device: torch.device, spec: EnvSpec | None = None) -> Agent:
    """The algorithm ``cfg.algo.impl`` names, built for ``env`` (``spec``: its resolved env)."""
    spec = spec if spec is not None else resolve_env(cfg.env)
    return algo_class(cfg.algo.impl)(
        cfg=cfg.algo,
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        device=device,
        max_episode_steps=spec.time_limit,
        env=env,
    )


def prepare_agent(cfg: Config, plan: Plan, env: VectorEnv) -> Agent:
    """The agent, its training env set up for its groups, fault injection armed, compiled."""
    agent = build_agent(cfg, env, plan.device, plan.env)
    if agent.group_size is not None:
        share_starts(plan.env, env, agent.group_size)  # k samples per prompt
    agent.nan_at_step = cfg.debug.nan_at_step
    if cfg.hardware.compile:
        log.info("%s: hardware.compile: %s", run_name(cfg), agent.compile(env))
    return agent


def run_sft(
    cfg: Config, spec: EnvSpec, agent: Agent, env: VectorEnv, logger: RunLogger, stop: StopRequest
) -> dict[str, float]:
    """The SFT stage: fit the agent's policy to the env's expert demonstrations, log its
    ``sft/*`` lines (at env step 0), then freeze the result as the KL reference. A stop
    request ends it at its next log line (SFT is not checkpointed: a rerun starts it again)."""

    def log_line(metrics: dict[str, float]) -> None:
        logger.log(0, metrics)
        stop.check()

    t0 = time.perf_counter()
    last = agent.finetune(demonstrations(spec, env), cfg.sft, cfg.sft_steps, log_line)
    log.info("%s: SFT done: %s", run_name(cfg), last)
    return {**last, "wall_s": time.perf_counter() - t0}


def finish(cfg: Config, folder: RunFolder, summary: Summary, loop: TrainingLoop, final: dict[str, float]) -> None:
    """A completed run: the final agent in ``policy.pt`` (and the algorithm's own format),
    the summary ``completed``, the resume checkpoint gone."""
    agent = loop.agent
    folder.save_policy(agent.state_dict(), cfg.algo.name, cfg.env.name, cfg.seed)
    agent.export(folder.path)
    train_s = loop.state.train_s
    summary.status = "completed"
    summary.env_steps = agent.env_steps
    summary.wall_s = loop.wall_s()
    summary.train_s = train_s
    summary.sps = agent.env_steps / max(train_s, 1e-9)
    summary.final = {k.removeprefix("eval/"): v for k, v in final.items()} | {"episodes": cfg.eval.final_episodes}
    summary.solved = dict(cfg.env.solved)
    record_solved(summary, loop)
    folder.write_summary(summary)
    folder.remove_checkpoint()


def record_solved(summary: Summary, loop: TrainingLoop) -> None:
    solved = loop.state.solved
    summary.solved_at_env_steps, summary.solved_at_wall_s, summary.solved_at_train_s = (
        solved.env_steps,
        solved.wall_s,
        solved.train_s,
    )


def record_end(
    folder: RunFolder,
    summary: Summary,
    loop: TrainingLoop | None,
    started_at: float,
    err: BaseException,
    resumed: Checkpoint | None,
) -> None:
    """The summary of a run that stopped early: ``interrupted`` (a signal; it resumes from
    its checkpoint) or ``failed`` (the error and its traceback); how far it got either way."""
    if loop is not None:
        summary.env_steps = loop.env_steps
        record_solved(summary, loop)
    summary.wall_s = time.perf_counter() - started_at
    if isinstance(err, Interrupted | KeyboardInterrupt):
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        at = loop.checkpoint_env_steps if loop is not None else (resumed.env_steps if resumed else None)
        summary.status = "interrupted"
        summary.checkpoint_env_steps = at
        kept = f"its checkpoint at {at:,} env steps is kept" if at else "no checkpoint yet"
        summary.error = f"stopped by {signal_name(signum)} at {summary.env_steps:,} env steps; {kept}"
    else:
        summary.status = "failed"
        summary.error = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
        summary.traceback = "".join(traceback.format_exception(err))
    folder.write_summary(summary)
