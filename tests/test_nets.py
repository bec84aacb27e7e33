"""The policies' fast sampling and log-probabilities against torch.distributions; the fast
tanh and the gradient clip against torch's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats

from pglab.algos.common import grad_norm_and_clip
from pglab.config import Activation
from pglab.nets import make_policy
from pglab.nets.activations import FastTanh

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


def test_fast_tanh_is_tanh_with_its_gradient_and_one_rounding() -> None:
    """2·σ(2x) − 1 against float64 tanh: within 2e-7 over the whole range (±1 and the
    limits included), the gradient 1 − tanh²; and the gradient-free path (in place) gives
    the same bits as the differentiable one, so a rollout's log-probs are the update's."""
    x = torch.cat([torch.linspace(-12.0, 12.0, 20_001), torch.tensor([0.0, float("inf"), float("-inf")])])
    exact = torch.tanh(x.double())
    fast = FastTanh()
    x.requires_grad_(True)
    y = fast(x)
    assert (y.double() - exact).abs().max() < 2e-7
    assert y[-3:].tolist() == [0.0, 1.0, -1.0]
    (grad,) = torch.autograd.grad(y.sum(), x)
    finite = slice(0, 20_001)
    assert torch.allclose(grad[finite].double(), 1 - exact[finite] ** 2, atol=1e-6, rtol=0)
    with torch.no_grad():
        assert torch.equal(fast(x), y.detach())
    policy = make_policy(OBS, gym.spaces.Discrete(3), [8, 8], Activation.fast_tanh)
    assert [type(m) for m in policy.body][1::2] == [FastTanh, FastTanh]


def test_grad_norm_and_clip_equals_torchs_clip_grad_norm() -> None:
    """The same norm and the same clipped gradients, bit for bit, clipped or not."""
    for max_norm in (0.5, 1e6, None):
        torch.manual_seed(0)
        nets = [torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)) for _ in "ab"]
        nets[1].load_state_dict(nets[0].state_dict())
        x = torch.randn(64, 3)
        for net in nets:
            (net(x) ** 2).sum().backward()
        ours = grad_norm_and_clip(nets[0].parameters(), max_norm)
        grads = [p.grad for p in nets[1].parameters()]
        torchs = (
            torch.nn.utils.clip_grad_norm_(nets[1].parameters(), max_norm)
            if max_norm
            else torch.nn.utils.get_total_norm(grads)
        )
        assert torch.equal(ours, torchs) and ours > 1.0
        assert all(torch.equal(p.grad, g) for p, g in zip(nets[0].parameters(), grads, strict=True))
    unused = torch.nn.Parameter(torch.ones(3))  # no gradient: left out, as torch leaves it out
    assert torch.equal(grad_norm_and_clip([*nets[0].parameters(), unused], None), ours) and unused.grad is None
    assert grad_norm_and_clip([unused], 1.0).item() == 0.0 and grad_norm_and_clip([], 1.0).item() == 0.0
