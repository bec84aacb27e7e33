"""Building a run's vector envs from its :class:`~pglab.envs.registry.EnvSpec`."""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import torch

from pglab.envs.batched import BatchedEnv
from pglab.envs.capabilities import HasDemonstrations, SharesStarts
from pglab.envs.registry import EnvSpec
from pglab.envs.rng import env_seeds
from pglab.envs.torch_vec import TorchVectorEnv

VectorEnv = BatchedEnv | TorchVectorEnv  # what every pglab algorithm trains on (the torch step contract)


def make_vec_env(
    spec: EnvSpec,
    num_envs: int,
    seed: int,
    device: torch.device,
    stream: str = "train",
) -> VectorEnv:
    """Build ``num_envs`` copies of the env as one torch vector env.

    Sub-env i gets ``env_seeds(seed, num_envs, stream)[i]`` on the first reset; later
    resets continue its RNG. The action space is seeded too.

    Args:
        spec: the resolved env (:func:`~pglab.envs.registry.resolve_env`).
        num_envs: N, the batch size of every step.
        seed: the run's seed.
        device: where observations, rewards and flags are put.
        stream: ``train`` or ``eval`` (evaluation envs get seeds of their own).
    """
    return _vec_env(spec, env_seeds(seed, num_envs, stream), device)


def make_seed_stack_env(
    spec: EnvSpec, num_envs: int, run_seeds: list[int], device: torch.device, stream: str = "train"
) -> VectorEnv:
    """The envs of several runs side by side: ``num_envs`` per run seed, run s's in columns
    ``[s·num_envs, (s+1)·num_envs)`` with the seeds :func:`make_vec_env` gives them, so each
    run's envs step as they step in its run alone (a seed stack, :mod:`pglab.algos.seed_stack`)."""
    seeds = [x for seed in run_seeds for x in env_seeds(seed, num_envs, stream)]
    return _vec_env(spec, seeds, device)


def _vec_env(spec: EnvSpec, seeds: list[int], device: torch.device) -> VectorEnv:
    """One vector env of ``len(seeds)`` sub-envs, sub-env i seeded ``seeds[i]``."""
    num_envs = len(seeds)
    if spec.native is not None:
        env = gym.make_vec(
            spec.id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            device=device,
            seeds=seeds,
            **spec.kwargs,
        )
        assert isinstance(env, BatchedEnv), type(env)
        return env
    venv = gym.make_vec(
        spec.id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **spec.kwargs,
    )
    return TorchVectorEnv(venv, device=device, seeds=seeds)


def share_starts(spec: EnvSpec, env: VectorEnv, group_size: int) -> None:
    """Envs ``[g·k, (g+1)·k)`` of ``env`` start every episode from the same state (k samples
    per prompt); the preflight has checked that the env can (``capabilities.shared_starts``)."""
    if not spec.capabilities.shared_starts:
        raise ValueError(f"{spec.id} cannot start several envs from the same state")
    cast(SharesStarts, env).set_group_size(group_size)


def demonstrations(spec: EnvSpec, env: VectorEnv) -> HasDemonstrations:
    """The env's expert (``capabilities.demonstrations``), for an SFT stage."""
    if not spec.capabilities.demonstrations:
        raise ValueError(f"{spec.id} has no expert demonstrations")
    return cast(HasDemonstrations, env)
