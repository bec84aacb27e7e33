"""Environments as batched torch tensors.

Algorithms consume a gymnasium 1.x ``VectorEnv`` whose arrays are torch tensors on the
configured device. :func:`make_vec_env` builds one from an env config:

* pglab's native envs (``pglab/Maze-v0``, ``pglab/Dialogue-v0``, and
  ``pglab/MountainCar-v0``, ``pglab/MountainCarContinuous-v0``: gymnasium's physics
  step for step) are written batched in torch (:mod:`pglab.envs.batched`) and registered
  with gymnasium with both an ``entry_point`` (one numpy env, for ``gymnasium.make``,
  ``check_env`` and SB3) and a ``vector_entry_point`` (the batched env, which
  ``gymnasium.make_vec`` builds directly);
* ``env.backend`` (``auto``, the default) picks the torch twin of a gymnasium id that has
  one (``MountainCar-v0`` runs as ``pglab/MountainCar-v0``); ``env.backend=gymnasium``
  keeps gymnasium's own env;
* any other gymnasium env runs through ``gymnasium.make_vec`` and is adapted by
  :class:`~pglab.envs.torch_vec.TorchVectorEnv`.

Outside pglab, ``gymnasium.make("pglab.envs:pglab/Maze-v0")`` imports this module (which
registers the envs) and makes one.

The step contract every pglab vector env keeps (N = number of envs):

* ``reset(seed=None) -> (obs[N, *obs_shape] float32, info)``
* ``step(actions[N, ...]) -> (obs, reward[N] float32, terminated[N] bool, truncated[N] bool, info)``;
  ``truncated`` is set when the time limit is reached, also if the episode terminated in
  the same step (gymnasium's ``TimeLimit``): a terminated step never bootstraps.
* Sub-environments reset themselves in the same step they end (gymnasium's ``SAME_STEP``
  autoreset): ``obs`` already holds the first observation of the next episode, and
  ``info["final_obs"][i]`` holds the observation the step actually reached for every i
  (the terminal/truncation observation where an episode ended, ``obs[i]`` elsewhere) —
  what a critic bootstraps from.
* ``info["episode_return"][i]`` and ``info["episode_length"][i]`` hold the undiscounted
  return and length of the episode that env i finished in this step (0 where none did).
* Native envs add ``info["success"]`` (bool ``[N]``), ``info["episode_stats"]`` (name →
  ``[N]``, e.g. the maze's ``optimality``), read where an episode ended, and, when
  ``env.trace_envs > 0``, ``info["episode_text"]`` ({env index: text of its episode}).
"""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import torch

from pglab.config import ConfigError, EnvBackend, EnvConfig
from pglab.envs.torch_vec import TorchVectorEnv

__all__ = ["TorchVectorEnv", "backend_id", "check_env_config", "env_seeds", "make_vec_env", "register_envs"]

# id -> (single env, batched env); entry points are strings so that importing this
# package stays cheap and free of import cycles.
NATIVE_ENVS = {
    "pglab/Maze-v0": ("pglab.envs.maze:MazeEnv", "pglab.envs.maze:MazeVectorEnv"),
    "pglab/Dialogue-v0": ("pglab.envs.dialogue:DialogueEnv", "pglab.envs.dialogue:DialogueVectorEnv"),
    "pglab/DialogueLM-v0": ("pglab.envs.dialogue_lm:DialogueLMEnv", "pglab.envs.dialogue_lm:DialogueLMVectorEnv"),
    "pglab/MountainCar-v0": ("pglab.envs.mountaincar:MountainCarEnv", "pglab.envs.mountaincar:MountainCarVectorEnv"),
    "pglab/MountainCarContinuous-v0": (
        "pglab.envs.mountaincar:MountainCarContinuousEnv",
        "pglab.envs.mountaincar:MountainCarContinuousVectorEnv",
    ),
}
# gymnasium ids with a native torch twin, which env.backend=auto|torch runs instead
TORCH_TWINS = {
    "MountainCar-v0": "pglab/MountainCar-v0",
    "MountainCarContinuous-v0": "pglab/MountainCarContinuous-v0",
}


def register_envs() -> None:
    """Register pglab's native envs with gymnasium (idempotent; done on import)."""
    for env_id, (single, batched) in NATIVE_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=single, vector_entry_point=batched)


register_envs()


def native_class(env_id: str) -> type | None:
    """The batched class of a native pglab env id, None for any other env."""
    entry = NATIVE_ENVS.get(env_id)
    if entry is None:
        return None
    module, name = entry[1].split(":")
    return getattr(importlib.import_module(module), name)


