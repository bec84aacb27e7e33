"""What every pglab algorithm shares: the training-loop contract and the return math.

An algorithm is a class built as ``Algo(cfg=, observation_space=, action_space=,
device=, max_episode_steps=, env=)`` with ``learn(env, total_steps, on_update)``,
``act(obs, deterministic)`` and ``state_dict()``. Optional: a static
``check_config(cfg)`` for cross-key constraints (raises ``ConfigError`` before the run
starts) and ``export(run_dir)`` for extra artifacts in the algorithm's native format.
An algorithm never logs: after each update it hands an :class:`Update` to ``on_update``
and the experiment logs, evaluates and checkpoints. ``on_update`` returns
False to stop training early.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from pglab.config import ConfigError
from pglab.envs.spaces import TokenSequence


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf: training stops at once, the run is failed."""


@dataclass
class Update:
    """One update's outcome, handed to the experiment.

    Attributes:
        env_steps: total env steps consumed so far (the x-axis of every metric).
        metrics: scalar metrics of this update (``loss/*``, ``train/grad_norm``, ...).
        episode_returns: undiscounted returns of the episodes finished since the last
            update, ``[E]``.
        episode_lengths: their lengths, ``[E]``.
    """

    env_steps: int
    metrics: dict[str, float]
    episode_returns: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    episode_lengths: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


OnUpdate = Callable[[Update], bool]


class Agent(Protocol):
    """The interface the experiment drives (see the module docstring)."""

    env_steps: int

    def learn(self, env: Any, total_steps: int, on_update: OnUpdate) -> None: ...

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...


