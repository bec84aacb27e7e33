"""REINFORCE (Williams 1992) with discounted reward-to-go, a choice of baseline, on N envs.

One update = one complete episode from each of the N environments, all sampled with the
current policy (N i.i.d. episodes, the textbook Monte-Carlo estimator):

    grad J ≈ mean over valid steps (t, n) of  grad log π(a[t,n] | s[t,n]) · A[t,n]
    A = G - b,   G[t] = r[t] + γ r[t+1] + ...   (reward-to-go)

* All N envs are reset at the start of an update and stepped in lockstep until every
  one has finished its episode. An env that finishes early keeps stepping (a vector env
  steps all its members), but those steps are masked out and not counted in
  ``env_steps``: ``env_steps`` counts the transitions the learner uses. Waiting for the
  slowest env (rather than stopping when enough episodes are done) keeps the batch
  unbiased — stopping early would over-represent short episodes.
* Baselines: ``none`` (b = 0); ``mean`` (b = batch mean of the reward-to-go: includes
  the episode's own returns, so biased by O(1/N)); ``value`` (b = V(s), a critic
  regressed on the reward-to-go with its own learning rate); ``leave_one_out`` (RLOO:
  b = the mean reward-to-go of the *other* episodes at the same step — unbiased; the
  batch standardisation of ``normalize_advantage`` rescales it with batch statistics,
  a small bias of its own, so turn that off for an exactly unbiased estimate).
* Groups (``group_size`` k, language-model style): envs ``[g·k, (g+1)·k)`` start every
  episode from the same state (k replies to one prompt, on envs that can share starts);
  with ``mean``, ``leave_one_out`` (RLOO) and ``group_norm`` (GRPO's (R − mean) / std) each
  episode's whole return is compared with its group's and every one of its steps gets that
  advantage (:meth:`Reinforce.group_advantages`). ``group_norm`` without groups treats the
  batch as one group.
* A reference policy (:meth:`Reinforce.set_reference`, the SFT model): ``train/kl`` logs
  the exact KL to it, summed over each episode; with ``kl_coef`` β every reward loses
  β·(log π(a|s) − log π_ref(a|s)) before the returns are computed.
* Sequence policies (the transformer on ``dialogue_lm``) sample through a key-value cache
  and score each episode in one causal pass (:func:`~pglab.algos.common.episode_terms`).
* Time limits (``truncated``): with a critic, a truncated episode's reward-to-go is
  completed with γ·V(final observation) — the time limit is treated as a cut of an
  ongoing task, as in actor-critic methods (Pardo et al. 2018). Without a critic there is
  nothing to bootstrap from: the reward-to-go ends at the cut, which is the exact
  return of the time-limited task. A terminated episode never bootstraps.
* Advantages are optionally standardised over the batch; an entropy bonus and separate
  gradient-norm clipping of policy and critic (their losses differ in scale by orders of
  magnitude) follow. One Adam optimiser, one parameter group each.

Shapes: T ≤ the env's time limit, N = ``env.num_envs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import torch
from torch.nn import functional as F

from pglab.algos.common import (
    MemoryNeed,
    NormalizedSampler,
    ObsNormalizer,
    OnUpdate,
    Update,
    activation_bytes,
    apply_update,
    build_policy,
    check_obs_normalization,
    collect_episodes,
    compile_networks,
    discounted_returns,
    episode_buffers,
    episode_terms,
    grad_norm_and_clip,
    inject_nan,
    network_bytes,
    parameter_count,
    policy_bytes,
    value_bytes,
)
from pglab.algos.reference import (
    KLReference,
    check_group_config,
    check_kl_config,
    episode_kl_penalty,
    group_advantages,
    k3_penalty,
)
from pglab.config import Baseline, ConfigError, ReinforceConfig
from pglab.nets import make_value

if TYPE_CHECKING:
    from pglab.config import Config
    from pglab.envs import EnvSpec, VectorEnv

GROUP_BASELINES = (Baseline.mean, Baseline.leave_one_out, Baseline.group_norm)


class Reinforce(KLReference):
    """REINFORCE agent; see the module docstring for the algorithm and its choices.

    Args:
        cfg: the algorithm config.
        observation_space: a single env's observation space (Box).
        action_space: a single env's action space (Discrete or 1-D Box).
        device: where networks and rollouts live.
        max_episode_steps: the env's time limit; sizes the preallocated rollout.
        env: unused (the env arrives in :meth:`learn`); accepted like every algorithm.
    """

    supports_compile: ClassVar[bool] = True
    supports_pretrained: ClassVar[bool] = True

    def __init__(
        self,
        cfg: ReinforceConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None = None,
        env: VectorEnv | None = None,
    ) -> None:
        if max_episode_steps is None:
            raise ValueError("REINFORCE samples whole episodes and needs an env with a time limit")
        self.cfg = cfg
        self.device = device
        self.max_episode_steps = int(max_episode_steps)
        self.policy = build_policy(cfg, observation_space, action_space).to(device)
        self.value = (
            make_value(observation_space, cfg.hidden_sizes, cfg.activation, cfg.transformer).to(device)
            if cfg.baseline == Baseline.value
            else None
        )
        self._success_reported = False  # the env reports each episode's success
        self.obs_norm = ObsNormalizer(observation_space.shape, cfg.clip_obs, device) if cfg.normalize_obs else None
        trainable = [p for p in self.policy.parameters() if p.requires_grad]  # a LoRA policy: the adapters
        groups: list[dict[str, Any]] = [{"params": trainable, "lr": cfg.lr}]
        if self.value is not None:
            groups.append({"params": list(self.value.parameters()), "lr": cfg.value_lr})
        self.optimizer = torch.optim.Adam(groups, eps=1e-5, foreach=True)
        self.params = [p for group in groups for p in group["params"]]
        self.env_steps = 0
        self.group_size = cfg.group_size  # k samples per prompt: the run sets the env up for it
        self.nan_at_step: int | None = None  # fault injection, see pglab.config.DebugConfig

    @staticmethod
    def check_config(cfg: Config, env: EnvSpec) -> None:
        """Cross-key constraints, checked before the run starts."""
        if cfg.algo.baseline == Baseline.leave_one_out and cfg.env.num_envs < 2:
            raise ConfigError(
                f"algo.baseline=leave_one_out needs env.num_envs >= 2 (got {cfg.env.num_envs}): "
                "each episode's baseline is the mean of the other episodes of the batch"
            )
        group = cfg.algo.group_size
        if group is not None:
            check_group_config(cfg, env, group)
            if group < 2 and cfg.algo.baseline in GROUP_BASELINES:
                raise ConfigError(
                    f"algo.group_size={group}: baseline={cfg.algo.baseline.value} compares the episodes "
                    "of a group, so a group needs >= 2"
                )
        elif cfg.algo.baseline == Baseline.group_norm and cfg.env.num_envs < 2:
            raise ConfigError(
                f"algo.baseline=group_norm needs env.num_envs >= 2 (got {cfg.env.num_envs}) or algo.group_size >= 2"
            )
        if cfg.algo.baseline == Baseline.value and cfg.algo.policy.pretrained:
            raise ConfigError(
                "algo.baseline=value: a critic on a pretrained language model is not built; use "
                "algo.baseline=leave_one_out or group_norm (no critic)"
            )
        check_kl_config(cfg)
        check_obs_normalization(cfg.algo.normalize_obs, cfg, env)

    @staticmethod
    def memory_need(cfg: Config, env: EnvSpec, observation_space: gym.Space, action_space: gym.Space) -> MemoryNeed:
        """:meth:`buffers` (``[time limit, N]`` of everything, ``final_obs`` too with a critic), the
        policy (and critic) with Adam's state, and the hidden outputs of one update over at
        least one step per episode."""
        a = cfg.algo
        T, n = int(env.time_limit or 1), cfg.env.num_envs
        critic = a.baseline == Baseline.value
        obs = value_bytes(observation_space) * (2 if critic else 1)
        per_step = obs + value_bytes(action_space) + 4 + 3  # rewards (float32); valid, dones, cut (bool)
        networks = policy_bytes(a, observation_space, action_space, "adam")
        if critic:
            value = parameter_count(lambda: make_value(observation_space, a.hidden_sizes, a.activation, a.transformer))
            networks += network_bytes(value, "adam")
        return MemoryNeed(
            rollout=T * n * per_step,
            networks=networks,
            activations=activation_bytes(observation_space, a.hidden_sizes, n, 2 if critic else 1),
            rollout_keys=("env.num_envs", "env.max_episode_steps"),
            detail=f"{T:,} steps (the time limit) × {n:,} envs × {per_step:,} bytes",
        )

    # ------------------------------------------------------------------ acting

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw ``obs[B, obs_dim]`` (the policy's mode when ``deterministic``),
        normalised with the current statistics when ``algo.normalize_obs``."""
        return self.policy.act(self.normalize(obs), deterministic)

    # ------------------------------------------------------------------ data

    def collect(self, env: VectorEnv, buf: dict[str, torch.Tensor]) -> int:
        """Fill ``buf`` with one complete episode per env (:func:`collect_episodes`); returns
        T, the longest length."""
        sample = self.policy.sampler()
        if self.obs_norm is not None:
            sample = NormalizedSampler(sample, self.obs_norm)
        T, success = collect_episodes(env, sample, buf, self.max_episode_steps, self.value is not None)
        self._success_reported |= success
        return T

    def buffers(self, env: VectorEnv) -> dict[str, torch.Tensor]:
        """Preallocate the rollout storage once (:func:`episode_buffers`)."""
        return episode_buffers(env, self.max_episode_steps, self.device, self.value is not None)

    # ------------------------------------------------------------------ learning

    def advantages(
        self, returns: torch.Tensor, valid: torch.Tensor, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Advantages ``A = G - b`` for the valid steps, and V(s) when there is a critic.

        Args:
            returns: ``[T, N]`` reward-to-go (column n = env n's episode).
            valid: ``[T, N]`` which steps belong to an episode.
            obs: ``[B, obs_dim]`` observations of the valid steps (B = ``valid.sum()``).

        Returns:
            ``(A[B], V[B] or None)``; V carries gradients (the critic's loss uses it).
        """
        G = returns[valid]
        values = None
        baseline = self.cfg.baseline
        if (self.cfg.group_size is not None and baseline in GROUP_BASELINES) or baseline == Baseline.group_norm:
            adv = self.group_advantages(returns[0])[None, :].expand_as(returns)[valid]
        elif baseline == Baseline.value:
            assert self.value is not None
            values = self.value(obs)
            adv = G - values.detach()
        elif baseline == Baseline.mean:
            # The batch mean includes the episode's own returns, so this baseline is biased
            # by O(1/N) (for one-step episodes exactly: R - mean(all) = (N-1)/N · (R - mean of
            # the others)). leave_one_out is the unbiased version.
            adv = G - G.mean()
        elif baseline == Baseline.leave_one_out:
            # b[t, n] = mean over the other episodes m != n of G[t, m], a finished episode's
            # reward-to-go counting as 0. It does not depend on episode n, so A stays unbiased;
            # at t = 0 it is RLOO's mean return of the other samples.
            n = returns.shape[1]
            g = torch.where(valid, returns, torch.zeros_like(returns))
            b = (g.sum(dim=1, keepdim=True) - g) / (n - 1)
            adv = (g - b)[valid]
        else:
            adv = G.clone()
        if self.cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        return adv, values

    def group_advantages(self, episode_returns: torch.Tensor) -> torch.Tensor:
        """``[N]`` advantage of each whole episode against its group (:func:`group_advantages`;
        k = ``group_size``, the whole batch when null)."""
        return group_advantages(episode_returns, self.cfg.group_size, self.cfg.baseline.value)

    def bootstrap(self, buf: dict[str, torch.Tensor], T: int) -> torch.Tensor:
        """``[T, N]``: γ-less value added at each episode end, V(final observation) where the
        time limit cut the episode (with a critic), 0 elsewhere (and at terminal states)."""
        if self.value is None:
            return torch.zeros_like(buf["rewards"][:T])
        cut = buf["cut"][:T]
        with torch.no_grad():
            values = self.value(self.normalize(buf["final_obs"][:T].flatten(0, 1))).view_as(cut)
        return torch.where(cut, values, 0.0)

    def returns_to_go(self, buf: dict[str, torch.Tensor], T: int, rewards: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, N]`` discounted reward-to-go of the batch in ``buf[:T]`` (garbage on invalid
        steps), of ``rewards[T, N]`` when given (the KL-penalised rewards), else the env's."""
        rewards = buf["rewards"][:T] if rewards is None else rewards
        return discounted_returns(rewards, buf["dones"][:T], self.bootstrap(buf, T), self.cfg.gamma)

    def loss(self, buf: dict[str, torch.Tensor], T: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss of the batch in ``buf[:T]`` and its parts (policy, entropy, value,
        and with a reference policy ``train/kl``: the mean over episodes of the summed exact
        per-step KL(π ‖ π_ref)).

        ``-grad(policy part)`` is the REINFORCE gradient estimate: mean over valid steps of
        ``grad log π(a|s) · A``. With a reference policy and ``kl_coef = β > 0`` the rewards
        are ``r - β · (log π(a|s) - log π_ref(a|s))`` first (``kl_estimator=k1``: the sampled
        KL estimate whose expectation over π is the KL: penalising it through the returns
        gives the exact gradient of ``E[return] - β · KL``, as in RLHF), or the loss gains
        β times the valid steps' mean k3 estimate, ``loss/kl`` (``k3``, as GRPO).
        """
        cfg = self.cfg
        valid = buf["valid"][:T]
        all_obs = self.normalize(buf["obs"][:T])
        obs = all_obs[valid]
        actions = buf["actions"][:T]
        terms = episode_terms(self.policy, all_obs, actions, valid, self.reference)
        rewards = buf["rewards"][:T]
        rewards, parts = episode_kl_penalty(rewards, valid, terms, cfg.kl_coef, cfg.kl_estimator)
        returns = self.returns_to_go(buf, T, rewards)
        adv, values = self.advantages(returns, valid, obs)
        entropy = terms.entropy.mean()
        policy_loss = -(terms.logp * adv).mean()
        loss = policy_loss - cfg.ent_coef * entropy
        parts = {"loss/policy": policy_loss, "loss/entropy": -entropy, **parts}
        k3 = k3_penalty(terms.logp, terms.logp_ref, cfg.kl_coef, cfg.kl_estimator)
        if k3 is not None:
            loss = loss + cfg.kl_coef * k3
            parts["loss/kl"] = k3
        if values is not None:
            parts["loss/value"] = F.mse_loss(values, returns[valid])
            loss = loss + parts["loss/value"]  # the critic has its own parameters and learning rate
        return loss, parts

    def update(self, buf: dict[str, torch.Tensor], T: int) -> dict[str, float]:
        """One gradient step on the batch in ``buf[:T]``; returns the update's metrics."""
        loss, parts = self.loss(buf, T)
        loss = inject_nan(loss, self.env_steps, self.nan_at_step)
        metrics = apply_update(self.optimizer, loss, parts, self._clip, self.params)
        if self.obs_norm is not None:  # after the update, as A2C: the batch was scored with the old statistics
            self.obs_norm.update(buf["obs"][:T][buf["valid"][:T]])
        return metrics

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them (``algo.normalize_obs``), else as they are."""
        return obs if self.obs_norm is None else self.obs_norm(obs)

    def _clip(self) -> torch.Tensor:
        """Clip policy and critic gradients separately (their losses differ in scale by orders
        of magnitude); returns the policy's gradient norm before clipping."""
        grad_norm = grad_norm_and_clip(self.policy.parameters(), self.cfg.max_grad_norm)
        if self.value is not None:
            grad_norm_and_clip(self.value.parameters(), self.cfg.max_grad_norm)
        return grad_norm

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """Train until ``env_steps >= total_steps`` or ``on_update`` returns False."""
        buf = self.buffers(env)
        while self.env_steps < total_steps:
            T = self.collect(env, buf)
            if not on_update(self.learn_from(buf, T)):
                break

    def learn_from(self, buf: dict[str, torch.Tensor], T: int, success_reported: bool = False) -> Update:
        """One update on the episodes collected in ``buf[:T]`` (``success_reported``: the env
        reports success, where another than :meth:`collect` collected them); the
        :class:`Update` the run logs."""
        self._success_reported |= success_reported
        metrics = self.update(buf, T)
        if self._success_reported:
            metrics["train/success_rate"] = float(buf["ep_success"].float().mean())
        self.env_steps += int(buf["valid"][:T].sum())
        return Update(
            env_steps=self.env_steps,
            metrics=metrics,
            episode_returns=buf["ep_returns"].clone(),
            episode_lengths=buf["ep_lengths"].clone(),
        )

    def compile(self, env: VectorEnv) -> str:
        """``torch.compile`` the networks in place (``hardware.compile``)."""
        return compile_networks(self.policy, self.value)

    def export(self, run_dir: Path) -> None:
        """Nothing beyond pglab's own checkpoint."""

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimiser and step counter (tensors and plain values only)."""
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
        }
        if self.value is not None:
            state["value"] = self.value.state_dict()
        if self.obs_norm is not None:
            state["obs_rms"] = self.obs_norm.state_dict()
        return state | self.reference_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_reference(state)
        self.policy.load_state_dict(state["policy"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_rms"])
        self.env_steps = int(state["env_steps"])