def gym_id(env_id: str) -> str:
    """The registered id of ``env_id``; ``"module:Name-v0"`` imports ``module`` first.

    That is gymnasium's convention for envs registered by a user's own package.
    """
    if ":" not in env_id:
        return env_id
    module, name = env_id.split(":", 1)
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"env.id={env_id!r}: cannot import module {module!r}: {err}") from None
    return name


def backend_id(cfg: EnvConfig) -> str:
    """The registered id that ``cfg`` builds, after ``env.backend`` chose an implementation.

    Raises a one-line ConfigError where the chosen backend has no implementation of the env.
    """
    env_id = gym_id(cfg.id)
    backend = EnvBackend(cfg.backend)
    if env_id in NATIVE_ENVS:
        if backend == EnvBackend.gymnasium and env_id not in TORCH_TWINS.values():
            raise ConfigError(
                f"env.backend=gymnasium: {cfg.id} is pglab's own batched env and has no gymnasium "
                "implementation; use env.backend=auto or torch"
            )
        return env_id
    twin = TORCH_TWINS.get(env_id)
    if backend == EnvBackend.torch and twin is None:
        raise ConfigError(
            f"env.backend=torch: {cfg.id} has no torch implementation (there is one for "
            f"{', '.join(TORCH_TWINS)} and pglab's own envs); use env.backend=auto or gymnasium"
        )
    return twin if twin is not None and backend != EnvBackend.gymnasium else env_id


def check_env_config(cfg: EnvConfig) -> None:
    """Fail early, with one line, if the env config cannot be built (unknown id, bad kwargs)."""
    try:
        gym.spec(gym_id(cfg.id))
    except gym.error.Error:
        known = sorted(k for k in gym.registry if "/" not in k)[:12]
        raise ConfigError(
            f"env.id={cfg.id!r} is not a registered gymnasium environment (e.g. {', '.join(known)}, ...)"
        ) from None
    kwargs = cfg.env_kwargs()
    env_id = backend_id(cfg)
    native = native_class(env_id)
    try:
        if native is not None:
            native.check_kwargs(**kwargs)  # checks without building (and generating mazes)
        else:
            gym.make(env_id, **kwargs).close()
    except Exception as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if native is not None and isinstance(err, ValueError):
            raise ConfigError(f"env.{message}") from None  # the env names the parameter
        raise ConfigError(f"env.kwargs={dict(cfg.kwargs)}: {cfg.id} cannot be made with them: {message}") from None


STREAMS = {"train": 0, "eval": 1}


def env_seeds(seed: int, n: int, stream: str) -> list[int]:
    """Seeds of n sub-envs of run seed ``seed``: well mixed, distinct per stream.

    Drawn from ``numpy.random.SeedSequence(seed, spawn_key=(stream,))`` rather than
    ``seed + i``, so runs with neighbouring seeds share no env seeds (with ``seed + i``
    seeds 0 and 1 would share 15 of 16 training envs), and evaluation envs never share
    a seed with training envs.
    """
    seq = np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],))
    return [int(x) for x in seq.generate_state(n, dtype=np.uint32)]


def make_vec_env(
    cfg: EnvConfig, num_envs: int, seed: int, device: torch.device, stream: str = "train"
) -> gym.vector.VectorEnv:
    """Build ``num_envs`` copies of the configured env as one torch vector env.

    Sub-env i gets ``env_seeds(seed, num_envs, stream)[i]`` on the first reset; later
    resets continue its RNG. The action space is seeded too.

    Args:
        cfg: the env config.
        num_envs: N, the batch size of every step.
        seed: the run's seed.
        device: where observations, rewards and flags are put.
        stream: ``train`` or ``eval`` (evaluation envs get seeds of their own).
    """
    kwargs = cfg.env_kwargs()
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    seeds = env_seeds(seed, num_envs, stream)
    env_id = backend_id(cfg)
    if native_class(env_id) is not None:
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            device=device,
            seeds=seeds,
            **kwargs,
        )
    venv = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **kwargs,
    )
    return TorchVectorEnv(venv, device=device, seeds=seeds)


def max_episode_steps(cfg: EnvConfig) -> int | None:
    """The time limit episodes of this env are cut at (None: no limit)."""
    if cfg.max_episode_steps is not None:
        return cfg.max_episode_steps
    env_id = backend_id(cfg)
    native = native_class(env_id)
    if native is not None:
        return native.time_limit(**cfg.env_kwargs())
    return gym.spec(env_id).max_episode_steps
