"""Advantage actor-critic (A2C: synchronous A3C, Mnih et al. 2016) with GAE(λ).

Each update: every one of the N envs takes ``n_steps`` steps with the current policy
(episodes continue across updates), advantages come from GAE over the ``[n_steps, N]``
rollout, and one gradient step minimises

    loss = -mean(log π(a|s) · A) + vf_coef · mean((V(s) - (A + V_old(s)))²) - ent_coef · H[π]

* Bootstrapping: the state a step reached is the final observation where an episode
  ended (``info["final_obs"]``) and the next observation otherwise. A terminated episode
  never bootstraps; a time-limit cut bootstraps from V(final observation); the rollout's
  last step bootstraps from V(next observation).
* Optional running observation normalisation and reward scaling (SB3's VecNormalize
  semantics: rewards divided by the running std of the discounted return). Their
  statistics are part of the agent's state (checkpoints) and evaluation uses them frozen.
* Policy and critic are separate MLPs, or share their hidden layers
  (``shared_network``); orthogonal initialisation; RMSprop or Adam; one global
  gradient-norm clip; optional linear learning-rate decay.

Shapes: T = ``n_steps``, N = ``env.num_envs``, D = observation size.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from pglab.algos.common import (
    OnUpdate,
    RunningMeanStd,
    Update,
    check_finite,
    gae,
    grad_norm_and_clip,
    inject_nan,
)
from pglab.config import A2CConfig, OptimizerName
from pglab.nets import ValueNet, make_policy, obs_dim


class A2C:
    """A2C agent; see the module docstring.

    Args:
        cfg: the algorithm config.
        observation_space: a single env's observation space (Box).
        action_space: a single env's action space (Discrete or 1-D Box).
        device: where networks and rollouts live.
        max_episode_steps: unused (A2C needs no time limit); accepted like every algorithm.
        env: unused (the env arrives in :meth:`learn`); accepted like every algorithm.
    """

    def __init__(
        self,
        cfg: A2CConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None = None,
        env: gym.vector.VectorEnv | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.policy = make_policy(observation_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init)
        body = self.policy.body if cfg.shared_network else None
        self.value = ValueNet(obs_dim(observation_space), cfg.hidden_sizes, cfg.activation, body=body)
        self.obs_rms = RunningMeanStd(observation_space.shape) if cfg.normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        # one module holding everything: parameters() counts a shared body once
        self.nets = nn.ModuleDict({"policy": self.policy, "value": self.value}).to(device)
        if self.obs_rms is not None:
            self.obs_rms.to(device)
        if self.ret_rms is not None:
            self.ret_rms.to(device)
        if cfg.optimizer == OptimizerName.rmsprop:
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
                self.nets.parameters(), lr=cfg.lr, alpha=0.99, eps=cfg.optimizer_eps
            )
        else:
            self.optimizer = torch.optim.Adam(self.nets.parameters(), lr=cfg.lr, eps=cfg.optimizer_eps)
        self.env_steps = 0
        self.nan_at_step: int | None = None  # fault injection, see pglab.config.DebugConfig
        self._returns: torch.Tensor | None = None  # running discounted return, for reward scaling

    # ------------------------------------------------------------------ normalisation

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them (running statistics, frozen here)."""
        if self.obs_rms is None:
            return obs
        std = torch.sqrt(self.obs_rms.var + 1e-8)
        out = ((obs.double() - self.obs_rms.mean) / std).clamp(-self.cfg.clip_obs, self.cfg.clip_obs)
        return out.to(obs.dtype)

    def scale_rewards(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Divide by the running std of the discounted return (updated here); identity when off."""
        if self.ret_rms is None:
            return reward
        if self._returns is None:
            self._returns = torch.zeros_like(reward, dtype=torch.float64)
        self._returns = self._returns * self.cfg.gamma + reward.double()
        self.ret_rms.update(self._returns)
        self._returns = torch.where(done, torch.zeros_like(self._returns), self._returns)
        scaled = reward.double() / torch.sqrt(self.ret_rms.var + 1e-8)
        return scaled.clamp(-self.cfg.clip_reward, self.cfg.clip_reward).to(reward.dtype)

    # ------------------------------------------------------------------ acting

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw ``obs[B, D]`` (normalised with the frozen statistics)."""
        return self.policy.act(self.normalize(obs), deterministic)

    # ------------------------------------------------------------------ data

    def buffers(self, env: gym.vector.VectorEnv) -> dict[str, torch.Tensor]:
        """Preallocated rollout storage ``[n_steps, N, ...]``."""
        T, n, dev = self.cfg.n_steps, env.num_envs, self.device
        act_space = env.single_action_space
        if isinstance(act_space, gym.spaces.Discrete):
            actions = torch.zeros(T, n, dtype=torch.long, device=dev)
        else:
            actions = torch.zeros(T, n, *act_space.shape, device=dev)
        zeros = lambda dtype=torch.float32: torch.zeros(T, n, dtype=dtype, device=dev)  # noqa: E731
        return {
            "obs": torch.zeros(T, n, *env.single_observation_space.shape, device=dev),
            "actions": actions,
            "rewards": zeros(),
            "values": zeros(),
            "next_values": zeros(),
            "terminated": zeros(torch.bool),
            "dones": zeros(torch.bool),
        }

    @torch.inference_mode()
    def collect(
        self, env: gym.vector.VectorEnv, obs: torch.Tensor, buf: dict[str, torch.Tensor], finished: list[torch.Tensor]
    ) -> torch.Tensor:
        """Fill ``buf`` with ``n_steps`` steps of every env, starting from raw ``obs``.

        Appends ``(returns, lengths)`` of finished episodes to ``finished``; returns the
        raw observation to continue from.
        """
        for t in range(self.cfg.n_steps):
            nobs = self.normalize(obs)
            action = self.policy.act(nobs)
            value = self.value(nobs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            if self.obs_rms is not None:
                self.obs_rms.update(next_obs)  # each observation once, as VecNormalize does
            done = terminated | truncated
            buf["obs"][t] = nobs
            buf["actions"][t] = action
            buf["values"][t] = value
            buf["rewards"][t] = self.scale_rewards(reward, done)
            buf["terminated"][t] = terminated
            buf["dones"][t] = done
            if t > 0:
                buf["next_values"][t - 1] = torch.where(buf["dones"][t - 1], buf["next_values"][t - 1], value)
            if bool(done.any()):
                # V of the state this step reached; rows without an episode end are
                # overwritten with V(next obs) at the next step (or below, at the end)
                buf["next_values"][t] = self.value(self.normalize(info["final_obs"]))
                finished.append(torch.stack([info["episode_return"][done], info["episode_length"][done].float()]))
            obs = next_obs
        last = self.cfg.n_steps - 1
        buf["next_values"][last] = torch.where(
            buf["dones"][last], buf["next_values"][last], self.value(self.normalize(obs))
        )
        return obs

    # ------------------------------------------------------------------ learning

    def loss(self, buf: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss of a collected rollout and its parts."""
        cfg = self.cfg
        adv = gae(
            buf["rewards"],
            buf["values"],
            buf["next_values"],
            buf["terminated"],
            buf["dones"],
            cfg.gamma,
            cfg.gae_lambda,
        )
        targets = (adv + buf["values"]).flatten()
        adv = adv.flatten()
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        obs = buf["obs"].flatten(0, 1)
        actions = buf["actions"].flatten(0, 1)
        dist = self.policy.distribution(obs)
        logp = dist.log_prob(actions)
        entropy = dist.entropy().mean()
        policy_loss = -(logp * adv).mean()
        value_loss = F.mse_loss(self.value(obs), targets)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": -entropy}

    def update(self, buf: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on the rollout in ``buf``; returns the update's metrics."""
        loss, parts = self.loss(buf)
        loss = inject_nan(loss, self.env_steps, self.nan_at_step)
        check_finite("loss", loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = grad_norm_and_clip(self.nets.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        for p in self.nets.parameters():
            check_finite("parameters", p)
        metrics = {k: v.item() for k, v in parts.items()}
        metrics["train/grad_norm"] = grad_norm
        return metrics

    def learn(self, env: gym.vector.VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """Train until ``env_steps >= total_steps`` or ``on_update`` returns False."""
        buf = self.buffers(env)
        obs, _ = env.reset()
        if self.obs_rms is not None:
            with torch.inference_mode():
                self.obs_rms.update(obs)
        batch = self.cfg.n_steps * env.num_envs
        while self.env_steps < total_steps:
            if self.cfg.anneal_lr:  # from the step counter, so a resumed run continues the decay
                frac = 1.0 - self.env_steps / max(total_steps, 1)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.cfg.lr * frac
            finished: list[torch.Tensor] = []
            obs = self.collect(env, obs, buf, finished)
            metrics = self.update(buf)
            self.env_steps += batch
            episodes = torch.cat(finished, dim=1) if finished else torch.zeros(2, 0)
            update = Update(self.env_steps, metrics, episodes[0].clone(), episodes[1].long().clone())
            if not on_update(update):
                break

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Networks, normaliser statistics, optimiser and step counter."""
        state: dict[str, Any] = {
            "nets": self.nets.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
        }
        if self.obs_rms is not None:
            state["obs_rms"] = self.obs_rms.state_dict()
        if self.ret_rms is not None:
            state["ret_rms"] = self.ret_rms.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nets.load_state_dict(state["nets"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        self.env_steps = int(state["env_steps"])
