"""Adapter from a numpy gymnasium ``VectorEnv`` to pglab's torch step contract."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch


class TorchVectorEnv(gym.vector.VectorWrapper):
    """A numpy vector env (``SAME_STEP`` autoreset) seen as torch tensors.

    Converts observations, rewards and flags to tensors on ``device``; takes actions as
    tensors, clipping continuous ones to the action space's bounds (the policy's own
    sample stays unclipped, so its log-probability is exact); gathers the true final
    observations into one dense ``info["final_obs"]`` tensor; and keeps per-env episode
    statistics, so every algorithm gets finished-episode returns the same way.

    Args:
        env: a gymnasium vector env created with ``autoreset_mode=SAME_STEP``.
        device: where the tensors go.
        seeds: the seed of each sub-env for the first :meth:`reset` (an int s means
            s, s+1, ... as in gymnasium); the first one also seeds the action space.
    """

    supports_traces: ClassVar[bool] = False  # gymnasium's envs do not write their episodes as text

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device, seeds: int | list[int] | None = None) -> None:
        super().__init__(env)
        if env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("TorchVectorEnv needs a vector env with autoreset_mode=SAME_STEP")
        if not isinstance(env.single_observation_space, gym.spaces.Box):
            raise ValueError(f"observation space {env.single_observation_space} is not a Box")
        self.device = torch.device(device)
        self._seed = seeds
        self._seeded = False
        space = env.single_action_space
        self._discrete = isinstance(space, gym.spaces.Discrete)
        if not self._discrete and not isinstance(space, gym.spaces.Box):
            raise ValueError(f"action space {space} is neither Discrete nor Box")
        if not self._discrete:
            self._low = np.asarray(space.low, dtype=np.float32)
            self._high = np.asarray(space.high, dtype=np.float32)
        if seeds is not None:
            first = seeds if isinstance(seeds, int) else seeds[0]
            self.action_space.seed(first)
            self.single_action_space.seed(first)
        n = env.num_envs
        self._ep_return = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._ep_length = torch.zeros(n, dtype=torch.int64, device=self.device)

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset all sub-envs. The first call uses the construction seed unless given one."""
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        obs, info = self.env.reset(seed=seed, options=options)
        self._ep_return.zero_()
        self._ep_length.zero_()
        return self._obs(obs), info

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step every sub-env once; see the contract in :mod:`pglab.envs`."""
        act = actions.detach().cpu().numpy()
        if self._discrete:
            act = act.astype(np.int64) + int(self.env.single_action_space.start)
        else:
            act = np.clip(act, self._low, self._high)
        obs, reward, terminated, truncated, info = self.env.step(act)

        obs_t = self._obs(obs)
        reward_t = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        term_t = torch.as_tensor(terminated, dtype=torch.bool, device=self.device)
        trunc_t = torch.as_tensor(truncated, dtype=torch.bool, device=self.device)

        final_obs = obs_t
        if "_final_obs" in info:
            ended = np.flatnonzero(info["_final_obs"])
            final_obs = obs_t.clone()
            final_obs[torch.as_tensor(ended, device=self.device)] = self._obs(
                np.stack([info["final_obs"][i] for i in ended])
            )
        done = term_t | trunc_t
        self._ep_return += reward_t.double()
        self._ep_length += 1
        ep_return = torch.where(done, self._ep_return, torch.zeros_like(self._ep_return))
        ep_length = torch.where(done, self._ep_length, torch.zeros_like(self._ep_length))
        self._ep_return.masked_fill_(done, 0.0)
        self._ep_length.masked_fill_(done, 0)
        out_info = {
            "final_obs": final_obs,
            "episode_return": ep_return.float(),
            "episode_length": ep_length,
        }
        return obs_t, reward_t, term_t, trunc_t, out_info
