"""One run, top to bottom: open the folder, build, (SFT), train, evaluate, summarise.

:func:`run` is what every job calls (``pglab.hydra_job`` wraps it for Hydra): a plain
function of a validated :class:`~pglab.config.Config` and a folder, returning the final
evaluation's mean return. The folder's files and their life cycle are
:mod:`pglab.run_dir`'s; the loop between updates is :mod:`pglab.loop`'s.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pglab import random_state
from pglab.algos.common import Agent
from pglab.config import Config, ConfigError
from pglab.envs import EnvSpec, VectorEnv, demonstrations, env_seeds, make_vec_env, resolve_env, share_starts
from pglab.evaluation import Evaluator
from pglab.loop import LoopState, ProgressDisplay, TrainingLoop
from pglab.preflight import Plan, algo_class, preflight
from pglab.run_dir import Checkpoint, RunFolder, Summary
from pglab.run_logger import RunLogger

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
) -> float:
    """Train and evaluate one agent; write the run folder; return the final eval mean return.

    A folder that holds a completed run of the same result-relevant config is skipped (its
    final return is returned); an interrupted one resumes from its checkpoint; any other
    run's files are moved to ``earlier-<n>/`` first. Raises whatever made the run fail, after
    ``summary.json`` says so and the W&B run is finished as failed.
    """
    folder = RunFolder(run_dir, config if config is not None else config_dict(cfg))
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
            plan = preflight(cfg)
            logger = open_logger(cfg, folder, summary, resumed, group)
            loop, env = build_loop(cfg, plan, folder, summary, resumed, logger, started_at, progress_bar, closing)
            loop.agent.learn(env, cfg.budget, loop)
            final = loop.final_evaluation()
            finish(cfg, folder, summary, loop, final)
            closing.close()
            logger.finish(summary.as_dict(), failed=False)
            return float(final["eval/return_mean"])
        except BaseException as err:
            closing.close()
            record_failure(folder, summary, loop, started_at, err)
            if logger is not None:
                logger.finish(summary.as_dict(), failed=True)
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
) -> tuple[TrainingLoop, VectorEnv]:
    """Envs, agent and training loop; restored from the checkpoint, or begun (SFT, first evaluation)."""
    env = make_vec_env(plan.env, cfg.env.num_envs, seed=cfg.seed, device=plan.device)
    closing.callback(env.close)
    n_eval = min(cfg.eval.num_envs, cfg.eval.final_episodes)
    eval_env = make_vec_env(plan.env, n_eval, seed=cfg.seed, device=plan.device, stream="eval")
    closing.callback(eval_env.close)
    agent = prepare_agent(cfg, plan, env)
    summary.eval_seeds = env_seeds(cfg.seed, eval_env.num_envs, "eval")
    evaluator = Evaluator(
        agent.act, eval_env, summary.eval_seeds, plan.env.success_when, cfg.eval.deterministic,
        cfg.eval.samples, plan.device,
    )  # fmt: skip
    display = ProgressDisplay(cfg.budget, cfg.progress_every_s, progress_bar, run_name(cfg))
    closing.callback(display.close)
    if resumed is not None:
        agent.load_state_dict(resumed.agent)
        random_state.restore(resumed.rng)
    elif cfg.sft_steps > 0:
        summary.sft = run_sft(cfg, plan.env, agent, env, logger)
    state = LoopState.from_dict(resumed.run_state["loop"]) if resumed else LoopState.fresh(cfg)
    extra = {"sft": summary.sft, "wandb_id": logger.run_id}  # what a checkpoint carries besides the loop
    loop = TrainingLoop(cfg, agent, evaluator, logger, folder, state, started_at, extra, display)
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
        agent.compile()
    return agent


def run_sft(cfg: Config, spec: EnvSpec, agent: Agent, env: VectorEnv, logger: RunLogger) -> dict[str, float]:
    """The SFT stage: fit the agent's policy to the env's expert demonstrations, log its
    ``sft/*`` lines (at env step 0), then freeze the result as the KL reference."""
    t0 = time.perf_counter()
    last = agent.finetune(demonstrations(spec, env), cfg.sft, cfg.sft_steps, lambda metrics: logger.log(0, metrics))
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
    summary.solved_threshold = cfg.env.solved_threshold
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


def record_failure(
    folder: RunFolder, summary: Summary, loop: TrainingLoop | None, started_at: float, err: BaseException
) -> None:
    """A failed run's summary: the error, its traceback, how far the run got."""
    if loop is not None:
        summary.env_steps = loop.env_steps
        record_solved(summary, loop)
    summary.status = "failed"
    summary.error = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
    summary.traceback = traceback.format_exc()
    summary.wall_s = time.perf_counter() - started_at
    folder.write_summary(summary)
