"""The REINFORCE estimator is unbiased, for every baseline, on a bandit with an exact gradient.

A 3-armed bandit with Gaussian rewards (means MU, std 1): one-step episodes, γ = 1. The
policy is pglab's own categorical MLP at a fixed observation, so the exact gradient of
J(θ) = Σ_a π_θ(a) μ_a comes from autograd. The estimate is ``-grad`` of the agent's own
policy loss on collected batches (advantage normalisation off), averaged over M batches.

Tolerance: each output-bias component of the mean estimate lies within 5 standard errors
(SE = batch-to-batch std / √M) of the exact gradient — for a correct estimator a miss
has probability ~6e-7 per component — and the whole gradient vector is within 10 % in
norm. The batch-mean baseline includes each sample's own return, so it is biased; with
one-step episodes exactly by a factor: R - mean(all) = (N-1)/N · (R - mean(others)), the
leave-one-out advantage, so it is checked against (N-1)/N times the exact gradient. With
N = 4 that bias is 25 %: an estimator biased like the batch mean fails the 10 % norm
check (the unbiased ones measure ~5 %).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import make_config
from pglab.algos.reinforce import Reinforce
from pglab.envs import TorchVectorEnv

MU = np.array([1.0, 2.0, 4.0])
N = 4  # episodes per batch: small, so the batch-mean baseline's bias (1/N) would show
M = 1200  # batches


class Bandit(gym.Env):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        reward = float(MU[action] + self.np_random.normal())
        return np.ones(1, np.float32), reward, True, False, {}


def make_agent(baseline: str) -> tuple[Reinforce, TorchVectorEnv]:
    venv = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.TimeLimit(Bandit(), 1)] * N, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    env = TorchVectorEnv(venv, device=torch.device("cpu"), seeds=1)
    cfg = make_config(
        f"algo.baseline={baseline}", "algo.gamma=1.0", "algo.normalize_advantage=false", "algo.hidden_sizes=[8]"
    )
    torch.manual_seed(0)
    agent = Reinforce(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 1)
    with torch.no_grad():
        agent.policy.head.bias.copy_(torch.tensor([0.6, -0.2, -0.5]))  # away from uniform
        if agent.value is not None:  # a fixed critic: independent of the samples, so no bias
            for p in agent.value.parameters():
                p.zero_()
            agent.value.head.bias.fill_(2.5)
    return agent, env


def exact_gradient(agent: Reinforce) -> torch.Tensor:
    params = list(agent.policy.parameters())
    probs = torch.softmax(agent.policy.logits(torch.ones(1, 1))[0], -1)
    J = (probs * torch.as_tensor(MU, dtype=torch.float32)).sum()
    return torch.cat([g.flatten() for g in torch.autograd.grad(J, params)])


def sampled_gradients(agent: Reinforce, env: TorchVectorEnv) -> torch.Tensor:
    """``[M, P]``: the REINFORCE gradient estimate of M independent batches."""
    params = list(agent.policy.parameters())
    buf = agent.buffers(env)
    torch.manual_seed(123)
    out = []
    for _ in range(M):
        T = agent.collect(env, buf)
        _, parts = agent.loss(buf, T)
        grads = torch.autograd.grad(-parts["loss/policy"], params)
        out.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(out)


_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def estimate(baseline: str) -> tuple[torch.Tensor, torch.Tensor]:
    if baseline not in _cache:
        agent, env = make_agent(baseline)
        _cache[baseline] = (exact_gradient(agent), sampled_gradients(agent, env))
    return _cache[baseline]


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["none", "mean", "value", "leave_one_out"])
def test_mean_gradient_matches_the_exact_gradient(baseline: str) -> None:
    exact, samples = estimate(baseline)
    target = exact * ((N - 1) / N if baseline == "mean" else 1.0)
    mean = samples.mean(0)
    se = samples.std(0) / M**0.5
    bias = slice(-3, None)  # the output layer's bias: d J / d logits
    z = (mean[bias] - target[bias]) / se[bias]
    assert z.abs().max() < 5, (baseline, z, mean[bias], target[bias])
    assert (mean - target).norm() / target.norm() < 0.10, baseline


@pytest.mark.slow
def test_every_baseline_lowers_the_variance() -> None:
    def total_variance(baseline: str) -> float:
        return float(estimate(baseline)[1].var(0).sum())

    none = total_variance("none")
    for baseline in ("mean", "value", "leave_one_out"):
        assert total_variance(baseline) < 0.5 * none, baseline
