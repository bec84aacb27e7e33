"""Policy and value networks, built to fit the spaces: :func:`make_policy`, :func:`make_value`.

* :mod:`pglab.nets.base`: the contracts (:class:`Policy`, :class:`ValueFunction`, samplers);
* :mod:`pglab.nets.mlp`: MLPs with a categorical or diagonal-Gaussian head;
* :mod:`pglab.nets.transformer`: a causal transformer for token-sequence observations;
* :mod:`pglab.nets.pretrained`: a pretrained causal language model (``algo.policy``).
"""

from __future__ import annotations

import gymnasium as gym
from torch import nn

from pglab.config import Activation, PolicyConfig, TransformerConfig
from pglab.envs.spaces import TokenSequence
from pglab.nets.base import Policy, Sampler, ValueFunction
from pglab.nets.mlp import CategoricalPolicy, GaussianPolicy, ValueNet, mlp_body, obs_dim
from pglab.nets.transformer import CausalTransformer, TokenPolicy, TokenValue, transformer_body

__all__ = ["Policy", "Sampler", "ValueFunction", "make_policy", "make_value"]


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: list[int],
    activation: Activation,
    log_std_init: float = 0.0,
    transformer: TransformerConfig | None = None,
    policy: PolicyConfig | None = None,
) -> Policy:
    """The policy that fits the spaces: the pretrained language model ``policy`` names
    (``policy.pretrained``), a causal transformer over token-sequence observations (sizes
    from ``transformer``), else an MLP with a categorical head for Discrete actions and a
    Gaussian one for a 1-D Box."""
    if policy is not None and policy.pretrained:
        if not isinstance(observation_space, TokenSequence):
            raise ValueError(f"a pretrained language model reads token sequences, not {observation_space}")
        from pglab.nets.pretrained import PretrainedPolicy  # transformers: the [lm] extra

        return PretrainedPolicy.load(policy, observation_space)
    if isinstance(observation_space, TokenSequence):
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"a token-sequence observation needs Discrete actions (tokens), not {action_space}")
        body = transformer_body(observation_space, transformer or TransformerConfig())
        return TokenPolicy(body, body.tok.embedding_dim, int(action_space.n), observation_space.reply_width)
    in_dim = obs_dim(observation_space)
    body = mlp_body(in_dim, hidden, activation)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(body, hidden[-1], int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(body, hidden[-1], int(action_space.shape[0]), log_std_init)
    raise ValueError(f"action space {action_space} is not supported (Discrete or 1-D Box)")


def make_value(
    observation_space: gym.Space,
    hidden: list[int],
    activation: Activation,
    transformer: TransformerConfig | None = None,
    body: nn.Module | None = None,
) -> ValueFunction:
    """The critic V(s) that fits the observation space (pass a policy's ``body`` to share it)."""
    if isinstance(observation_space, TokenSequence):
        if body is None:
            body = transformer_body(observation_space, transformer or TransformerConfig())
        assert isinstance(body, CausalTransformer)
        return TokenValue(body, body.tok.embedding_dim, observation_space.reply_width)
    return ValueNet(obs_dim(observation_space), hidden, activation, body=body)
