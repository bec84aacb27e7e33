"""What every policy and critic offers the algorithms: the contracts of :mod:`pglab.nets`.

An algorithm scores actions in one of three layouts, and each network says how it scores
them: single observations (``obs[B, ...]``), whole episodes (``[T, N]``, episode n in
column n from step 0: REINFORCE, SFT) and rollout pieces (``[T, N]``, episodes continuing
across rollouts: A2C). A plain network scores the valid steps one by one; a sequence
network (:class:`~pglab.nets.transformer.TokenPolicy`, ``sequence = True``) overrides the
layout methods to score each episode in one causal pass. So the algorithms never ask what
kind of network they hold.

Shapes: ``log_prob`` and ``entropy`` are ``[B]``; full log-probabilities (categorical
policies only) are ``[B, A]``.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Protocol

import torch
from torch import nn
from torch.distributions import Distribution


class Sampler(Protocol):
    """``obs -> actions`` for rollouts; ``reset()`` after every update (a cache is stale then)."""

    def reset(self) -> None: ...

    def __call__(self, obs: torch.Tensor) -> torch.Tensor: ...


def terms_from_log_probs(logp_all: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π(a|s) [B], entropy [B])`` from full log-probabilities ``[B, A]`` and actions ``[B]``."""
    probs = logp_all.exp()
    return logp_all.gather(1, actions.long()[:, None]).squeeze(1), -(probs * logp_all).sum(dim=1)


class Policy(nn.Module):
    """A stochastic policy π(a|s): ``body`` (hidden layers, possibly shared with a critic)
    and a head. Subclasses build the distribution; the rest is shared."""

    body: nn.Module
    sequence: ClassVar[bool] = False  # scores whole episodes in one pass (a causal transformer)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """π(·|obs) for ``obs[B, obs_dim]``; ``log_prob``/``entropy`` give ``[B]``."""
        raise NotImplementedError

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action used in evaluation (argmax / Gaussian mean)."""
        raise NotImplementedError

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """An action drawn from π(·|obs) for each row of ``obs[B, obs_dim]``."""
        raise NotImplementedError

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log π(actions|obs) [B], entropy of π(·|obs) [B])``, differentiable."""
        raise NotImplementedError

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, A]`` log-probabilities of every action (categorical policies; a KL to a
        reference policy needs them)."""
        raise NotImplementedError(f"{type(self).__name__} has no finite action set")

    def sampler(self) -> Sampler:
        """A callable ``obs -> actions`` for rollouts, with ``reset()`` to call after every
        update; a policy that can reuse work between steps (a transformer's key-value cache)
        returns its own."""
        return PlainSampler(self)

    def reference_copy(self) -> Policy:
        """A copy of this policy that never trains: a KL penalty's reference."""
        ref = copy.deepcopy(self)
        ref.requires_grad_(False)
        ref.eval()
        return ref

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Sample an action (or take the mode) for ``obs[B, obs_dim]``."""
        if deterministic:
            return self.mode(obs)
        return self.sample(obs)

    # layouts: the valid steps of whole episodes, and every step of a rollout

    def episode_terms(
        self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp [B], entropy [B])`` of the ``B = valid.sum()`` valid steps of episodes
        ``obs[T, N, ...]``, ``actions[T, N]``, in ``obs[valid]`` order."""
        return self.log_prob_entropy(obs[valid], actions[valid])

    def episode_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, A]`` full log-probabilities of the same valid steps."""
        return self.log_probs(obs[valid])

    def rollout_terms(
        self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp [T·N], entropy [T·N])`` of every step of a rollout ``obs[T, N, ...]``, in
        ``obs.flatten(0, 1)`` order (``dones[T, N]``: where episodes end inside it)."""
        return self.log_prob_entropy(obs.flatten(0, 1), actions.flatten(0, 1))

    def rollout_log_probs_all(self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T·N, A]`` full log-probabilities of every step of a rollout."""
        return self.log_probs(obs.flatten(0, 1))


class PlainSampler:
    """What :meth:`Policy.sampler` gives a policy without a cache: its ``sample``."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def reset(self) -> None:
        pass

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.sample(obs)


class ValueFunction(nn.Module):
    """A critic V(s): ``obs[B, ...] -> [B]``; :meth:`rollout_values` scores a whole rollout."""

    body: nn.Module
    sequence: ClassVar[bool] = False

    def rollout_values(self, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` V at every step of a rollout ``obs[T, N, ...]``."""
        steps, n = dones.shape
        return self(obs.flatten(0, 1)).view(steps, n)
