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
    # quotas: env 0 runs (5+1)//2 = 3 episodes, env 1 runs (5+0)//2 = 2 (the first envs take the remainder)
    assert sorted(result.returns.tolist()) == [2.0, 2.0, 2.0, 3.0, 3.0]
    assert sorted(result.lengths.tolist()) == [2, 2, 2, 3, 3]
    m = result.metrics()
    assert m["eval/return_mean"] == 12 / 5
    assert m["eval/return_std"] == pytest.approx((0.6 * 0.4) ** 0.5)  # population std of 2,2,2,3,3
    assert m["eval/success_rate"] == 3 / 5


def test_success_when_truncated_counts_survival() -> None:
    env = chain_env()
    result = evaluate(always_zero, env, episodes=4, seed=7, success_when=SuccessWhen.truncated)
    assert result.metrics()["eval/success_rate"] == 2 / 4


def test_evaluation_is_repeatable_and_leaves_the_training_rng_alone() -> None:
    from conftest import make_config
    from pglab.algos.reinforce import Reinforce
    from pglab.envs import env_seeds, make_vec_env, resolve_env

    cfg = make_config("env=cartpole")
    env = make_vec_env(resolve_env(cfg.env), 4, seed=123, device=torch.device("cpu"), stream="eval")
    torch.manual_seed(0)
    agent = Reinforce(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 500)
    seeds = env_seeds(123, 4, "eval")
    state = torch.random.get_rng_state()
    a = evaluate(agent.act, env, episodes=6, seed=seeds, success_when=SuccessWhen.truncated)
    b = evaluate(agent.act, env, episodes=6, seed=seeds, success_when=SuccessWhen.truncated)
    assert torch.equal(state, torch.random.get_rng_state())  # the training RNG is untouched
    assert a.returns.tolist() == b.returns.tolist()
    assert len(a.returns) == 6


def test_train_and_eval_seeds_are_distinct_and_do_not_overlap_across_run_seeds() -> None:
    from pglab.envs import env_seeds

    train0, train1 = set(env_seeds(0, 16, "train")), set(env_seeds(1, 16, "train"))
    eval0 = set(env_seeds(0, 16, "eval"))
    assert len(train0) == 16 and not train0 & train1 and not train0 & eval0
    assert env_seeds(0, 16, "train") == env_seeds(0, 16, "train")
