"""A2C: GAE by hand, bootstrapping in the rollout, normaliser state, learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.algos.a2c import A2C
from pglab.algos.common import discounted_returns, gae
from pglab.experiment import run
from pglab.nets import ValueFunction
from test_returns import chain_env
from test_run import read_metrics, reload_and_evaluate

# Three envs, three steps, γ = 0.5. Column 0 terminates at t=1; column 1 is truncated at
# t=1 (bootstrap from V(final obs) = 8); column 2 runs through (bootstrap V(next obs) = 4).
R = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 1.0], [1.0, 2.0, 2.0]])
V = torch.tensor([[2.0, 4.0, 1.0], [1.0, 3.0, 2.0], [2.0, 4.0, 3.0]])
NEXT_V = torch.tensor([[1.0, 3.0, 2.0], [5.0, 8.0, 3.0], [0.5, 1.0, 4.0]])
TERM = torch.tensor([[False, False, False], [True, False, False], [False, False, False]])
DONE = torch.tensor([[False, False, False], [True, True, False], [False, False, False]])


def test_gae_by_hand_with_terminated_and_truncated_episodes() -> None:
    g, lam = 0.5, 0.5
    d = R + g * NEXT_V * (~TERM) - V  # one-step TD errors
    assert d[1].tolist() == [0.0, 3.0, 0.5]  # terminated: no bootstrap; truncated: V(final obs) = 8
    expected = torch.empty(3, 3)
    expected[2] = d[2]
    expected[1] = d[1] + g * lam * (~DONE[1]) * expected[2]
    expected[0] = d[0] + g * lam * (~DONE[0]) * expected[1]
    assert torch.allclose(gae(R, V, NEXT_V, TERM, DONE, g, lam), expected)
    # the numbers themselves, column 2: d = [0.0, 0.5, 1.0] -> A = [0.0 + .25·(0.5 + .25·1.0), 0.75, 1.0]
    assert gae(R, V, NEXT_V, TERM, DONE, g, lam)[:, 2].tolist() == [0.1875, 0.75, 1.0]


def test_gae_with_lambda_one_is_the_n_step_return_minus_v() -> None:
    g = 0.5
    # bootstrap at episode ends: 0 if terminated, V(final obs) if truncated; V(next obs) at the rollout end
    bootstrap = torch.where(TERM, torch.zeros_like(NEXT_V), NEXT_V)
    ends = DONE.clone()
    ends[-1] = True
    n_step = discounted_returns(R, ends, bootstrap, g)
    assert torch.allclose(gae(R, V, NEXT_V, TERM, DONE, g, 1.0), n_step - V)
    assert n_step[:, 1].tolist() == [2 + 0.5 * (2 + 0.5 * 8), 2 + 0.5 * 8, 2 + 0.5 * 1.0]


def test_gae_with_lambda_zero_is_the_td_error() -> None:
    g = 0.5
    assert torch.allclose(gae(R, V, NEXT_V, TERM, DONE, g, 0.0), R + g * NEXT_V * (~TERM) - V)


class ReadableCritic(ValueFunction):
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return 10.0 * obs[:, 0]


def test_collect_bootstraps_from_the_state_each_step_actually_reached() -> None:
    env = chain_env()  # env 0 terminates after 2 steps, env 1 is cut by a 3-step time limit; obs = [t]
    cfg = make_config("algo=a2c", "~tuned", "algo.n_steps=4", "algo.gamma=0.5")
    agent = A2C(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"))
    agent.value = ReadableCritic()  # a critic we can read: V(s) = 10 t
    buf = agent.buffers(env)
    obs, _ = env.reset()
    agent.collect(env, obs, buf)
    assert buf["dones"].T.tolist() == [[False, True, False, True], [False, False, True, False]]
    assert buf["terminated"].T.tolist() == [[False, True, False, True], [False, False, False, False]]
    values, next_values = agent.rollout_values(buf)
    assert values.T.tolist() == [[0, 10, 0, 10], [0, 10, 20, 0]]
    # env 1: V(1), V(2), V(final obs 3) at the time-limit cut, V(next obs 1) at the rollout end
    assert next_values[:, 1].tolist() == [10, 20, 30, 10]
    assert next_values[:, 0].tolist() == [10, 20, 10, 20]  # 20s are terminal: multiplied by 0
    adv = gae(buf["rewards"], values, next_values, buf["terminated"], buf["dones"], 0.5, 1.0)
    assert (adv + values)[:, 1].tolist() == [5.5, 9.0, 16.0, 6.0]  # 1 + .5(1 + .5(1 + .5·30)) = 5.5
    returns, lengths = agent.finished_episodes(buf)
    assert sorted(returns.tolist()) == [2.0, 2.0, 3.0] and sorted(lengths.tolist()) == [2, 2, 3]


def test_running_mean_std_matches_the_batch_statistics() -> None:
    from pglab.algos.common import RunningMeanStd

    rms = RunningMeanStd((2,), eps=0.0)
    data = torch.randn(1000, 2, dtype=torch.float64) * torch.tensor([3.0, 0.1]) + torch.tensor([5.0, -1.0])
    for chunk in data.split(37):
        rms.update(chunk)
    assert torch.allclose(rms.mean, data.mean(0)) and torch.allclose(rms.var, data.var(0, unbiased=False))


@pytest.mark.slow
def test_normaliser_statistics_are_checkpointed_and_used_at_evaluation(tmp_path: Path) -> None:
    cfg = make_config(
        "algo=a2c",
        "env=cartpole",
        "algo.normalize_obs=true",
        "algo.normalize_reward=true",
        "total_steps=20000",
        "eval.final_episodes=10",
        "eval.every_steps=100000",
    )
    final = run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    obs_rms = ckpt["agent"]["obs_rms"]
    # every observation counted once: the 16 first ones after reset, then one per env step
    assert float(obs_rms["count"]) == pytest.approx(20000 + 16 + 1e-4)
    assert obs_rms["var"].min() > 0
    assert "ret_rms" in ckpt["agent"]
    assert reload_and_evaluate(cfg, ckpt) == final  # the saved statistics reproduce the evaluation
    fresh = dict(
        ckpt["agent"],
        obs_rms={k: torch.zeros_like(v) for k, v in obs_rms.items()} | {"var": torch.ones_like(obs_rms["var"])},
    )
    assert reload_and_evaluate(cfg, {**ckpt, "agent": fresh}) != final  # and they matter


@pytest.mark.slow
def test_a2c_learns_cartpole(tmp_path: Path) -> None:
    cfg = make_config("algo=a2c", "env=cartpole", "seed=0", "total_steps=150000", "eval.every_steps=1000000")
    final = run(cfg, tmp_path)
    assert final >= 450, final
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] == 150000  # 16 envs × 5 steps per update divides the budget
    assert {"loss/policy", "loss/value", "loss/entropy", "train/grad_norm"} <= set(read_metrics(tmp_path)[1])


@pytest.mark.slow
def test_a2c_continuous_actions_and_shared_network(tmp_path: Path) -> None:
    cfg = make_config(
        "algo=a2c",
        "env=mountaincar_continuous",
        "algo.shared_network=true",
        "algo.optimizer=adam",
        "total_steps=8000",
        "eval.final_episodes=2",
        "eval.episodes=2",
    )
    run(cfg, tmp_path)
    state = torch.load(tmp_path / "policy.pt", weights_only=True)["agent"]["nets"]
    # one body: the value net's body is the policy's, stored under both names, equal
    assert torch.equal(state["policy.body.0.weight"], state["value.body.0.weight"])
    assert "policy.log_std" in state


@pytest.mark.slow
def test_a2c_solves_mountaincar_in_seconds_and_stops_when_solved(tmp_path: Path) -> None:
    """The tuned setting on the torch MountainCar: 100 deterministic evaluation episodes
    at or above -110 within 2M steps (seed 0 gets there at about 1M, ~10 s here)."""
    cfg = make_config(
        "algo=a2c",
        "env=mountaincar",
        "seed=0",
        "total_steps=2000000",
        "eval.episodes=100",
        "eval.num_envs=100",
        "eval.every_steps=50000",
        "eval.stop_when_solved=true",
    )
    assert cfg.env.backend.value == "auto" and cfg.env.num_envs == 128
    final = run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["solved_at_env_steps"] is not None, summary["final"]
    assert final >= -110.0 and summary["final"]["success_rate"] == 1.0
    # stopped at the evaluation that solved it; the final evaluation (same seeds, same policy) agrees
    assert summary["env_steps"] == summary["solved_at_env_steps"] < 2_000_000
    assert 0 < summary["solved_at_train_s"] <= summary["train_s"]
    evals = [row for row in read_metrics(tmp_path) if "eval/return_mean" in row]
    assert evals[-2]["eval/return_mean"] == final and all(r["eval/return_mean"] < -110 for r in evals[:-2])


@pytest.mark.slow
def test_a_compiled_run_trains_and_saves_the_plain_state_dict(tmp_path: Path) -> None:
    """``hardware.compile`` compiles the networks in place: the run works, and its checkpoint
    has the uncompiled module's keys, so it loads into a plain agent and evaluates the same."""
    cfg = make_config(
        "algo=a2c", "env=mountaincar", "hardware.compile=true", "total_steps=4096", "eval.final_episodes=10"
    )
    final = run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["agent"]["nets"])
    plain = make_config("algo=a2c", "env=mountaincar", "total_steps=4096", "eval.final_episodes=10")
    assert reload_and_evaluate(plain, ckpt) == final
