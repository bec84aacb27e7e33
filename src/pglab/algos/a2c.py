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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from pglab.algos.a2c_compiled import CompiledA2CSteps, compile_refusal
from pglab.algos.common import (
    MemoryNeed,
    ObsNormalizer,
    OnUpdate,
    RunningMeanStd,
    Update,
    activation_bytes,
    apply_update,
    build_policy,
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
from pglab.algos.reference import KLReference, check_kl_config, k3_penalty
from pglab.config import A2CConfig, KLEstimator, OptimizerName
from pglab.envs.batched import BatchedEnv
from pglab.nets import make_policy, make_value

if TYPE_CHECKING:
    from pglab.config import Config
    from pglab.envs import EnvSpec, VectorEnv

EnvStep = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]]
"""A vector env's ``step``: actions ``[N, ...]`` -> obs, reward, terminated, truncated, info."""
Act = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Raw observations ``[N, D]`` -> (normalised observations ``[N, D]``, actions ``[N, ...]``)."""


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
    supports_pretrained: ClassVar[bool] = False  # a critic on a pretrained model is not built
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
        self.policy = build_policy(cfg, observation_space, action_space)
        body = self.policy.body if cfg.shared_network else None
        self.value = (
            make_value(observation_space, cfg.hidden_sizes, cfg.activation, cfg.transformer, body=body)
            if self.has_critic(cfg)
            else None
        )
        self._sampler = self.policy.sampler()  # rollouts' actions (a transformer's keeps a key-value cache)
        self.success_reported = False  # the env reports each episode's success
        self._ep_kl: torch.Tensor | None = None  # per env: KL to the reference so far in its episode
        self.obs_norm = ObsNormalizer(observation_space.shape, cfg.clip_obs, device) if cfg.normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        # one module holding everything: parameters() counts a shared body once
        critic = {} if self.value is None else {"value": self.value}
        self.nets = nn.ModuleDict({"policy": self.policy, **critic}).to(device)
        if self.ret_rms is not None:
            self.ret_rms.to(device)
        self.optimizer = self.make_optimizer()
        self.params = self.trainable()
        self.env_steps = 0
        self.nan_at_step: int | None = None  # fault injection, see pglab.config.DebugConfig
        self._returns: torch.Tensor | None = None  # running discounted return, for reward scaling
        self.compiled: CompiledA2CSteps | None = None  # hardware.compile on a traceable env: collect and update

    def trainable(self) -> list[nn.Parameter]:
        """The parameters that train: every network parameter (a LoRA policy: its adapters)."""
        return [p for p in self.nets.parameters() if p.requires_grad]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """RMSprop (alpha 0.99, as A2C's paper and SB3) or Adam over every trainable parameter."""
        cfg = self.cfg
        if cfg.optimizer == OptimizerName.rmsprop:
            return torch.optim.RMSprop(self.trainable(), lr=cfg.lr, alpha=0.99, eps=cfg.optimizer_eps, foreach=True)
        return torch.optim.Adam(self.trainable(), lr=cfg.lr, eps=cfg.optimizer_eps, foreach=True)

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
        return self.apply_reward_scale(rewards, self.update_reward_stats(rewards, dones))

    def update_reward_stats(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Fold the ``[T, N]`` rollout's running discounted returns into the statistics
        (with ``normalize_reward``); returns the factor its rewards are scaled by (0-d,
        float32: 1/std of the discounted return)."""
        scale, returns, stats = self.reward_stats_after(rewards, dones, self.running_returns(rewards))
        self.store_reward_stats(returns, stats)
        return scale

    def running_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """``[N]`` float64: each env's running discounted return before the ``[T, N]`` rollout."""
        if self._returns is None:
            self._returns = torch.zeros(rewards.shape[1], dtype=torch.float64, device=rewards.device)
        return self._returns

    def store_reward_stats(self, returns: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """Keep what :meth:`reward_stats_after` computed: the running returns and the statistics."""
        assert self.ret_rms is not None
        self._returns = returns
        self.ret_rms.set(*stats)

    def reward_stats_after(
        self, rewards: torch.Tensor, dones: torch.Tensor, returns: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`update_reward_stats` without changing anything (a compiled program):
        ``(scale, each env's running return [N] after the rollout, the statistics'
        (mean, var, count) after it)``, from the running returns ``[N]`` before it."""
        assert self.ret_rms is not None
        rows, running = [], returns
        for r, done in zip(rewards.double(), dones, strict=True):
            rows.append(torch.add(r, running, alpha=self.cfg.gamma))  # r + γ·running, one kernel
            running = rows[-1].masked_fill(done, 0.0)
        mean, var, count = self.ret_rms.folded(torch.stack(rows).flatten())
        return torch.rsqrt(var + 1e-8).float(), running, (mean, var, count)

    def apply_reward_scale(self, rewards: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Rewards ``[T, N]`` times :meth:`update_reward_stats`'s factor, clipped."""
        return (rewards * scale).clamp_(-self.cfg.clip_reward, self.cfg.clip_reward)

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
        self._sampler.reset()  # the policy changed since the last rollout: a key-value cache is stale
        obs, success = self.fill_rollout(env.step, obs, buf, self.rollout_act)
        self.success_reported |= success
        return obs

    def rollout_act(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A rollout step's policy: raw observations ``[N, D]`` -> (as the networks see them,
        sampled actions)."""
        nobs = self.normalize(raw)
        return nobs, self._sampler(nobs)

    def fill_rollout(
        self, step: EnvStep, obs: torch.Tensor, buf: dict[str, torch.Tensor], act: Act
    ) -> tuple[torch.Tensor, bool]:
        """:meth:`collect`'s loop: ``n_steps`` times ``act`` on the raw observation, ``step``
        the env, store. ``act`` maps raw observations ``[N, D]`` to ``(normalised
        observations, actions)`` (:meth:`rollout_act`). Returns the raw observation to continue from and whether
        the env reports each episode's success. Branch-free and without host round trips
        when ``step`` is (a compiled rollout traces it whole), and without side effects on
        the agent."""
        success = False
        for t in range(self.cfg.n_steps):
            nobs, action = act(obs)
            obs, reward, terminated, truncated, info = step(action)
            buf["obs"][t] = nobs
            buf["actions"][t] = action
            buf["rewards"][t] = reward
            buf["terminated"][t] = terminated
            torch.logical_or(terminated, truncated, out=buf["dones"][t])
            buf["final_obs"][t] = info["final_obs"]
            buf["episode_return"][t] = info["episode_return"]
            buf["episode_length"][t] = info["episode_length"]
            if "success" in info:
                success = True
                buf["success"][t] = info["success"]
        return obs, success

    @staticmethod
    def finished_episodes(buf: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``[E]`` and lengths ``[E]`` of the episodes that ended in the rollout."""
        done = buf["dones"]
        return buf["episode_return"][done], buf["episode_length"][done]

    def rollout_values(
        self, buf: dict[str, torch.Tensor], ended: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V(s_t), V(s'_t))``, each ``[T, N]``: the critic on the observations (with its
        gradient, for the critic's loss) and on the states the steps reached (a target,
        without).

        ``s'_t`` is the final observation where an episode ended (a time-limit cut
        bootstraps from it; a terminal one is masked in :func:`gae`) and the next
        observation otherwise, also after the rollout's last step. Where no episode
        ended, ``s'_t`` is ``s_{t+1}`` (the statistics are fixed during a rollout), so
        ``V(s'_t)`` is ``V(s_{t+1})``, already computed: the critic runs again only on the
        rollout's last states and on the few states where episodes ended
        (:meth:`ended_values`, computed here unless given).
        """
        assert self.value is not None
        values = self.value.rollout_values(buf["obs"], buf["actions"], buf["dones"])  # a transformer: per piece
        if ended is None:
            ended = self.ended_values(buf)
        with torch.no_grad():
            last = self.value(self.normalize(buf["final_obs"][-1]))
            next_values = torch.cat([torch.where(buf["dones"][:-1], ended, values[1:]), last[None]])
        return values, next_values

    def ended_values(self, buf: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[T-1, N]``: V(final observation) where an episode ended at a step before the
        rollout's last, 0 elsewhere. The critic runs on those states only, which takes one
        device sync (which ones); a compiled loss gets this as an input for that reason."""
        assert self.value is not None
        with torch.no_grad():
            out = torch.zeros_like(buf["rewards"][:-1])
            ended = torch.nonzero(buf["dones"][:-1].flatten()).flatten()
            if ended.numel():
                final = buf["final_obs"][:-1].flatten(0, 1)[ended]
                out.view(-1)[ended] = self.value(self.normalize(final))
        return out

    # ------------------------------------------------------------------ learning

    def loss(
        self, buf: dict[str, torch.Tensor], ended: torch.Tensor | None = None, reward_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss of a collected rollout and its parts.

        ``ended`` is the rollout's :meth:`ended_values` and ``reward_scale`` its
        :meth:`update_reward_stats`, each computed here unless given: a compiled loss gets
        them as inputs (the first takes a device sync; the second updates statistics,
        which a compiled training graph must not do: such buffer updates were lost).

        With a reference policy, ``train/kl`` is the mean over the episodes that ended in
        the rollout of their summed exact per-step KL(π ‖ π_ref), and with ``kl_coef = β > 0``
        every reward loses ``β · (log π(a|s) − log π_ref(a|s))`` before GAE (``kl_estimator``
        k1), or the loss gains β times the steps' mean k3 estimate (k3; see
        :meth:`pglab.algos.reinforce.Reinforce.loss`).

        Call once per rollout: it updates the reward-scaling statistics.
        """
        cfg = self.cfg
        T, n = buf["rewards"].shape
        terms = rollout_terms(self.policy, buf["obs"], buf["actions"], buf["dones"], self.reference)
        values, next_values = self.rollout_values(buf, ended)
        rewards = buf["rewards"]
        parts: dict[str, torch.Tensor] = {}
        if terms.kl is not None and terms.logp_ref is not None:
            parts["train/kl"] = self.episode_kl(terms.kl.view(T, n), buf["dones"])
            if cfg.kl_coef > 0 and cfg.kl_estimator is KLEstimator.k1:
                rewards = rewards - cfg.kl_coef * (terms.logp.detach() - terms.logp_ref).view(T, n)
        if reward_scale is None:
            rewards = self.scale_rewards(rewards, buf["dones"])
        else:
            rewards = self.apply_reward_scale(rewards, reward_scale)
        adv = gae(rewards, values.detach(), next_values, buf["terminated"], buf["dones"], cfg.gamma, cfg.gae_lambda)
        targets = (adv + values.detach()).flatten()
        adv = adv.flatten()
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        entropy = terms.entropy.mean()
        policy_loss = -(terms.logp * adv).mean()
        value_loss = F.mse_loss(values.flatten(), targets)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        k3 = k3_penalty(terms.logp, terms.logp_ref, cfg.kl_coef, cfg.kl_estimator)
        if k3 is not None:
            loss = loss + cfg.kl_coef * k3
            parts["loss/kl"] = k3
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
        steps = self if self.compiled is None else self.compiled
        while self.env_steps < total_steps:
            self.anneal_lr(total_steps)
            obs = steps.collect(env, obs, buf)
            metrics = steps.update(buf)
            self.env_steps += batch
            returns, lengths = self.finished_episodes(buf)
            if self.success_reported and bool(buf["dones"].any()):
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

    def compile(self, env: VectorEnv) -> str:
        """``hardware.compile``: the rollout and the update as compiled programs where
        :func:`~pglab.algos.a2c_compiled.compile_refusal` allows it (their first calls
        compile them); the networks otherwise, and the line says why."""
        why = compile_refusal(self, env)
        if why is not None:
            return f"{compile_networks(self.policy, self.value)} ({why}: not the whole step)"
        assert isinstance(env, BatchedEnv)  # compile_refusal's first condition
        self.compiled = CompiledA2CSteps(self, env)
        return "the whole rollout step and update"

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
