"""One run: validate the config, build env, agent and logger, train, evaluate, save.

:func:`main` is what ``run.py`` calls for every Hydra job. :func:`run` is the plain
function behind it (no Hydra needed), returning the final evaluation's mean return.

What a run folder holds when it ends (completed or failed):

* ``metrics.jsonl`` — one line per log, ``env_steps`` first (see ``pglab.run_logger``);
* ``samples.jsonl`` — a few evaluation episodes as text (maze walks, dialogues), where
  the env can describe them;
* ``summary.json`` — status (``completed|failed``), error and traceback if failed, final
  evaluation, env steps, wall seconds, SPS, the resolved config;
* ``policy.pt`` — the final agent state (completed runs);
* ``wandb/`` — the offline W&B run, when W&B runs offline;
* ``.hydra/`` and ``<job>.log`` — Hydra's record of the config and the log lines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from pglab.algos.common import NonFiniteError, Update
from pglab.algos.sft import supervised_finetune
from pglab.config import Config, ConfigError, Device, HardwareConfig, validate
from pglab.envs import backend_id, check_env_config, env_seeds, make_vec_env, max_episode_steps, native_class
from pglab.evaluation import evaluate
from pglab.run_logger import RunLogger, offline_wandb_dirs, write_json_atomic

log = logging.getLogger("pglab")

TIMING_KEYS = ("time/sps", "time/wall_s")


def resolve_device(cfg: HardwareConfig) -> torch.device:
    """The torch device of ``hardware.device``; a one-line ConfigError if CUDA is asked for but absent."""
    if cfg.device == Device.cuda:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigError(
                f"hardware=cuda: no CUDA device is available (torch {torch.__version__}, {build}); "
                "use hardware=cpu or hardware=auto"
            )
        return torch.device("cuda")
    if cfg.device == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the envs and action spaces are seeded where they are built)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_name(cfg: Config) -> str:
    return f"{cfg.algo.name}-{cfg.env.name}-s{cfg.seed}"


def build_agent(cfg: Config, env: Any, device: torch.device) -> Any:
    """The algorithm ``cfg.algo.impl`` names, built for ``env`` (see ``pglab.algos.common``)."""
    return get_class(cfg.algo.impl)(
        cfg=cfg.algo,
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        device=device,
        max_episode_steps=max_episode_steps(cfg.env),
        env=env,
    )


def preflight(cfg: Config, check_device: bool = True) -> torch.device:
    """Every check that can fail before work starts; returns the device.

    ``check_device=False`` skips asking this machine for the device: the jobs of a SLURM
    sweep run on cluster nodes (with GPUs) while the sweep is submitted from a login node
    (often without); each job checks its own device when it starts.
    """
    check_env_config(cfg.env)
    try:
        algo_class = get_class(cfg.algo.impl)
    except Exception as err:  # hydra wraps import errors in its own types
        raise ConfigError(f"algo.impl={cfg.algo.impl!r} cannot be imported: {err}") from None
    check = getattr(algo_class, "check_config", None)
    if check is not None:
        check(cfg)
    if cfg.hardware.compile and not hasattr(algo_class, "compile"):
        raise ConfigError(
            f"hardware.compile=true: algo={cfg.algo.name} does not support torch.compile "
            "(pglab's reinforce and a2c do); set hardware.compile=false"
        )
    if max_episode_steps(cfg.env) is None:
        raise ConfigError(f"env.max_episode_steps: {cfg.env.id} has no time limit; set one")
    native = native_class(backend_id(cfg.env))
    if cfg.sft_steps > 0:
        if native is None or not hasattr(native, "demonstrations"):
            raise ConfigError(
                f"sft.steps={cfg.sft_steps}: env={cfg.env.name} has no expert demonstrations to fine-tune on "
                "(dialogue_lm has); set sft.steps=0"
            )
        if not hasattr(algo_class, "set_reference"):
            raise ConfigError(
                f"sft.steps={cfg.sft_steps}: algo={cfg.algo.name} has no SFT stage (pglab's reinforce and a2c "
                "have); set sft.steps=0"
            )
    group = getattr(cfg.algo, "group_size", None)
    if group is not None and (native is None or not hasattr(native, "set_group_size")):
        raise ConfigError(
            f"algo.group_size={group}: env={cfg.env.name} cannot start several envs from the same state "
            "(dialogue_lm can: k samples per prompt); leave algo.group_size null"
        )
    if not check_device:
        return torch.device("cpu")
    return resolve_device(cfg.hardware)


# --------------------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on a terminal; plain log lines every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, every_s: float, bar: bool, desc: str) -> None:
        self.total = total
        self.every_s = every_s
        self.desc = desc
        self._last = time.perf_counter()
        self._bar = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="step", unit_scale=True, dynamic_ncols=True)

    def update(self, env_steps: int, sps: float, recent_return: float | None, eval_return: float | None) -> None:
        ret = "-" if recent_return is None else f"{recent_return:.1f}"
        ev = "-" if eval_return is None else f"{eval_return:.1f}"
        if self._bar is not None:
            self._bar.n = min(env_steps, self.total)
            self._bar.set_postfix_str(f"sps={sps:,.0f} return={ret} eval={ev}", refresh=False)
            self._bar.refresh()
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s or env_steps >= self.total:
            self._last = now
            pct = 100.0 * env_steps / self.total
            log.info(
                f"{self.desc} | {env_steps:,}/{self.total:,} steps ({pct:.0f}%) | "
                f"sps {sps:,.0f} | return {ret} | eval {ev}"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------- training loop


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


def _normalised(config: dict[str, Any]) -> Any:
    """A config as JSON would give it back, so configs from files and from Hydra compare equal."""
    return json.loads(json.dumps(config))


# Keys that do not change what a run computes: where it runs, how it reports, how often it
# checkpoints. A rerun that changes only these (a longer SLURM time limit after a
# time-out, W&B settings, another launcher) still skips or resumes.
NOT_RESULT_KEYS = (
    ("hardware", "cluster"),
    ("hardware", "num_threads"),
    ("logger",),
    ("progress_every_s",),
    ("checkpoint_every_steps",),
)


def result_config(config: dict[str, Any]) -> Any:
    """The part of a run's config that decides its results (what skip and resume compare)."""
    out = _normalised(config)
    for path in NOT_RESULT_KEYS:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def completed_run(run_dir: Path, config_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a run completed in ``run_dir`` with this very config, if there is one."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") == "completed" and result_config(summary.get("config") or {}) == result_config(
        config_dict
    ):
        return summary
    return None


