"""Reward-to-go, bootstrapping at episode ends, and REINFORCE's baselines, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import make_config
from pglab.algos.common import discounted_returns
from pglab.algos.reinforce import Reinforce
from pglab.config import Baseline, ConfigError
from pglab.envs import TorchVectorEnv
from pglab.experiment import run
from pglab.preflight import preflight
from test_run import reload_and_evaluate


def test_discounted_returns_with_terminal_truncated_and_cut_off_episodes() -> None:
    gamma = 0.5
    # column 0: episode terminates at t=1 (bootstrap 0); next one truncated at t=3 with V=4
    # column 1: truncated at t=2 with V(final obs)=10; a new episode cut off after t=3 with V=6
    # column 2: no episode end at all; the rollout ends with bootstrap 0
    rewards = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 3.0], [1.0, 0.0, 4.0]])
    dones = torch.tensor([[False, False, False], [True, False, False], [False, True, False], [True, False, False]])
    bootstrap = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [4.0, 6.0, 0.0]])
    expected = torch.tensor(
        [
            [1 + 0.5 * 1, 0 + 0.5 * 3.5, 1 + 0.5 * 4.5],
            [1 + 0.5 * 0, 0 + 0.5 * 7, 2 + 0.5 * 5],
            [1 + 0.5 * 3, 2 + 0.5 * 10, 3 + 0.5 * 4],
            [1 + 0.5 * 4, 0 + 0.5 * 6, 4 + 0.5 * 0],
        ]
    )
    assert torch.allclose(discounted_returns(rewards, dones, bootstrap, gamma), expected)


class Chain(gym.Env):
    """Observation = [steps taken]; reward 1 per step; terminates after ``term_at`` steps if set."""

    def __init__(self, term_at: int | None) -> None:
        self.term_at = term_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.term_at is not None and self.t >= self.term_at
        return np.array([float(self.t)], np.float32), 1.0, terminated, False, {}


def chain_env() -> TorchVectorEnv:
    """Env 0 terminates after 2 steps; env 1 is cut by a 3-step time limit."""
    fns = [
        lambda: gym.wrappers.TimeLimit(Chain(term_at=2), 3),
        lambda: gym.wrappers.TimeLimit(Chain(term_at=None), 3),
    ]
    venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return TorchVectorEnv(venv, device=torch.device("cpu"), seeds=0)


def agent_for(env: TorchVectorEnv, baseline: str, critic_value: float = 10.0) -> Reinforce:
    cfg = make_config(f"algo.baseline={baseline}", "algo.gamma=0.5", "algo.normalize_advantage=false")
    agent = Reinforce(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 3)
    if agent.value is not None:  # a constant critic, V(s) = critic_value
        with torch.no_grad():
            for p in agent.value.parameters():
                p.zero_()
            agent.value.head.bias.fill_(critic_value)
    return agent


def test_collect_bootstraps_truncated_episodes_from_the_critic_and_never_terminated_ones() -> None:
    env = chain_env()
    agent = agent_for(env, "value")
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    assert T == 3
    assert buf["valid"][:T].tolist() == [[True, True], [True, True], [False, True]]
    assert buf["dones"][:T].tolist() == [[False, False], [True, False], [False, True]]
    assert buf["cut"][:T].tolist() == [[False, False], [False, False], [False, True]]
    assert agent.bootstrap(buf, T).tolist() == [[0, 0], [0, 0], [0, 10.0]]
    assert buf["final_obs"][2, 1, 0].item() == 3.0  # the state the cut reached, not the reset's
    assert buf["ep_returns"].tolist() == [2.0, 3.0]
    assert buf["ep_lengths"].tolist() == [2, 3]
    G = agent.returns_to_go(buf, T)
    # env 0 terminated: 1 + 0.5·1, 1.  env 1 truncated, V(final)=10: 1+0.5·(1+0.5·(1+0.5·10))
    assert G[:2, 0].tolist() == [1.5, 1.0]
    assert G[:, 1].tolist() == [3.0, 4.0, 6.0]
    # observations recorded are the ones acted on: t = 0, 1, 2
    assert buf["obs"][:T, 1, 0].tolist() == [0.0, 1.0, 2.0]


def test_without_a_critic_the_reward_to_go_ends_at_the_time_limit() -> None:
    env = chain_env()
    agent = agent_for(env, "none")
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    G = agent.returns_to_go(buf, T)
    assert agent.bootstrap(buf, T).abs().sum() == 0
    assert G[:, 1].tolist() == [1.75, 1.5, 1.0]
    assert G[:2, 0].tolist() == [1.5, 1.0]


# A batch of two episodes: env 0 ran 2 steps, env 1 ran 3. Row-major valid order:
# G = [1.5, 3.0, 1.0, 4.0, 6.0].
RETURNS = torch.tensor([[1.5, 3.0], [1.0, 4.0], [99.0, 6.0]])  # 99: after env 0's end, never used
VALID = torch.tensor([[True, True], [True, True], [False, True]])


@pytest.mark.parametrize("baseline", ["none", "mean", "value", "leave_one_out"])
def test_advantages_of_each_baseline(baseline: str) -> None:
    env = chain_env()
    agent = agent_for(env, baseline, critic_value=2.0)
    G = torch.tensor([1.5, 3.0, 1.0, 4.0, 6.0])
    adv, values = agent.advantages(RETURNS, VALID, torch.zeros(5, 1))
    if baseline == "none":
        assert adv.tolist() == G.tolist() and values is None
    elif baseline == "mean":
        assert torch.allclose(adv, G - 3.1) and values is None
    elif baseline == "value":
        assert torch.allclose(adv, G - 2.0)
        assert values is not None and values.requires_grad
    else:
        # each step's baseline is the other episode's reward-to-go at the same t (0 once it ended)
        assert adv.tolist() == [1.5 - 3.0, 3.0 - 1.5, 1.0 - 4.0, 4.0 - 1.0, 6.0 - 0.0]
        assert values is None


def test_leave_one_out_over_many_episodes_is_the_mean_of_the_others() -> None:
    env = chain_env()
    agent = agent_for(env, "leave_one_out")
    returns = torch.tensor([[1.0, 2.0, 6.0, 7.0]])  # four one-step episodes
    adv, _ = agent.advantages(returns, torch.ones(1, 4, dtype=torch.bool), torch.zeros(4, 1))
    expected = [1 - 15 / 3, 2 - 14 / 3, 6 - 10 / 3, 7 - 9 / 3]
    assert adv.tolist() == pytest.approx(expected)


def test_advantage_normalisation_standardises_over_the_batch() -> None:
    env = chain_env()
    cfg = make_config("algo.baseline=none", "algo.normalize_advantage=true")
    agent = Reinforce(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 3)
    returns = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    adv, _ = agent.advantages(returns, torch.ones(1, 4, dtype=torch.bool), torch.zeros(4, 1))
    expected = (returns[0] - 3.0) / (returns.std() + 1e-8)
    assert torch.allclose(adv, expected)
    assert abs(float(adv.mean())) < 1e-6


def test_a_steps_env_steps_count_the_transitions_used() -> None:
    env = chain_env()
    agent = agent_for(env, Baseline.mean.value)
    seen: list[int] = []
    agent.learn(env, total_steps=10, on_update=lambda u: seen.append(u.env_steps) or True)
    assert seen == [5, 10]  # 2 + 3 valid transitions per update


def test_reinforce_normalises_observations_as_a2c_and_checkpoints_the_statistics(tmp_path: Path) -> None:
    """algo.normalize_obs for REINFORCE: every valid training observation counted once
    (after its batch's update), the statistics in policy.pt reproduce the final evaluation,
    and they matter (unit statistics evaluate differently); token ids are refused."""
    cfg = make_config(
        "algo=reinforce", "env=cartpole", "~tuned", "algo.normalize_obs=true", "total_steps=4000",
        "eval.final_episodes=10", "eval.every_steps=100000",
    )  # fmt: skip
    final = run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    obs_rms = ckpt["agent"]["obs_rms"]
    env_steps = json.loads((tmp_path / "summary.json").read_text())["env_steps"]
    assert float(obs_rms["count"]) == pytest.approx(env_steps + 1e-4)
    assert obs_rms["var"].min() > 0 and obs_rms["mean"].abs().max() > 0
    assert reload_and_evaluate(cfg, ckpt) == final
    unit = {"mean": torch.zeros_like(obs_rms["mean"]), "var": torch.ones_like(obs_rms["var"])}
    assert reload_and_evaluate(cfg, {**ckpt, "agent": dict(ckpt["agent"], obs_rms=obs_rms | unit)}) != final
    with pytest.raises(ConfigError, match=r"algo\.normalize_obs=true: dialogue_lm observes token ids"):
        preflight(make_config("algo=reinforce", "env=dialogue_lm", "algo.normalize_obs=true"))
