"""Proximal policy optimisation (PPO, Schulman et al. 2017) with the clipped objective.

PPO makes more of A2C's data: each rollout of ``n_steps`` steps of N envs is collected as
:class:`~pglab.algos.a2c.A2C` collects it (the same storage, observation normalisation,
reward scaling, time-limit bootstrapping and GAE), its log-probabilities, values and
advantages are frozen, and then ``n_epochs`` passes over it in shuffled minibatches each
take one gradient step on

    L = -mean(min(ρ·A, clip(ρ, 1-ε, 1+ε)·A)) + vf_coef · L_V - ent_coef · mean(H[π]),

with ρ = π(a|s) / π_old(a|s), the ratio to the policy that collected the rollout.

* Clipping (:func:`clipped_surrogate`): a ratio outside ``[1-ε, 1+ε]`` in the direction the
  advantage favours earns nothing more, so its gradient is 0; in the other direction the
  unclipped term is the smaller one and keeps its gradient (the pessimistic bound).
* The critic (:func:`value_loss`): the squared error to the GAE targets ``A + V_old``; with
  ``clip_range_vf`` the pessimistic max of the errors of V and of V clipped to
  ``V_old ± clip_range_vf`` (PPO2, CleanRL).
* Minibatches (:func:`minibatch_indices`): a fresh permutation each epoch, every sample in
  exactly one minibatch of ``batch_size``; advantages standardised per minibatch
  (``normalize_advantage``, as SB3; not with the group baselines, whose groups scale
  them). A sequence policy (the transformer, which scores an episode piece in one causal
  pass) and the group baselines take whole env columns instead.
* ``target_kl``: before each step the minibatch's approximate KL to the collecting policy,
  ``mean((ρ - 1) - log ρ)`` (the low-variance, always non-negative estimator SB3 logs), is
  checked; past ``1.5 · target_kl`` the update stops (SB3's rule), that step not taken.
* Group baselines (``baseline=leave_one_out|group_norm``, language-model style): no critic;
  one whole episode per env, all reset together (:func:`~pglab.algos.common.collect_episodes`),
  groups of ``group_size`` k envs share each start (k replies to one prompt), each episode
  scored by its return against its group's (:func:`~pglab.algos.reference.group_advantages`:
  RLOO's leave-one-out mean, GRPO's (R − mean) / std), every one of its steps given that
  advantage, then the same clipped epochs over minibatches of episodes. With a reference
  policy and ``kl_coef`` β the rewards lose β·(log π_old − log π_ref) per step first (the
  KL in the reward, as RLOO and PPO-RLHF do), in both modes.
* Metrics: ``loss/policy``, ``loss/value``, ``loss/entropy``, ``train/approx_kl``,
  ``train/clip_fraction``, ``train/grad_norm`` (means over the update's steps),
  ``train/explained_variance`` of the rollout's values (critic only) and ``train/epochs``
  (passes made: fewer than ``n_epochs`` when ``target_kl`` stopped the update) — the
  names ``sb3_ppo`` logs where both have them.

Shapes: T = ``n_steps`` (group baselines: the longest episode), N = ``env.num_envs``,
B = samples in a minibatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import gymnasium as gym
import torch

from pglab.algos.a2c import A2C
from pglab.algos.common import (
    ActionTerms,
    MemoryNeed,
    OnUpdate,
    Update,
    activation_bytes,
    apply_update,
    check_parameters,
    collect_episodes,
    compile_networks,
    discounted_returns,
    episode_buffers,
    episode_terms,
    forward_bytes,
    gae,
    grad_norm_and_clip,
    inject_nan,
    policy_bytes,
    rollout_terms,
    value_bytes,
)
from pglab.algos.reference import check_group_config, episode_kl_penalty, group_advantages, k3_kl
from pglab.config import ConfigError, KLEstimator, OptimizerName, PPOBaseline, PPOConfig

if TYPE_CHECKING:
    from pglab.config import Config
    from pglab.envs import EnvSpec, VectorEnv

GROUP_BASELINES = (PPOBaseline.leave_one_out, PPOBaseline.group_norm)


# --------------------------------------------------------------------------- the objective


@dataclass
class Surrogate:
    """The clipped surrogate of one minibatch.

    Attributes:
        loss: ``-mean(min(ρ·A, clip(ρ, 1-ε, 1+ε)·A))``, differentiable in the new log-probs.
        clip_fraction: share of samples whose ratio lies outside ``[1-ε, 1+ε]`` (detached).
        approx_kl: ``mean((ρ - 1) - log ρ)``, an estimate of KL(π_old ‖ π) (detached).
    """

    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def clipped_surrogate(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> Surrogate:
    """PPO's clipped objective as a loss, for ``[B]`` log-probabilities under the current
    policy (differentiable) and the collecting one, and ``[B]`` advantages."""
    log_ratio = logp - logp_old
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
    return Surrogate(loss, clip_fraction, approx_kl)


def value_loss(
    values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor, clip_range_vf: float | None
) -> torch.Tensor:
    """The critic's loss over ``[B]`` samples: ``mean((V - R)²)``, or with ``clip_range_vf``
    the pessimistic ``mean(max((V - R)², (V_clip - R)²))`` with
    ``V_clip = V_old + clip(V - V_old, ±clip_range_vf)``."""
    error = (values - returns).pow(2)
    if clip_range_vf is None:
        return error.mean()
    clipped = values_old + (values - values_old).clamp(-clip_range_vf, clip_range_vf)
    return torch.maximum(error, (clipped - returns).pow(2)).mean()


def minibatch_indices(n: int, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """A random permutation of ``range(n)`` cut into minibatches of ``batch_size`` (the last
    one shorter when ``batch_size`` does not divide ``n``): every index exactly once.
    Draws from torch's global generator, which the run seeds and checkpoints."""
    return list(torch.randperm(n, device=device).split(batch_size))


