"""Policy and value networks: an MLP body with a categorical or diagonal-Gaussian head.

Distributions are built with ``validate_args=False``: argument checks cost more than the
network itself at these sizes, and the inputs come from our own networks.

Shapes: B is a batch of observations, ``obs[B, obs_dim]``. A categorical policy's
actions are ``long[B]``; a Gaussian policy's are ``float[B, act_dim]``. ``log_prob`` and
``entropy`` always return ``[B]`` (summed over action dimensions for the Gaussian).
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from pglab.config import Activation

_ACTIVATIONS: dict[Activation, type[nn.Module]] = {Activation.tanh: nn.Tanh, Activation.relu: nn.ReLU}


def mlp_body(in_dim: int, hidden: list[int], activation: Activation) -> nn.Sequential:
    """Hidden layers only (``obs[B, in_dim] -> features[B, hidden[-1]]``), orthogonal init with gain √2."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise([in_dim, *hidden]):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, gain=math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, _ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def linear_head(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    """An output layer with orthogonal init. A small gain (0.01 for policy logits/means)
    starts the policy near uniform / near zero mean, which keeps the first updates stable."""
    out = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(out.weight, gain=gain)
    nn.init.zeros_(out.bias)
    return out


def obs_dim(space: gym.Space) -> int:
    """Flat size of a Box observation."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"observation space {space} is not a Box")
    return int(math.prod(space.shape))


class Policy(nn.Module):
    """A stochastic policy π(a|s): ``body`` (hidden layers, possibly shared with a critic)
    and a head. Subclasses build the distribution; the rest is shared."""

    body: nn.Module

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """π(·|obs) for ``obs[B, obs_dim]``; ``log_prob``/``entropy`` give ``[B]``."""
        raise NotImplementedError

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action used in evaluation (argmax / Gaussian mean)."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Sample an action (or take the mode) for ``obs[B, obs_dim]``."""
        if deterministic:
            return self.mode(obs)
        return self.distribution(obs).sample()


class CategoricalPolicy(Policy):
    """Softmax over ``n_actions`` logits."""

    def __init__(self, body: nn.Module, features: int, n_actions: int) -> None:
        super().__init__()
        self.body = body
        self.head = linear_head(features, n_actions, gain=0.01)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs.flatten(1)))

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs), validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(dim=-1)


class GaussianPolicy(Policy):
    """Diagonal Gaussian with a state-independent, learned log standard deviation.

    Samples are unbounded; the env adapter clips them to the action space, so the
    log-probability of the sampled (unclipped) action stays exact.
    """

    def __init__(self, body: nn.Module, features: int, act_dim: int, log_std_init: float) -> None:
        super().__init__()
        self.body = body
        self.head = linear_head(features, act_dim, gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        mean = self.mode(obs)
        normal = Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)
        return Independent(normal, 1, validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs.flatten(1)))


class ValueNet(nn.Module):
    """State-value critic V(s): ``obs[B, obs_dim] -> [B]``. Pass a policy's ``body`` to share it."""

    def __init__(self, in_dim: int, hidden: list[int], activation: Activation, body: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body if body is not None else mlp_body(in_dim, hidden, activation)
        self.head = linear_head(hidden[-1], 1, gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs.flatten(1))).squeeze(-1)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: list[int],
    activation: Activation,
    log_std_init: float = 0.0,
) -> Policy:
    """The policy that fits the action space: categorical for Discrete, Gaussian for Box."""
    in_dim = obs_dim(observation_space)
    body = mlp_body(in_dim, hidden, activation)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(body, hidden[-1], int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(body, hidden[-1], int(action_space.shape[0]), log_std_init)
    raise ValueError(f"action space {action_space} is not supported (Discrete or 1-D Box)")