def load_resumable(run_dir: Path, config_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of an interrupted run of this very config in ``run_dir``, if any."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # a foreign or damaged file: start afresh, keep it aside
        log.warning("cannot read %s (%s); starting afresh", path, err)
        return None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        return None
    return ckpt if result_config(ckpt["config"]) == result_config(config_dict) else None


def _truncate_jsonl(path: Path, max_env_steps: int) -> None:
    """Keep the lines logged up to ``max_env_steps`` (what the checkpoint covers), atomically."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["env_steps"] <= max_env_steps:
                keep.append(line)
        except (ValueError, KeyError):
            break  # a line cut by the kill: everything after it is lost anyway
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep))
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain values (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": list(py_state[1]),
        "python_gauss": py_state[2],
        "numpy": torch.as_tensor(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": (int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _arm_fault_injection(cfg: Config, agent: Any) -> None:
    if cfg.debug.nan_at_step is not None:
        agent.nan_at_step = cfg.debug.nan_at_step


def run(
    cfg: Config,
    run_dir: Path,
    config_dict: dict[str, Any] | None = None,
    group: str | None = None,
    progress_bar: bool = False,
) -> float:
    """Train and evaluate one agent; write the run folder; return the final eval mean return.

    A run folder that already holds a run of the same resolved config is not started
    afresh: a completed run is skipped (its final return is returned), an interrupted one
    resumes from its last checkpoint. A run of another config is moved to ``earlier-<n>/``.

    Raises whatever made the run fail, after ``summary.json`` says so and the W&B run
    is finished as failed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = (
        config_dict
        if config_dict is not None
        else OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    )
    done = completed_run(run_dir, config_dict)
    if done is not None:
        log.info("%s: completed earlier with this config; skipped", run_dir)
        return float(done["final"]["return_mean"])
    ckpt = load_resumable(run_dir, config_dict)
    if ckpt is None:
        keep_earlier_run(run_dir)
    else:
        log.info("%s: resuming from the checkpoint at %d env steps", run_dir, ckpt["env_steps"])
        for name in ("metrics.jsonl", "samples.jsonl"):
            _truncate_jsonl(run_dir / name, ckpt["env_steps"])
    name = run_name(cfg)
    progress_state = ckpt["progress"] if ckpt else {}
    t_start = time.perf_counter() - float(progress_state.get("wall_s", 0.0))
    summary: dict[str, Any] = {
        "status": "running",
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "seed": cfg.seed,
        "env_steps": ckpt["env_steps"] if ckpt else 0,
        "solved_at_env_steps": progress_state.get("solved_at_env_steps"),  # first eval >= env.solved_threshold
        "solved_at_wall_s": progress_state.get("solved_at_wall_s"),
        "solved_at_train_s": progress_state.get("solved_at_train_s"),  # the same, without evaluations
        "sft": progress_state.get("sft"),
        "resumed_from_env_steps": ckpt["env_steps"] if ckpt else None,
        "run_dir": str(run_dir),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # set when a SLURM launcher ran the job
        "config": config_dict,
    }
    write_json_atomic(run_dir / "summary.json", summary)

    logger: RunLogger | None = None
    envs: list[Any] = []
    progress: Progress | None = None
    try:
        device = preflight(cfg)
        if cfg.hardware.num_threads > 0:
            torch.set_num_threads(cfg.hardware.num_threads)
        seed_everything(cfg.seed)
        wandb_id = progress_state.get("wandb_id")
        logger = RunLogger(run_dir, cfg.logger, config_dict, name=name, group=group or run_dir.name, run_id=wandb_id)
        summary["wandb_mode"] = logger.mode
        summary["wandb_dir"] = str(logger.wandb_dir) if logger.wandb_dir else None

        env = make_vec_env(cfg.env, cfg.env.num_envs, seed=cfg.seed, device=device)
        eval_env = make_vec_env(
            cfg.env,
            min(cfg.eval.num_envs, cfg.eval.final_episodes),
            seed=cfg.seed,
            device=device,
            stream="eval",
        )
        envs = [env, eval_env]
        agent = build_agent(cfg, env, device)
        _arm_fault_injection(cfg, agent)
        if cfg.hardware.compile:
            agent.compile()
        budget = cfg.budget
        eval_seeds = env_seeds(cfg.seed, eval_env.num_envs, "eval")
        summary["eval_seeds"] = eval_seeds  # the same for every algorithm with this run seed
        threshold = cfg.env.solved_threshold

        def run_eval(episodes: int, env_steps: int) -> dict[str, float]:
            deterministic = cfg.eval.deterministic
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                if not deterministic:  # sampled actions from a generator of the evaluation's own
                    torch.manual_seed(eval_seeds[0])
                result = evaluate(
                    lambda o: agent.act(o, deterministic=deterministic),
                    eval_env,
                    episodes,
                    eval_seeds,
                    cfg.env.success_when,
                    samples=cfg.eval.samples,
                )
            logger.log_samples(env_steps, result.samples)
            return result.metrics()

        # where the run is: everything a checkpoint must restore besides the agent and RNGs
        state: dict[str, Any] = {
            "next_log": cfg.log_every_steps,
            "next_eval": cfg.eval.every_steps,
            "next_checkpoint": cfg.checkpoint_every_steps,
            "train_s": 0.0,  # training wall time without evaluations: what SPS divides by
            "last_eval": None,
            "recent": None,
        }
        window = _Window()
        progress = Progress(budget, cfg.progress_every_s, progress_bar, name)

        if ckpt is not None:
            agent.load_state_dict(ckpt["agent"])
            _set_rng_state(ckpt["rng"])
            state.update({k: progress_state[k] for k in state if k in progress_state})
        else:
            if cfg.sft_steps > 0:
                summary["sft"] = run_sft(cfg, agent, env, logger)
                log.info("%s: SFT done: %s", name, summary["sft"])
            first = run_eval(cfg.eval.episodes, 0)
            logger.log(0, {**first, "time/wall_s": time.perf_counter() - t_start})
            state["last_eval"] = first["eval/return_mean"]
        t_mark = time.perf_counter()

        def save_resumable(steps: int) -> None:
            progress_now = {
                **state,
                "wall_s": time.perf_counter() - t_start,
                "solved_at_env_steps": summary["solved_at_env_steps"],
                "solved_at_wall_s": summary["solved_at_wall_s"],
                "solved_at_train_s": summary["solved_at_train_s"],
                "sft": summary.get("sft"),  # the SFT stage's last metrics (it does not rerun on resume)
                "wandb_id": logger.run_id,
            }
            payload = {
                "agent": agent.state_dict(),
                "env_steps": steps,
                "rng": _rng_state(),
                "progress": progress_now,
                "config": _normalised(config_dict),
            }
            _save_atomic(run_dir / CHECKPOINT, payload)

        def on_update(update: Update) -> bool:
            nonlocal t_mark
            keep_going = True
            now = time.perf_counter()
            state["train_s"] += now - t_mark
            steps = update.env_steps
            if cfg.debug.fail_at_step is not None and steps >= cfg.debug.fail_at_step:
                raise RuntimeError(f"debug.fail_at_step={cfg.debug.fail_at_step}: failing on purpose at {steps} steps")
            window.add(update)
            sps = steps / max(state["train_s"], 1e-9)
            checkpoint_due = steps >= state["next_checkpoint"] and steps < budget
            if steps >= state["next_log"] or steps >= budget or checkpoint_due:
                row = window.flush()  # a checkpoint starts from an empty window: nothing is lost
                if "train/episode_return" in row:
                    state["recent"] = row["train/episode_return"]
                row.update({"time/sps": sps, "time/wall_s": now - t_start})
                while state["next_log"] <= steps:
                    state["next_log"] += cfg.log_every_steps
                logger.log(steps, row)
            if steps >= state["next_eval"] and steps < budget:
                metrics = run_eval(cfg.eval.episodes, steps)
                state["last_eval"] = metrics["eval/return_mean"]
                if (
                    threshold is not None
                    and summary["solved_at_env_steps"] is None
                    and metrics["eval/return_mean"] >= threshold
                ):
                    summary["solved_at_env_steps"] = steps
                    summary["solved_at_wall_s"] = time.perf_counter() - t_start
                    summary["solved_at_train_s"] = state["train_s"]
                    if cfg.eval.stop_when_solved:
                        log.info("%s: solved at %d env steps; stopping (eval.stop_when_solved)", name, steps)
                        keep_going = False
                logger.log(steps, {**metrics, "time/wall_s": time.perf_counter() - t_start})
                while state["next_eval"] <= steps:
                    state["next_eval"] += cfg.eval.every_steps
            if checkpoint_due:
                while state["next_checkpoint"] <= steps:
                    state["next_checkpoint"] += cfg.checkpoint_every_steps
                save_resumable(steps)
            summary["env_steps"] = steps
            progress.update(steps, sps, state["recent"], state["last_eval"])
            t_mark = time.perf_counter()
            return keep_going

        agent.learn(env, budget, on_update)

        final = run_eval(cfg.eval.final_episodes, agent.env_steps)
        wall = time.perf_counter() - t_start
        logger.log(agent.env_steps, {**final, "time/wall_s": wall})
        if threshold is not None and summary["solved_at_env_steps"] is None and final["eval/return_mean"] >= threshold:
            summary["solved_at_env_steps"] = agent.env_steps
            summary["solved_at_wall_s"] = wall
            summary["solved_at_train_s"] = state["train_s"]
        save_checkpoint(run_dir / "policy.pt", agent.state_dict(), cfg, config_dict)
        if hasattr(agent, "export"):
            agent.export(run_dir)  # the algorithm's own format too (SB3's zip)
        train_s = state["train_s"]
        summary.update(
            status="completed",
            env_steps=agent.env_steps,
            wall_s=wall,
            train_s=train_s,
            sps=agent.env_steps / max(train_s, 1e-9),
            final={k.removeprefix("eval/"): v for k, v in final.items()} | {"episodes": cfg.eval.final_episodes},
            solved_threshold=threshold,
        )
        write_json_atomic(run_dir / "summary.json", summary)
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # policy.pt holds the final agent
        progress.close()
        logger.finish(summary, failed=False)
        return float(final["eval/return_mean"])
    except BaseException as err:
        if progress is not None:
            progress.close()
        summary.update(
            status="failed",
            error=f"{type(err).__name__}: {err}" if not isinstance(err, ConfigError) else str(err),
            traceback=traceback.format_exc(),
            wall_s=time.perf_counter() - t_start,
        )
        write_json_atomic(run_dir / "summary.json", summary)
        if logger is not None:
            logger.finish(summary, failed=True)
        raise
    finally:
        for e in envs:
            e.close()


def run_sft(cfg: Config, agent: Any, env: Any, logger: RunLogger) -> dict[str, float]:
    """The SFT stage: fit the agent's policy to the env's expert demonstrations, log its
    ``sft/*`` lines (at env step 0), then freeze the result as the KL reference."""
    t0 = time.perf_counter()
    last = supervised_finetune(
        agent.policy,
        env.unwrapped.demonstrations,
        cfg.sft,
        cfg.sft_steps,
        lambda metrics: logger.log(0, metrics),
        max_grad_norm=cfg.algo.max_grad_norm,
    )
    agent.set_reference()
    return {**last, "wall_s": time.perf_counter() - t0}


CHECKPOINT = "checkpoint.pt"
RUN_FILES = (
    "metrics.jsonl",
    "samples.jsonl",
    "summary.json",
    "policy.pt",
    CHECKPOINT,
    "sb3_model.zip",
    "vecnormalize.pkl",
)


def keep_earlier_run(run_dir: Path) -> Path | None:
    """Move an earlier run's files out of the way (into ``earlier-<n>/``) before a new run
    writes there, so two runs never mix in one ``metrics.jsonl`` and nothing is lost."""
    present = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not present:
        return None
    n = 1
    while (run_dir / f"earlier-{n}").exists():
        n += 1
    dest = run_dir / f"earlier-{n}"
    dest.mkdir()
    for name in present:
        os.replace(run_dir / name, dest / name)
    log.warning("%s held an earlier run; its files were moved to %s", run_dir, dest)
    return dest


def _save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, agent_state: dict[str, Any], cfg: Config, config_dict: dict[str, Any]) -> None:
    """Atomically save the agent state; loadable with ``torch.load(path, weights_only=True)``."""
    payload = {
        "agent": agent_state,
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "seed": cfg.seed,
        "config": config_dict,
    }
    _save_atomic(path, payload)


