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


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: Activation, out_gain: float) -> nn.Sequential:
    """An MLP with orthogonal initialisation (gain √2 inside, ``out_gain`` at the output).

    A small output gain (0.01 for policy logits/means) starts the policy near uniform /
    near zero mean, which is what makes the first updates stable.
    """
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in itertools.pairwise(sizes):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, gain=math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, _ACTIVATIONS[activation]()]
    out = nn.Linear(sizes[-1], out_dim)
    nn.init.orthogonal_(out.weight, gain=out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def obs_dim(space: gym.Space) -> int:
    """Flat size of a Box observation."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"observation space {space} is not a Box")
    return int(math.prod(space.shape))


class Policy(nn.Module):
    """A stochastic policy π(a|s). Subclasses build the distribution; the rest is shared."""

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

    def __init__(self, in_dim: int, n_actions: int, hidden: list[int], activation: Activation) -> None:
        super().__init__()
        self.logits = mlp(in_dim, hidden, n_actions, activation, out_gain=0.01)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs.flatten(1)), validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs.flatten(1)).argmax(dim=-1)


class GaussianPolicy(Policy):
    """Diagonal Gaussian with a state-independent, learned log standard deviation.

    Samples are unbounded; the env adapter clips them to the action space, so the
    log-probability of the sampled (unclipped) action stays exact.
    """

    def __init__(
        self, in_dim: int, act_dim: int, hidden: list[int], activation: Activation, log_std_init: float
    ) -> None:
        super().__init__()
        self.mean = mlp(in_dim, hidden, act_dim, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        mean = self.mean(obs.flatten(1))
        normal = Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)
        return Independent(normal, 1, validate_args=False)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean(obs.flatten(1))


class ValueNet(nn.Module):
    """State-value critic V(s): ``obs[B, obs_dim] -> [B]``."""

    def __init__(self, in_dim: int, hidden: list[int], activation: Activation) -> None:
        super().__init__()
        self.v = mlp(in_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs.flatten(1)).squeeze(-1)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: list[int],
    activation: Activation,
    log_std_init: float = 0.0,
) -> Policy:
    """The policy that fits the action space: categorical for Discrete, Gaussian for Box."""
    in_dim = obs_dim(observation_space)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(in_dim, int(action_space.n), hidden, activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(in_dim, int(action_space.shape[0]), hidden, activation, log_std_init)
    raise ValueError(f"action space {action_space} is not supported (Discrete or 1-D Box)")
