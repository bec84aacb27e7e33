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
  They are updated once per rollout with its ``n_steps·N`` observations and returns
  (VecNormalize: every step), so a rollout sees fixed statistics and its steps run
  without them.
* The hot path (:meth:`A2C.collect`) is one policy forward, one env step and a few copies
  into preallocated device storage per step; the critic runs once over the whole
  rollout in :meth:`A2C.loss`; metrics leave the device once per update.
* A reference policy (:meth:`A2C.set_reference`, the SFT model): ``train/kl`` and, with
  ``kl_coef`` β, rewards penalised by β·(log π − log π_ref) before GAE. On token sequences
  the policy and critic are causal transformers, sampled through a key-value cache and
  scored one pass per episode piece of the rollout (:func:`~pglab.algos.common.rollout_terms`).
* Policy and critic are separate MLPs, or share their hidden layers
  (``shared_network``); orthogonal initialisation; RMSprop or Adam; one global
  gradient-norm clip; optional linear learning-rate decay.

Shapes: T = ``n_steps``, N = ``env.num_envs``, D = observation size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from pglab.algos.common import (
    MemoryNeed,
    ObsNormalizer,
    OnUpdate,
    RunningMeanStd,
    Update,
    activation_bytes,
    apply_update,
    check_obs_normalization,
    compile_networks,
    gae,
    grad_norm_and_clip,
    inject_nan,
    network_bytes,
    obs_dtype,
    parameter_count,
    rollout_terms,
    value_bytes,
)
from pglab.algos.reference import KLReference, check_kl_config
from pglab.config import A2CConfig, OptimizerName
from pglab.nets import make_policy, make_value

if TYPE_CHECKING:
    from pglab.config import Config
    from pglab.envs import EnvSpec, VectorEnv


