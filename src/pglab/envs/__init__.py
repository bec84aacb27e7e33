"""Environments as batched torch tensors.

Algorithms consume a gymnasium 1.x ``VectorEnv`` whose arrays are torch tensors on the
configured device. :func:`make_vec_env` builds one from an env config; today every env
is a gymnasium registration run through ``gymnasium.make_vec`` and adapted by
:class:`~pglab.envs.torch_vec.TorchVectorEnv`.

The step contract every pglab vector env keeps (N = number of envs):

* ``reset(seed=None) -> (obs[N, *obs_shape] float32, info)``
* ``step(actions[N, ...]) -> (obs, reward[N] float32, terminated[N] bool, truncated[N] bool, info)``
* Sub-environments reset themselves in the same step they end (gymnasium's ``SAME_STEP``
  autoreset): ``obs`` already holds the first observation of the next episode, and
  ``info["final_obs"][i]`` holds the observation the step actually reached for every i
  (the terminal/truncation observation where an episode ended, ``obs[i]`` elsewhere) —
  what a critic bootstraps from.
* ``info["episode_return"][i]`` and ``info["episode_length"][i]`` hold the undiscounted
  return and length of the episode that env i finished in this step (0 where none did).
"""

from __future__ import annotations

import gymnasium as gym
import torch

from pglab.config import ConfigError, EnvConfig
from pglab.envs.torch_vec import TorchVectorEnv

__all__ = ["TorchVectorEnv", "check_env_config", "make_vec_env"]


def check_env_config(cfg: EnvConfig) -> None:
    """Fail early, with one line, if the env config cannot be built."""
    try:
        gym.spec(cfg.id)
    except gym.error.Error:
        known = sorted(k for k in gym.registry if "/" not in k)[:12]
        raise ConfigError(
            f"env.id={cfg.id!r} is not a registered gymnasium environment (e.g. {', '.join(known)}, ...)"
        ) from None


def make_vec_env(cfg: EnvConfig, num_envs: int, seed: int, device: torch.device) -> TorchVectorEnv:
    """Build ``num_envs`` copies of the configured env as one torch vector env.

    Sub-env i is seeded ``seed + i`` on the first reset; later resets continue its RNG.
    The action space is seeded too, so ``action_space.sample()`` is reproducible.

    Args:
        cfg: the env config.
        num_envs: N, the batch size of every step.
        seed: base seed.
        device: where observations, rewards and flags are put.
    """
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    venv = gym.make_vec(
        cfg.id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **kwargs,
    )
    env = TorchVectorEnv(venv, device=device, seed=seed)
    return env


def max_episode_steps(cfg: EnvConfig) -> int | None:
    """The time limit episodes of this env are cut at (None: no limit)."""
    if cfg.max_episode_steps is not None:
        return cfg.max_episode_steps
    return gym.spec(cfg.id).max_episode_steps