def columns_per_minibatch(batch_size: int, T: int) -> int:
    """Env columns of ``T`` steps in a minibatch of about ``batch_size`` samples (at least one),
    for the policies that take whole columns (:meth:`PPO.by_columns`)."""
    return max(1, round(batch_size / T))


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Var(target - predicted) / Var(target)``: 1 for a perfect critic, 0 for a constant
    one, NaN when the targets do not vary."""
    var = target.var()
    return torch.where(var > 0, 1.0 - (target - predicted).var() / var, torch.nan)


def step_means(steps: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the minibatch steps that report it (an update's metrics)."""
    keys = dict.fromkeys(k for step in steps for k in step)
    return {k: sum(s[k] for s in steps if k in s) / sum(k in s for s in steps) for k in keys}


# --------------------------------------------------------------------------- frozen rollout


@dataclass
class Frozen:
    """What the epochs read of a collected rollout, each ``[T, N]``, fixed before the first step.

    Attributes:
        logp_old: log π_old(a|s) of the collecting policy.
        advantages: GAE, or each episode's group advantage on every one of its steps.
        returns: the critic's targets ``A + V_old`` (None without a critic).
        values_old: V_old(s) (None without a critic).
        valid: which steps belong to an episode (group baselines), None: all do.
        logp_ref: log π_ref(a|s) of the reference policy, for the k3 penalty in the loss
            (``kl_estimator=k3``; None otherwise).
    """

    logp_old: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    values_old: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    logp_ref: torch.Tensor | None = None


# A minibatch: its new log-probs, entropies and values [B] (values None without a critic),
# and `take`, which picks the same B samples, in the same order, out of any [T, N] tensor.
Scored = tuple[ActionTerms, torch.Tensor | None, Callable[[torch.Tensor], torch.Tensor]]