# --------------------------------------------------------------------------- Hydra job


def main(cfg: DictConfig) -> float:
    """The Hydra task function behind ``run.py``.

    A single run exits non-zero on failure: code 2 and one line for a bad config, 1 for a
    failed run. In a multirun a failed job never stops the others: it is recorded in its
    ``summary.json``, returns NaN, and the sweep callback reports every failure and
    exits non-zero once all jobs have ended.
    """
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    group = Path(hc.sweep.dir).name if multirun else run_dir.name
    config_dict = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    try:
        conf = validate(cfg)
    except ConfigError as err:
        write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": str(err), "config": config_dict})
        if multirun:
            log.error("pglab: config error: %s", err)
            return math.nan
        print(f"pglab: config error: {err}", file=sys.stderr)
        sys.exit(2)
    bar = sys.stderr.isatty() and not multirun
    try:
        final = run(conf, run_dir, config_dict=config_dict, group=group, progress_bar=bar)
        if not multirun:
            print(f"final eval return ({conf.eval.final_episodes} episodes): {final:.2f}  [{run_dir}]")
            for path in offline_wandb_dirs(run_dir):
                print(f"W&B run saved offline; sync it with:  wandb sync {path}")
        return final
    except (ConfigError, NonFiniteError) as err:
        kind = "config error" if isinstance(err, ConfigError) else "run failed"
        if multirun:
            log.error("pglab: %s: %s", kind, err)
            return math.nan
        print(f"pglab: {kind}: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
    except Exception:
        if multirun:
            log.exception("pglab: job failed (recorded in %s)", run_dir / "summary.json")
            return math.nan
        raise
