"""Environments as batched torch tensors.

Algorithms consume a gymnasium 1.x ``VectorEnv`` whose arrays are torch tensors on the
configured device. :func:`resolve_env` turns an env config into an :class:`EnvSpec` once per
run (:mod:`pglab.envs.registry`); :func:`make_vec_env` builds vector envs from it
(:mod:`pglab.envs.make`):

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

from pglab.envs.capabilities import EnvCapabilities
from pglab.envs.make import VectorEnv, demonstrations, make_seed_stack_env, make_vec_env, share_starts
from pglab.envs.registry import EnvSpec, register_envs, resolve_env
from pglab.envs.rng import env_seeds
from pglab.envs.torch_vec import TorchVectorEnv

__all__ = [
    "EnvCapabilities",
    "EnvSpec",
    "TorchVectorEnv",
    "VectorEnv",
    "demonstrations",
    "env_seeds",
    "make_seed_stack_env",
    "make_vec_env",
    "register_envs",
    "resolve_env",
    "share_starts",
]

register_envs()