class A2C(KLReference):
    """A2C agent; see the module docstring.

    Args:
        cfg: the algorithm config.
        observation_space: a single env's observation space (Box).
        action_space: a single env's action space (Discrete or 1-D Box).
        device: where networks and rollouts live.
        max_episode_steps: unused (A2C needs no time limit); accepted like every algorithm.
        env: unused (the env arrives in :meth:`learn`); accepted like every algorithm.
    """

    supports_compile: ClassVar[bool] = True
    group_size: int | None = None  # every env starts its own episodes

    def __init__(
        self,
        cfg: A2CConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None = None,
        env: VectorEnv | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.policy = make_policy(
            observation_space, action_space, cfg.hidden_sizes, cfg.activation, cfg.log_std_init, cfg.transformer
        )
        body = self.policy.body if cfg.shared_network else None
        self.value = (
            make_value(observation_space, cfg.hidden_sizes, cfg.activation, cfg.transformer, body=body)
            if self.has_critic(cfg)
            else None
        )
        self._sampler = self.policy.sampler()  # rollouts' actions (a transformer's keeps a key-value cache)
        self._success_reported = False  # the env reports each episode's success
        self._ep_kl: torch.Tensor | None = None  # per env: KL to the reference so far in its episode
        self.obs_norm = ObsNormalizer(observation_space.shape, cfg.clip_obs, device) if cfg.normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        # one module holding everything: parameters() counts a shared body once
        critic = {} if self.value is None else {"value": self.value}
        self.nets = nn.ModuleDict({"policy": self.policy, **critic}).to(device)
        if self.ret_rms is not None:
            self.ret_rms.to(device)
        self.optimizer = self.make_optimizer()
        self.params = list(self.nets.parameters())
        self.env_steps = 0
        self.nan_at_step: int | None = None  # fault injection, see pglab.config.DebugConfig
        self._returns: torch.Tensor | None = None  # running discounted return, for reward scaling

    def make_optimizer(self) -> torch.optim.Optimizer:
        """RMSprop (alpha 0.99, as A2C's paper and SB3) or Adam over every network parameter."""
        cfg = self.cfg
        if cfg.optimizer == OptimizerName.rmsprop:
            return torch.optim.RMSprop(
                self.nets.parameters(), lr=cfg.lr, alpha=0.99, eps=cfg.optimizer_eps, foreach=True
            )
        return torch.optim.Adam(self.nets.parameters(), lr=cfg.lr, eps=cfg.optimizer_eps, foreach=True)

    @staticmethod
    def has_critic(cfg: A2CConfig) -> bool:
        """A2C always learns V(s); a subclass may estimate advantages without one."""
        return True

    @staticmethod
    def check_config(cfg: Config, env: EnvSpec) -> None:
        """Cross-key constraints, checked before the run starts."""
        check_kl_config(cfg)
        check_obs_normalization(cfg.algo.normalize_obs, cfg, env)

    @staticmethod
    def memory_need(cfg: Config, env: EnvSpec, observation_space: gym.Space, action_space: gym.Space) -> MemoryNeed:
        """:meth:`buffers` (``[n_steps, N]``), the networks with the optimiser's state, and the
        hidden outputs of the update over the whole rollout (policy and critic; once if shared)."""
        a = cfg.algo
        T, n = a.n_steps, cfg.env.num_envs
        # obs, final_obs, actions; rewards, episode_return (float32), episode_length (int64),
        # terminated, dones, success (bool)
        per_step = 2 * value_bytes(observation_space) + value_bytes(action_space) + 4 + 4 + 8 + 3

        def nets() -> nn.Module:
            policy = make_policy(observation_space, action_space, a.hidden_sizes, a.activation, 0.0, a.transformer)
            body = policy.body if a.shared_network else None
            value = make_value(observation_space, a.hidden_sizes, a.activation, a.transformer, body=body)
            return nn.ModuleDict({"policy": policy, "value": value})  # a shared body counted once

        return MemoryNeed(
            rollout=T * n * per_step,
            networks=network_bytes(parameter_count(nets), a.optimizer.value),
            activations=activation_bytes(observation_space, a.hidden_sizes, T * n, 1 if a.shared_network else 2),
            rollout_keys=("env.num_envs", "algo.n_steps"),
            detail=f"{T:,} steps × {n:,} envs × {per_step:,} bytes",
        )

    # ------------------------------------------------------------------ normalisation

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them (:class:`~pglab.algos.common.ObsNormalizer`:
        running statistics, fixed during a rollout, updated after it); as they are when off."""
        return obs if self.obs_norm is None else self.obs_norm(obs)

    def update_obs_stats(self, obs: torch.Tensor) -> None:
        """Fold raw observations ``[B, D]`` into the running statistics."""
        if self.obs_norm is not None:
            self.obs_norm.update(obs)

    def scale_rewards(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` rewards divided by the running std of the discounted return (identity when off).

        SB3's VecNormalize semantics, a rollout at a time: each env's discounted return
        runs across rollouts and restarts after an episode end; the statistics take in
        the rollout's ``T·N`` returns, then scale its rewards.
        """
        if self.ret_rms is None:
            return rewards
        if self._returns is None:
            self._returns = torch.zeros(rewards.shape[1], dtype=torch.float64, device=rewards.device)
        returns = rewards.double()  # overwritten in place, row by row, with the running returns
        running = self._returns
        for t in range(rewards.shape[0]):
            torch.add(returns[t], running, alpha=self.cfg.gamma, out=returns[t])
            running = returns[t].masked_fill(dones[t], 0.0)
        self._returns = running
        self.ret_rms.update(returns.flatten())
        scaled = rewards * torch.rsqrt(self.ret_rms.var + 1e-8).float()
        return scaled.clamp_(-self.cfg.clip_reward, self.cfg.clip_reward)

    # ------------------------------------------------------------------ acting

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw ``obs[B, D]`` (normalised with the current statistics)."""
        return self.policy.act(self.normalize(obs), deterministic)

    # ------------------------------------------------------------------ data

    def buffers(self, env: VectorEnv, num_envs: int | None = None) -> dict[str, torch.Tensor]:
        """Preallocated rollout storage ``[n_steps, N, ...]``, on the device (N: ``num_envs``,
        default the env's)."""
        T, n, dev = self.cfg.n_steps, num_envs or env.num_envs, self.device
        act_space = env.single_action_space
        if isinstance(act_space, gym.spaces.Discrete):
            actions = torch.zeros(T, n, dtype=torch.long, device=dev)
        else:
            actions = torch.zeros(T, n, *act_space.shape, device=dev)
        obs_shape = env.single_observation_space.shape
        dtype = obs_dtype(env.single_observation_space)
        return {
            "obs": torch.zeros(T, n, *obs_shape, dtype=dtype, device=dev),  # normalised, as the policy saw them
            "final_obs": torch.zeros(T, n, *obs_shape, dtype=dtype, device=dev),  # raw: the state each step reached
            "actions": actions,
            "rewards": torch.zeros(T, n, device=dev),  # raw
            "terminated": torch.zeros(T, n, dtype=torch.bool, device=dev),
            "dones": torch.zeros(T, n, dtype=torch.bool, device=dev),
            "episode_return": torch.zeros(T, n, device=dev),
            "episode_length": torch.zeros(T, n, dtype=torch.long, device=dev),
            "success": torch.zeros(T, n, dtype=torch.bool, device=dev),
        }

    @torch.inference_mode()
    def collect(self, env: VectorEnv, obs: torch.Tensor, buf: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fill ``buf`` with ``n_steps`` steps of every env, starting from raw ``obs``; returns
        the raw observation to continue from.

        The hot path: per step one policy forward, one env step and a few copies into
        preallocated storage, all on the device; no critic (values are computed for the
        whole rollout at once in :meth:`loss`), no host round trip.
        """
        sample = self._sampler
        sample.reset()  # the policy changed since the last rollout: a key-value cache is stale
        for t in range(self.cfg.n_steps):
            nobs = self.normalize(obs)
            action = sample(nobs)
            obs, reward, terminated, truncated, info = env.step(action)
            buf["obs"][t] = nobs
            buf["actions"][t] = action
            buf["rewards"][t] = reward
            buf["terminated"][t] = terminated
            torch.logical_or(terminated, truncated, out=buf["dones"][t])
            buf["final_obs"][t] = info["final_obs"]
            buf["episode_return"][t] = info["episode_return"]
            buf["episode_length"][t] = info["episode_length"]
            if "success" in info:
                self._success_reported = True
                buf["success"][t] = info["success"]
        return obs

    @staticmethod
    def finished_episodes(buf: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``[E]`` and lengths ``[E]`` of the episodes that ended in the rollout."""
        done = buf["dones"]
        return buf["episode_return"][done], buf["episode_length"][done]

    def rollout_values(self, buf: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V(s_t), V(s'_t))``, each ``[T, N]``: the critic on the observations (with its
        gradient, for the critic's loss) and on the states the steps reached (a target,
        without).

        ``s'_t`` is the final observation where an episode ended (a time-limit cut
        bootstraps from it; a terminal one is masked in :func:`gae`) and the next
        observation otherwise, also after the rollout's last step. Where no episode
        ended, ``s'_t`` is ``s_{t+1}`` (the statistics are fixed during a rollout), so
        ``V(s'_t)`` is ``V(s_{t+1})``, already computed: the critic runs again only on the
        rollout's last states and on the few states where episodes ended.
        """
        assert self.value is not None
        values = self.value.rollout_values(buf["obs"], buf["actions"], buf["dones"])  # a transformer: per piece
        with torch.no_grad():
            next_values = torch.empty_like(values)
            next_values[:-1] = values[1:]
            next_values[-1] = self.value(self.normalize(buf["final_obs"][-1]))
            ended = torch.nonzero(buf["dones"][:-1].flatten()).flatten()  # one device sync per update
            if ended.numel():
                final = buf["final_obs"][:-1].flatten(0, 1)[ended]
                next_values[:-1].view(-1)[ended] = self.value(self.normalize(final))
        return values, next_values

    # ------------------------------------------------------------------ learning

    def loss(self, buf: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss of a collected rollout and its parts.

        With a reference policy, ``train/kl`` is the mean over the episodes that ended in
        the rollout of their summed exact per-step KL(π ‖ π_ref), and with ``kl_coef = β > 0``
        every reward loses ``β · (log π(a|s) − log π_ref(a|s))`` before GAE (see
        :meth:`pglab.algos.reinforce.Reinforce.loss`).

        Call once per rollout: it updates the reward-scaling statistics.
        """
        cfg = self.cfg
        T, n = buf["rewards"].shape
        terms = rollout_terms(self.policy, buf["obs"], buf["actions"], buf["dones"], self.reference)
        values, next_values = self.rollout_values(buf)
        rewards = buf["rewards"]
        parts: dict[str, torch.Tensor] = {}
        if terms.kl is not None and terms.logp_ref is not None:
            parts["train/kl"] = self.episode_kl(terms.kl.view(T, n), buf["dones"])
            if cfg.kl_coef > 0:
                rewards = rewards - cfg.kl_coef * (terms.logp.detach() - terms.logp_ref).view(T, n)
        rewards = self.scale_rewards(rewards, buf["dones"])
        adv = gae(rewards, values.detach(), next_values, buf["terminated"], buf["dones"], cfg.gamma, cfg.gae_lambda)
        targets = (adv + values.detach()).flatten()
        adv = adv.flatten()
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        entropy = terms.entropy.mean()
        policy_loss = -(terms.logp * adv).mean()
        value_loss = F.mse_loss(values.flatten(), targets)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": -entropy, **parts}

    def episode_kl(self, kl: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Mean summed KL of the episodes that ended in the rollout (NaN where none did).

        Args:
            kl: ``[T, N]`` exact per-step KL to the reference.
            dones: ``[T, N]`` episode ends; each env's sum runs on across rollouts.
        """
        if self._ep_kl is None or self._ep_kl.shape[0] != kl.shape[1]:
            self._ep_kl = torch.zeros(kl.shape[1], device=kl.device)
        finished = torch.zeros_like(kl)
        running = self._ep_kl
        for t in range(kl.shape[0]):
            running = running + kl[t]
            finished[t] = running
            running = running.masked_fill(dones[t], 0.0)
        self._ep_kl = running
        count = dones.sum()
        return torch.where(count > 0, (finished * dones).sum() / count.clamp(min=1), torch.nan)

    def update(self, buf: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on the rollout in ``buf``; then the observation statistics take
        in the rollout's observations. Returns the update's metrics."""
        loss, parts = self.loss(buf)
        loss = inject_nan(loss, self.env_steps, self.nan_at_step)
        metrics = apply_update(
            self.optimizer,
            loss,
            parts,
            lambda: grad_norm_and_clip(self.params, self.cfg.max_grad_norm),
            self.params,
        )
        with torch.no_grad():
            self.update_obs_stats(buf["final_obs"].flatten(0, 1))
        return metrics

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """Train until ``env_steps >= total_steps`` or ``on_update`` returns False."""
        buf = self.buffers(env)
        obs, _ = env.reset()
        with torch.no_grad():
            self.update_obs_stats(obs)
        batch = self.cfg.n_steps * env.num_envs
        while self.env_steps < total_steps:
            self.anneal_lr(total_steps)
            obs = self.collect(env, obs, buf)
            metrics = self.update(buf)
            self.env_steps += batch
            returns, lengths = self.finished_episodes(buf)
            if self._success_reported and bool(buf["dones"].any()):
                metrics["train/success_rate"] = float(buf["success"][buf["dones"]].float().mean())
            if math.isnan(metrics.get("train/kl", 0.0)):
                del metrics["train/kl"]  # no episode ended in this rollout
            if not on_update(Update(self.env_steps, metrics, returns, lengths)):
                break

    def anneal_lr(self, total_steps: int) -> None:
        """With ``anneal_lr``: the learning rate decays linearly to 0 over the budget, set
        from the step counter before each update, so that a resumed run continues the decay."""
        if self.cfg.anneal_lr:
            frac = 1.0 - self.env_steps / max(total_steps, 1)
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * frac

    def compile(self) -> None:
        """``torch.compile`` the networks in place (``hardware.compile``)."""
        compile_networks(self.policy, self.value)

    def export(self, run_dir: Path) -> None:
        """Nothing beyond pglab's own checkpoint."""

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Networks, normaliser statistics, optimiser and step counter."""
        state: dict[str, Any] = {
            "nets": self.nets.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
        }
        if self.obs_norm is not None:
            state["obs_rms"] = self.obs_norm.state_dict()
        if self.ret_rms is not None:
            state["ret_rms"] = self.ret_rms.state_dict()
        return state | self.reference_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_reference(state)
        self.nets.load_state_dict(state["nets"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        self.env_steps = int(state["env_steps"])
