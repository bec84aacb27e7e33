"""The policies' fast sampling and log-probabilities against torch.distributions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats

from pglab.config import Activation
from pglab.nets import make_policy

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def test_categorical_log_prob_and_entropy_equal_torch_distributions() -> None:
    torch.manual_seed(0)
    policy = make_policy(OBS, gym.spaces.Discrete(5), [16], Activation.tanh)
    with torch.no_grad():
        policy.head.weight.mul_(300.0)  # far from uniform
    obs = torch.randn(257, 3)
    actions = torch.randint(0, 5, (257,))
    logp, entropy = policy.log_prob_entropy(obs, actions)
    dist = policy.distribution(obs)
    assert torch.allclose(logp, dist.log_prob(actions), atol=1e-5)
    assert torch.allclose(entropy, dist.entropy(), atol=1e-5)
    assert entropy.std() > 0.1  # the rows really differ


def test_categorical_samples_follow_the_softmax() -> None:
    torch.manual_seed(1)
    policy = make_policy(OBS, gym.spaces.Discrete(4), [8], Activation.tanh)
    probs = torch.tensor([0.05, 0.6, 0.1, 0.25])
    with torch.no_grad():
        policy.head.weight.zero_()
        policy.head.bias.copy_(probs.log())
    n = 200_000
    actions = policy.sample(torch.randn(n, 3))
    assert actions.dtype == torch.long and actions.shape == (n,)
    counts = torch.bincount(actions, minlength=4).numpy()
    assert counts.sum() == n
    expected = probs.double().numpy() * n
    assert stats.chisquare(counts, expected * (n / expected.sum())).pvalue > 1e-3
    assert policy.act(torch.randn(5, 3), deterministic=True).tolist() == [1] * 5


def test_gaussian_log_prob_entropy_and_samples() -> None:
    torch.manual_seed(2)
    policy = make_policy(OBS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), [16], Activation.relu, log_std_init=-0.5)
    obs = torch.randn(300, 3)
    actions = torch.randn(300, 2)
    logp, entropy = policy.log_prob_entropy(obs, actions)
    dist = policy.distribution(obs)
    assert torch.allclose(logp, dist.log_prob(actions), atol=1e-5)
    assert torch.allclose(entropy, dist.entropy(), atol=1e-6)
    one = torch.zeros(100_000, 3)
    draws = policy.sample(one) - policy.mode(one)
    assert draws.std(0).tolist() == pytest.approx([np.exp(-0.5)] * 2, rel=0.02)
    assert draws.mean(0).abs().max() < 0.01
