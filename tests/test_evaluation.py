"""The evaluation protocol: exact episode counts, success, determinism, no RNG side effects."""

from __future__ import annotations

import pytest
import torch

from pglab.config import SuccessWhen
from pglab.evaluation import evaluate
from test_returns import chain_env


def always_zero(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], dtype=torch.long)


def test_runs_exactly_the_asked_episodes_in_fixed_per_env_quotas() -> None:
    env = chain_env()  # env 0: 2-step episodes that terminate; env 1: 3-step, truncated
    result = evaluate(always_zero, env, episodes=5, seed=7, success_when=SuccessWhen.terminated)
    # quotas: env 0 runs (5+0)//2 = 2 episodes, env 1 runs (5+1)//2 = 3
    assert sorted(result.returns.tolist()) == [2.0, 2.0, 3.0, 3.0, 3.0]
    assert sorted(result.lengths.tolist()) == [2, 2, 3, 3, 3]
    m = result.metrics()
    assert m["eval/return_mean"] == 13 / 5
    assert m["eval/return_std"] == pytest.approx((0.6 * 0.4) ** 0.5)  # population std of 2,2,3,3,3
    assert m["eval/success_rate"] == 2 / 5


def test_success_when_truncated_counts_survival() -> None:
    env = chain_env()
    result = evaluate(always_zero, env, episodes=4, seed=7, success_when=SuccessWhen.truncated)
    assert result.metrics()["eval/success_rate"] == 2 / 4


def test_evaluation_is_repeatable_and_leaves_the_training_rng_alone() -> None:
    from conftest import make_config
    from pglab.envs import make_vec_env

    cfg = make_config("env=cartpole")
    env = make_vec_env(cfg.env, 4, seed=123, device=torch.device("cpu"))
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)

    def greedy(obs: torch.Tensor) -> torch.Tensor:
        return net(obs).argmax(-1)

    state = torch.random.get_rng_state()
    a = evaluate(greedy, env, episodes=6, seed=99, success_when=SuccessWhen.truncated)
    b = evaluate(greedy, env, episodes=6, seed=99, success_when=SuccessWhen.truncated)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.returns.tolist() == b.returns.tolist()
    assert len(a.returns) == 6