class PPO(A2C):
    """PPO agent; see the module docstring. Built as every algorithm
    (``cfg, observation_space, action_space, device, max_episode_steps, env``); the group
    baselines need ``max_episode_steps`` (they collect whole episodes)."""

    supports_compile: ClassVar[bool] = True
    supports_pretrained: ClassVar[bool] = True  # with a group baseline (no critic)

    def __init__(
        self,
        cfg: PPOConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None = None,
        env: VectorEnv | None = None,
    ) -> None:
        super().__init__(cfg, observation_space, action_space, device, max_episode_steps, env)
        self.cfg: PPOConfig = cfg
        self.episodes = cfg.baseline in GROUP_BASELINES  # whole episodes, no critic
        if self.episodes and max_episode_steps is None:
            raise ValueError("PPO with a group baseline samples whole episodes and needs an env with a time limit")
        self.max_episode_steps = max_episode_steps
        self.group_size = cfg.group_size if self.episodes else None

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A2C's optimisers; Adam fused into one kernel per step (``fused=True``: the same
        update, 3× less per-step overhead on small networks, which PPO's many minibatch
        steps pay for)."""
        cfg = self.cfg
        if cfg.optimizer == OptimizerName.adam:
            return torch.optim.Adam(self.trainable(), lr=cfg.lr, eps=cfg.optimizer_eps, fused=True)
        return super().make_optimizer()

    @staticmethod
    def has_critic(cfg: PPOConfig) -> bool:  # type: ignore[override]
        """A critic for GAE; the group baselines compare returns within a group instead."""
        return cfg.baseline == PPOBaseline.gae

    @staticmethod
    def check_config(cfg: Config, env: EnvSpec) -> None:
        """Cross-key constraints, checked before the run starts."""
        A2C.check_config(cfg, env)
        a: PPOConfig = cfg.algo
        if a.baseline == PPOBaseline.gae and a.policy.pretrained:
            raise ConfigError(
                "algo.baseline=gae: a critic on a pretrained language model is not built; use "
                "algo.baseline=leave_one_out or group_norm (no critic)"
            )
        if a.baseline == PPOBaseline.gae:
            if a.group_size is not None:
                raise ConfigError(
                    f"algo.group_size={a.group_size}: groups belong to the group baselines; "
                    "set algo.baseline=leave_one_out or group_norm, or leave algo.group_size null"
                )
            if a.normalize_advantage and min(a.batch_size, a.n_steps * cfg.env.num_envs) < 2:
                raise ConfigError(
                    f"algo.batch_size={a.batch_size}: advantages are standardised per minibatch "
                    "(algo.normalize_advantage), which needs >= 2 samples in each"
                )
            return
        name = f"algo.baseline={a.baseline.value}"
        if a.normalize_advantage:
            raise ConfigError(
                f"{name} compares each episode with its group already; standardising per minibatch "
                "would weigh its advantage by the episode's length: set algo.normalize_advantage=false"
            )
        if a.clip_range_vf is not None:
            raise ConfigError(f"algo.clip_range_vf={a.clip_range_vf}: {name} has no critic; leave it null")
        if a.normalize_obs or a.normalize_reward:
            raise ConfigError(
                f"{name} compares raw returns within a group and runs without running statistics; "
                "set algo.normalize_obs=false algo.normalize_reward=false"
            )
        if env.time_limit is None:
            raise ConfigError(f"{name} collects whole episodes and needs an env with a time limit")
        if a.group_size is not None:
            check_group_config(cfg, env, a.group_size)
            if a.group_size < 2:
                raise ConfigError(f"algo.group_size={a.group_size}: {name} compares the episodes of a group (>= 2)")
        elif cfg.env.num_envs < 2:
            raise ConfigError(f"{name} needs env.num_envs >= 2 (got {cfg.env.num_envs}) or algo.group_size >= 2")

    @staticmethod
    def memory_need(cfg: Config, env: EnvSpec, observation_space: gym.Space, action_space: gym.Space) -> MemoryNeed:
        """A2C's rollout and networks plus the frozen ``[T, N]`` float32 log-probs, advantages,
        returns and values; the group baselines: whole episodes (``[time limit, N]``) and the
        policy alone. Activations: the larger of a minibatch's backward pass and the
        gradient-free pass of :meth:`freeze` over the whole rollout."""
        a: PPOConfig = cfg.algo
        frozen = 4 * 4
        if a.baseline == PPOBaseline.gae:
            need = A2C.memory_need(cfg, env, observation_space, action_space)
            T, n = a.n_steps, cfg.env.num_envs
            networks = 1 if a.shared_network else 2
            update = activation_bytes(observation_space, a.hidden_sizes, min(a.batch_size, T * n), networks)
            return MemoryNeed(
                rollout=need.rollout + T * n * frozen,
                networks=need.networks,
                activations=max(update, forward_bytes(observation_space, a.hidden_sizes, T * n)),
                rollout_keys=need.rollout_keys,
                detail=need.detail,
            )
        T, n = int(env.time_limit or 1), cfg.env.num_envs
        per_step = value_bytes(observation_space) + value_bytes(action_space) + 4 + 3 + frozen
        rows = min(columns_per_minibatch(a.batch_size, T), n) * T
        update = activation_bytes(observation_space, a.hidden_sizes, rows, 1)
        return MemoryNeed(
            rollout=T * n * per_step,
            networks=policy_bytes(a, observation_space, action_space, a.optimizer.value),
            activations=max(update, forward_bytes(observation_space, a.hidden_sizes, T * n)),
            rollout_keys=("env.num_envs", "env.max_episode_steps"),
            detail=f"{T:,} steps (the time limit) × {n:,} envs × {per_step:,} bytes",
        )

    # ------------------------------------------------------------------ freezing a rollout

    @torch.no_grad()
    def freeze(self, buf: dict[str, torch.Tensor]) -> tuple[Frozen, dict[str, torch.Tensor]]:
        """Log-probs, values, GAE advantages and targets of a collected ``[T, N]`` rollout,
        and ``train/kl`` and ``train/explained_variance``. Call once per rollout: it updates
        the reward-scaling statistics."""
        cfg = self.cfg
        T, n = buf["rewards"].shape
        terms = rollout_terms(self.policy, buf["obs"], buf["actions"], buf["dones"], self.reference)
        logp_old = terms.logp.view(T, n)
        values, next_values = self.rollout_values(buf)
        rewards = buf["rewards"]
        parts: dict[str, torch.Tensor] = {}
        if terms.kl is not None and terms.logp_ref is not None:
            parts["train/kl"] = self.episode_kl(terms.kl.view(T, n), buf["dones"])
            if cfg.kl_coef > 0 and cfg.kl_estimator is KLEstimator.k1:
                rewards = rewards - cfg.kl_coef * (logp_old - terms.logp_ref.view(T, n))
        rewards = self.scale_rewards(rewards, buf["dones"])
        adv = gae(rewards, values, next_values, buf["terminated"], buf["dones"], cfg.gamma, cfg.gae_lambda)
        returns = adv + values
        parts["train/explained_variance"] = explained_variance(values.flatten(), returns.flatten())
        logp_ref = None if terms.logp_ref is None else terms.logp_ref.view(T, n)
        return Frozen(logp_old, adv, returns, values, logp_ref=self._k3_ref(logp_ref)), parts

    def _k3_ref(self, logp_ref: torch.Tensor | None) -> torch.Tensor | None:
        """The reference's log-probs ``[T, N]`` the epochs need: only for a k3 penalty."""
        k3 = self.cfg.kl_estimator is KLEstimator.k3 and self.cfg.kl_coef > 0
        return logp_ref if k3 else None

    @torch.no_grad()
    def freeze_episodes(self, buf: dict[str, torch.Tensor], T: int) -> tuple[Frozen, dict[str, torch.Tensor]]:
        """The group baselines' :class:`Frozen`: log-probs of the valid steps of the episodes in
        ``buf[:T]`` and each episode's group advantage on all its steps; ``train/kl``, the
        mean over episodes of their summed exact KL, with a reference policy."""
        cfg = self.cfg
        valid = buf["valid"][:T]
        terms = episode_terms(self.policy, buf["obs"][:T], buf["actions"][:T], valid, self.reference)
        logp_old = torch.zeros(valid.shape, device=valid.device)
        logp_old[valid] = terms.logp
        rewards = buf["rewards"][:T]
        rewards, parts = episode_kl_penalty(rewards, valid, terms, cfg.kl_coef, cfg.kl_estimator)
        returns = discounted_returns(rewards, buf["dones"][:T], torch.zeros_like(rewards), cfg.gamma)
        adv = group_advantages(returns[0], self.group_size, cfg.baseline.value)
        logp_ref = None
        if terms.logp_ref is not None:
            logp_ref = torch.zeros(valid.shape, device=valid.device)
            logp_ref[valid] = terms.logp_ref
        return Frozen(logp_old, adv[None, :].expand(T, -1), valid=valid, logp_ref=self._k3_ref(logp_ref)), parts

    # ------------------------------------------------------------------ minibatches

    def by_columns(self, valid: torch.Tensor | None) -> bool:
        """Minibatches of whole env columns: a sequence policy scores an episode piece in one
        causal pass, and the group baselines' episodes start at step 0; else single steps."""
        return valid is not None or self.policy.sequence

    def minibatches(self, T: int, n: int, valid: torch.Tensor | None) -> list[torch.Tensor]:
        """One epoch's minibatches of a ``[T, N]`` rollout: shuffled flat step indices (in
        ``[T, N]`` row-major order), or shuffled env columns (:meth:`by_columns`), as many as
        ``batch_size`` divides the rollout into. Every sample is in exactly one."""
        if not self.by_columns(valid):
            return minibatch_indices(T * n, self.cfg.batch_size, self.device)
        return minibatch_indices(n, columns_per_minibatch(self.cfg.batch_size, T), self.device)

    def score(self, buf: dict[str, torch.Tensor], T: int, sel: torch.Tensor, valid: torch.Tensor | None) -> Scored:
        """The current networks (with gradients) on the samples ``sel`` of the rollout ``buf[:T]``
        picks (see :meth:`minibatches`)."""
        if not self.by_columns(valid):
            obs, actions = buf["obs"].flatten(0, 1)[sel], buf["actions"].flatten(0, 1)[sel]
            terms = ActionTerms(*self.policy.log_prob_entropy(obs, actions))
            values = None if self.value is None else self.value(obs)
            return terms, values, lambda x: x.flatten()[sel]
        obs, actions = buf["obs"][:T, sel], buf["actions"][:T, sel]
        if valid is None:  # a rollout: episodes continue across it
            dones = buf["dones"][:T, sel]
            terms = rollout_terms(self.policy, obs, actions, dones)
            values = None if self.value is None else self.value.rollout_values(obs, actions, dones).flatten()
            return terms, values, lambda x: x[:, sel].flatten()
        mask = valid[:, sel]  # whole episodes, from step 0
        return episode_terms(self.policy, obs, actions, mask), None, lambda x: x[:, sel][mask]

    def minibatch_loss(self, scored: Scored, frozen: Frozen) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one minibatch and its parts (``loss/*``, ``train/approx_kl``,
        ``train/clip_fraction``)."""
        cfg = self.cfg
        terms, values, take = scored
        adv = take(frozen.advantages)
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        surrogate = clipped_surrogate(terms.logp, take(frozen.logp_old), adv, cfg.clip_range)
        entropy = terms.entropy.mean()
        loss = surrogate.loss - cfg.ent_coef * entropy
        parts = {"loss/policy": surrogate.loss, "loss/entropy": -entropy}
        if frozen.logp_ref is not None:  # kl_estimator=k3: the penalty in the loss, at the current policy
            k3 = k3_kl(terms.logp, take(frozen.logp_ref)).mean()
            loss = loss + cfg.kl_coef * k3
            parts["loss/kl"] = k3
        if values is not None and frozen.returns is not None and frozen.values_old is not None:
            parts["loss/value"] = value_loss(values, take(frozen.values_old), take(frozen.returns), cfg.clip_range_vf)
            loss = loss + cfg.vf_coef * parts["loss/value"]
        parts |= {"train/approx_kl": surrogate.approx_kl, "train/clip_fraction": surrogate.clip_fraction}
        return loss, parts

    # ------------------------------------------------------------------ learning

    def optimise(self, buf: dict[str, torch.Tensor], T: int, frozen: Frozen) -> dict[str, float]:
        """``n_epochs`` passes of minibatch steps over a frozen rollout (fewer when ``target_kl``
        stops it); returns the means of the steps' metrics and ``train/epochs``. The loss is
        checked before every step, the parameters once after the last."""
        steps, epochs = self._epochs(buf, T, frozen)
        check_parameters(self.params)
        return step_means(steps) | {"train/epochs": epochs}

    def _epochs(self, buf: dict[str, torch.Tensor], T: int, frozen: Frozen) -> tuple[list[dict[str, float]], float]:
        """The minibatch steps: each one's metrics, and how many epochs they made."""
        cfg = self.cfg
        n = buf["rewards"].shape[1]
        steps: list[dict[str, float]] = []
        clip = lambda: grad_norm_and_clip(self.params, cfg.max_grad_norm)  # noqa: E731
        for epoch in range(cfg.n_epochs):
            batches = self.minibatches(T, n, frozen.valid)
            for i, sel in enumerate(batches):
                loss, parts = self.minibatch_loss(self.score(buf, T, sel, frozen.valid), frozen)
                if cfg.target_kl is not None and float(parts["train/approx_kl"]) > 1.5 * cfg.target_kl:
                    steps.append({k: float(v.detach()) for k, v in parts.items()})  # measured, not stepped
                    return steps, epoch + i / len(batches)
                loss = inject_nan(loss, self.env_steps, self.nan_at_step)
                steps.append(apply_update(self.optimizer, loss, parts, clip, self.params, check_params=False))
        return steps, float(cfg.n_epochs)

    def update(self, buf: dict[str, torch.Tensor]) -> dict[str, float]:
        """The epochs over one collected rollout; then the observation statistics take in its
        observations (as A2C). Returns the update's metrics."""
        frozen, parts = self.freeze(buf)
        metrics = self.optimise(buf, buf["rewards"].shape[0], frozen)
        metrics |= {k: float(v) for k, v in parts.items()}
        if math.isnan(metrics["train/explained_variance"]):
            del metrics["train/explained_variance"]  # the targets did not vary: nothing to explain
        with torch.no_grad():
            self.update_obs_stats(buf["final_obs"].flatten(0, 1))
        return metrics

    def compile(self, env: VectorEnv) -> str:
        """``torch.compile`` the networks in place (``hardware.compile``): PPO's epochs are
        not A2C's compiled update."""
        return compile_networks(self.policy, self.value)

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """Train until ``env_steps >= total_steps`` or ``on_update`` returns False: A2C's rollout
        loop (:meth:`A2C.learn`, with this :meth:`update`) or, with a group baseline, whole episodes."""
        if not self.episodes:
            super().learn(env, total_steps, on_update)
            return
        assert self.max_episode_steps is not None
        buf = episode_buffers(env, self.max_episode_steps, self.device, with_final_obs=False)
        while self.env_steps < total_steps:
            self.anneal_lr(total_steps)
            T, success = collect_episodes(env, self._sampler, buf, self.max_episode_steps, with_final_obs=False)
            frozen, parts = self.freeze_episodes(buf, T)
            metrics = self.optimise(buf, T, frozen) | {k: float(v) for k, v in parts.items()}
            if success:
                metrics["train/success_rate"] = float(buf["ep_success"].float().mean())
            self.env_steps += int(buf["valid"][:T].sum())
            update = Update(self.env_steps, metrics, buf["ep_returns"].clone(), buf["ep_lengths"].clone())
            if not on_update(update):
                break