def discounted_returns(
    rewards: torch.Tensor, dones: torch.Tensor, bootstrap: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Discounted reward-to-go with explicit values at episode ends.

    ``G[t] = r[t] + gamma * (bootstrap[t] if dones[t] else G[t+1])``, computed backwards.
    ``bootstrap[t]`` is the value of the state reached at an episode end: 0 for a
    terminal state, V(final observation) for a time-limit cut or a rollout cut-off.
    A step after the last row that is not an episode end is treated as ending with
    ``bootstrap[T-1]`` (rollout cut-off).

    Args:
        rewards: ``[T, N]`` rewards.
        dones: ``[T, N]`` bool, an episode ended at step t (terminated or truncated).
        bootstrap: ``[T, N]`` value added (discounted) at episode ends.
        gamma: discount factor.

    Returns:
        ``[T, N]`` returns-to-go, in the rewards' dtype.
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    next_return = bootstrap[T - 1].to(rewards.dtype)
    for t in range(T - 1, -1, -1):
        tail = torch.where(dones[t], bootstrap[t].to(rewards.dtype), next_return)
        next_return = rewards[t] + gamma * tail
        out[t] = next_return
    return out


def grad_norm_and_clip(params: Iterable[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Global L2 norm of the gradients (before clipping), as a 0-d tensor; clips in place
    when ``max_norm`` is set. Never waits for the device (no ``.item()``)."""
    params = list(params)
    device = params[0].device if params else None
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros((), device=device)
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params])
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def apply_update(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    parts: dict[str, torch.Tensor],
    clip: Callable[[], torch.Tensor],
    params: list[nn.Parameter],
) -> dict[str, float]:
    """Backward, clip, check, step, check: one gradient step with two device syncs in all.

    The loss is checked before the optimiser steps (a NaN loss never reaches the
    weights), the parameters after it; both raise :class:`NonFiniteError`.

    Args:
        optimizer: steps ``params``.
        loss: the scalar to minimise.
        parts: its named parts, logged as they are (``loss/policy``, ...).
        clip: clips the gradients in place and returns their norm before clipping.
        params: every trained parameter, checked after the step.

    Returns:
        the update's metrics: ``parts`` and ``train/grad_norm`` as floats.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip()
    values = torch.stack([loss.detach(), *(v.detach() for v in parts.values()), grad_norm.detach()]).tolist()
    if not math.isfinite(values[0]):
        raise NonFiniteError(f"loss became non-finite ({values[0]})")
    optimizer.step()
    finite = torch.isfinite(torch.cat([p.detach().view(-1) for p in params])).all()
    if not bool(finite):
        bad = next(n for n, p in enumerate(params) if not bool(torch.isfinite(p).all()))
        raise NonFiniteError(f"parameters became non-finite (parameter {bad} of {len(params)})")
    metrics = dict(zip(parts, values[1:-1], strict=True))
    metrics["train/grad_norm"] = values[-1]
    return metrics


def inject_nan(loss: torch.Tensor, env_steps: int, nan_at_step: int | None) -> torch.Tensor:
    """Fault injection (``debug.nan_at_step``): the loss as NaN from that env step on, as
    a diverging update would make it; :func:`check_finite` must then stop the run."""
    if nan_at_step is not None and env_steps >= nan_at_step:
        return loss * float("nan")
    return loss


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` if ``value`` holds a NaN or inf."""
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"{name} became non-finite ({value.detach().flatten()[:4].tolist()})")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout.

    ``delta[t] = r[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]`` and
    ``A[t] = delta[t] + gamma * lam * (1 - dones[t]) * A[t+1]``, with ``A[T] = 0``.
    ``next_values[t]`` is V of the state step t actually reached: the final observation
    where an episode ended (so a time-limit cut bootstraps from it), the next observation
    otherwise, and after the last step the value of the rollout's last observation.
    ``lam = 1`` gives the n-step return up to the rollout end minus V; ``lam = 0`` the
    one-step TD error.

    Args:
        rewards, values, next_values: ``[T, N]``.
        terminated: ``[T, N]`` bool, a true terminal state was reached (no bootstrap).
        dones: ``[T, N]`` bool, terminated or truncated (the advantage chain is cut).
        gamma, lam: discount and GAE λ.

    Returns:
        ``[T, N]`` advantages; the critic's targets are ``advantages + values``.
    """
    T = rewards.shape[0]
    # everything that does not depend on A[t+1] at once, over [T, N]; the loop is one op a step
    delta = rewards + gamma * next_values * (~terminated).to(rewards.dtype) - values
    carry = (gamma * lam) * (~dones).to(rewards.dtype)
    adv = torch.empty_like(rewards)
    adv[T - 1] = delta[T - 1]
    for t in range(T - 2, -1, -1):
        torch.addcmul(delta[t], carry[t], adv[t + 1], out=adv[t])
    return adv


class RunningMeanStd(torch.nn.Module):
    """Running mean and variance of a stream of batches (Chan et al.'s parallel update).

    Kept as buffers, so they travel with ``state_dict()`` into checkpoints and are used
    unchanged at evaluation.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(eps, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch ``x[B, *shape]``."""
        x = x.double()
        b_mean, b_var, b = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b
        self.mean += delta * b / total
        m2 = self.var * self.count + b_var * b + delta.pow(2) * self.count * b / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)


# --------------------------------------------------------------------------- reference policies


@dataclass
class ActionTerms:
    """What a policy-gradient loss needs about the actions taken, for B steps.

    Attributes:
        logp: ``[B]`` log π(a|s), differentiable.
        entropy: ``[B]`` entropy of π(·|s), differentiable.
        logp_ref: ``[B]`` log π_ref(a|s) of the reference policy (None without one).
        kl: ``[B]`` KL(π(·|s) ‖ π_ref(·|s)) over the whole action set, exact, detached
            (None without a reference).
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    logp_ref: torch.Tensor | None = None
    kl: torch.Tensor | None = None


def _terms(logp_all: torch.Tensor, ref_all: torch.Tensor | None, actions: torch.Tensor) -> ActionTerms:
    """Terms from full log-probabilities ``[B, A]`` (policy, reference) and actions ``[B]``."""
    index = actions.long()[:, None]
    probs = logp_all.exp()
    terms = ActionTerms(logp_all.gather(1, index).squeeze(1), -(probs * logp_all).sum(dim=1))
    if ref_all is not None:
        terms.logp_ref = ref_all.gather(1, index).squeeze(1)
        terms.kl = (probs * (logp_all - ref_all)).sum(dim=1).detach()
    return terms


def action_terms(policy: Any, obs: torch.Tensor, actions: torch.Tensor, reference: Any = None) -> ActionTerms:
    """:class:`ActionTerms` of ``actions[B]`` taken at ``obs[B, ...]``.

    Without a reference this is the policy's own (fast) ``log_prob_entropy``; with one,
    both policies' full log-probabilities (categorical policies only).
    """
    if reference is None:
        return ActionTerms(*policy.log_prob_entropy(obs, actions))
    with torch.no_grad():
        ref_all = reference.log_probs(obs)
    return _terms(policy.log_probs(obs), ref_all, actions)


def rollout_terms(
    policy: Any, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor, reference: Any = None
) -> ActionTerms:
    """:class:`ActionTerms` of every step of a rollout ``[T, N]`` (episodes continue across
    rollouts), in ``obs.flatten(0, 1)`` order.

    A sequence policy scores each episode piece of the rollout in one causal pass
    (:func:`pglab.nets.rollout_features`); any other policy scores the steps one by one.
    """
    if not hasattr(policy, "rollout_log_probs"):
        return action_terms(policy, obs.flatten(0, 1), actions.flatten(0, 1), reference)
    ref_all = None
    if reference is not None:
        with torch.no_grad():
            ref_all = reference.rollout_log_probs(obs, actions, dones).flatten(0, 1)
    logp_all = policy.rollout_log_probs(obs, actions, dones).flatten(0, 1)
    return _terms(logp_all, ref_all, actions.flatten())


def episode_terms(
    policy: Any, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor, reference: Any = None
) -> ActionTerms:
    """:class:`ActionTerms` of the valid steps of whole episodes, in ``obs[valid]`` order.

    Args:
        policy: the policy; a sequence policy (``policy.sequence``, e.g. a
            :class:`~pglab.nets.TokenPolicy`) scores each episode in one causal pass.
        obs: ``[T, N, ...]`` observations, episode n in column n from step 0.
        actions: ``[T, N]`` actions.
        valid: ``[T, N]`` which steps belong to the episodes.
        reference: a frozen reference policy, or None.

    Returns:
        the terms of the ``B = valid.sum()`` valid steps, row-major over ``[T, N]``.
    """
    if not getattr(policy, "sequence", False):
        return action_terms(policy, obs[valid], actions[valid], reference)
    ref_all = None
    if reference is not None:
        with torch.no_grad():
            ref_all = reference.episode_log_probs(obs[0], actions)[valid]
    return _terms(policy.episode_log_probs(obs[0], actions)[valid], ref_all, actions[valid])


def frozen_copy(policy: nn.Module) -> nn.Module:
    """A copy of ``policy`` that never trains (the KL penalty's reference)."""
    ref = copy.deepcopy(policy)
    ref.requires_grad_(False)
    ref.eval()
    return ref


class KLReference:
    """What pglab's algorithms share about the KL penalty's reference policy (the SFT model):
    freezing it, and carrying it through checkpoints. A mixin of an algorithm with a ``policy``."""

    policy: nn.Module
    reference: nn.Module | None = None  # None until set_reference: no KL term, no train/kl

    def set_reference(self) -> None:
        """Freeze a copy of the current policy as the reference (after the SFT stage)."""
        self.reference = frozen_copy(self.policy)

    def reference_state(self) -> dict[str, Any]:
        """``{"reference": its state dict}`` for a checkpoint, or ``{}`` without a reference."""
        return {} if self.reference is None else {"reference": self.reference.state_dict()}

    def load_reference(self, state: dict[str, Any]) -> None:
        """Restore the reference from a checkpoint's ``state`` if it holds one."""
        if "reference" in state:
            self.set_reference()
            assert self.reference is not None
            self.reference.load_state_dict(state["reference"])


def obs_dtype(space: Any) -> torch.dtype:
    """The torch dtype rollout storage keeps observations of ``space`` in: int64 for token
    sequences (ids a transformer embeds), float32 otherwise (what the vector envs hand over,
    integer Boxes included)."""
    return torch.int64 if isinstance(space, TokenSequence) else torch.float32


def check_kl_config(cfg: Any) -> None:
    """A KL penalty needs a reference policy, which only the SFT stage makes."""
    if cfg.algo.kl_coef > 0 and cfg.sft_steps == 0:
        raise ConfigError(
            f"algo.kl_coef={cfg.algo.kl_coef:g}: the KL penalty needs a reference policy, which the SFT stage "
            "makes; set sft.steps > 0 (on an env with demonstrations: dialogue_lm) or algo.kl_coef=0"
        )


def check_group_config(cfg: Any, group: int) -> None:
    """``algo.group_size`` divides ``env.num_envs``. (Whether the env can start a group's envs
    from the same state is checked by the experiment's preflight, which knows the envs.)"""
    if cfg.env.num_envs % group:
        raise ConfigError(
            f"algo.group_size={group}: must divide env.num_envs={cfg.env.num_envs} (the envs form groups of k)"
        )
