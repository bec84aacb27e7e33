"""The torch MountainCars against gymnasium itself: same states and actions, same bits."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from scipy import stats

from conftest import make_config
from pglab.config import ConfigError
from pglab.envs import make_vec_env, resolve_env
from pglab.envs.mountaincar import MountainCarContinuousVectorEnv, MountainCarVectorEnv, draw_mountain_car

N = 16


def _actions(kind: str, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per env: env i % 4 == 0 acts at random (its episodes run into the time limit); the
    others pump energy (push along the velocity) half of the time and so reach the flag."""
    pump = (rng.random(N) < 0.5) & (np.arange(N) % 4 != 0)
    if kind == "discrete":
        return np.where(pump, np.where(obs[:, 1] >= 0, 2, 0), rng.integers(0, 3, N)).astype(np.int64)
    random = rng.uniform(-1, 1, N).astype(np.float32)
    random[rng.random(N) < 0.05] = np.float32(1.0)  # the bounds themselves too
    random[rng.random(N) < 0.05] = np.float32(-1.0)
    push = (np.sign(obs[:, 1]) * rng.uniform(0.5, 1.0, N)).astype(np.float32)
    return np.where(pump, push, random).astype(np.float32)[:, None]


@pytest.mark.parametrize(
    ("kind", "gym_id", "cls", "steps"),
    [
        ("discrete", "MountainCar-v0", MountainCarVectorEnv, 800),
        ("continuous", "MountainCarContinuous-v0", MountainCarContinuousVectorEnv, 1100),
    ],
)
def test_every_step_is_gymnasiums_from_the_same_states_and_actions(
    kind: str, gym_id: str, cls: type, steps: int
) -> None:
    """N x steps >= 12,800 steps. Every episode starts both envs in the same float64 state:
    our own start state, or (every third episode) a state drawn from the whole observation
    box, so that speed limits and the left wall are hit too. Observations, rewards,
    terminated and truncated must be equal, bit for bit, and so must the final observations."""
    ours = cls(N, seeds=7)
    refs = [gym.make(gym_id) for _ in range(N)]
    rng = np.random.default_rng(0)
    episodes = np.zeros(N, dtype=int)

    def start(i: int, obs: torch.Tensor) -> np.ndarray:
        """Begin env i's next episode in both implementations; the start observation."""
        refs[i].reset(seed=int(rng.integers(2**31)))
        if episodes[i] % 3 == 2:
            p, v = rng.uniform(-1.2, 0.6), rng.uniform(-0.07, 0.07)
            ours.set_state([i], [p], [v])
            obs[i] = torch.tensor([p, v], dtype=torch.float32)
        else:
            p, v = float(ours.position[i]), float(ours.velocity[i])
        refs[i].unwrapped.state = np.array([p, v])  # what gymnasium's reset makes: float64
        episodes[i] += 1
        return obs[i].numpy()

    obs, _ = ours.reset()
    for i in range(N):
        start(i, obs)
    seen = {"terminated": 0, "truncated": 0, "left wall": 0, "speed limit": 0}
    for _ in range(steps):
        act = _actions(kind, obs.numpy(), rng)
        obs, reward, terminated, truncated, info = ours.step(torch.as_tensor(act))
        for i in range(N):
            o, r, term, trunc, _ = refs[i].step(act[i])
            assert np.array_equal(info["final_obs"][i].numpy(), o), (i, info["final_obs"][i], o)
            assert np.float32(r) == reward[i].item(), (i, r, reward[i])
            assert (term, trunc) == (bool(terminated[i]), bool(truncated[i])), (i, term, trunc)
            seen["terminated"] += term
            seen["truncated"] += trunc
            seen["left wall"] += bool(o[0] == np.float32(-1.2))
            seen["speed limit"] += bool(abs(o[1]) == np.float32(0.07))
            if term or trunc:
                start(i, obs)
            else:
                assert np.array_equal(obs[i].numpy(), o)
    assert N * steps >= 10_000
    assert seen["left wall"] >= 5 and seen["speed limit"] >= 5, seen  # every branch of the physics ran
    assert seen["terminated"] >= 20 and seen["truncated"] >= 4, seen


@pytest.mark.parametrize("cls", [MountainCarVectorEnv, MountainCarContinuousVectorEnv])
def test_start_states_are_uniform_on_gymnasiums_interval(cls: type) -> None:
    env = cls(4096, seeds=3)
    obs, _ = env.reset()
    starts = [obs[:, 0].double()]
    for _ in range(4):  # new episodes of the same envs draw new starts
        env.reset()
        starts.append(env.position.clone())
    x = torch.cat(starts).numpy()
    assert x.min() >= -0.6 and x.max() < -0.4 and (obs[:, 1] == 0).all()
    assert stats.kstest(x, stats.uniform(loc=-0.6, scale=0.2).cdf).pvalue > 0.01
    assert len(np.unique(x)) > 0.99 * len(x)


def test_a_sub_env_does_the_same_in_any_batch_and_seeds_repeat() -> None:
    actions = torch.randint(0, 3, (300, 64), generator=torch.Generator().manual_seed(1))
    big = MountainCarVectorEnv(64, seeds=list(range(100, 164)))
    small = MountainCarVectorEnv(1, seeds=[105])
    again = MountainCarVectorEnv(64, seeds=list(range(100, 164)))
    for env in (big, small, again):
        env.reset()
    for a in actions:
        ob, _, tb, _, _ = big.step(a)
        os_, _, ts, _, _ = small.step(a[5:6])
        oa, _, _, _, _ = again.step(a)
        assert torch.equal(ob[5], os_[0]) and bool(tb[5]) == bool(ts[0])
        assert torch.equal(ob, oa)


def test_gymnasium_registrations_pass_check_env_and_clip_continuous_actions() -> None:
    check_env(gym.make("pglab/MountainCar-v0").unwrapped, skip_render_check=True)
    check_env(gym.make("pglab/MountainCarContinuous-v0").unwrapped, skip_render_check=True)
    env = MountainCarContinuousVectorEnv(2, seeds=0)
    env.reset()
    _, reward, *_ = env.step(torch.tensor([[3.0], [-0.5]]))
    # clipped to 1.0 as SB3 and pglab's gymnasium adapter clip: penalty 0.1 * 1.0²
    assert reward.tolist() == pytest.approx([-0.1, -0.025])


def test_backend_picks_the_implementation() -> None:
    assert resolve_env(make_config("env=mountaincar").env).id == "pglab/MountainCar-v0"
    assert resolve_env(make_config("env=mountaincar", "env.backend=gymnasium").env).id == "MountainCar-v0"
    assert resolve_env(make_config("env=mountaincar_continuous").env).id == "pglab/MountainCarContinuous-v0"
    assert resolve_env(make_config("env=cartpole").env).id == "CartPole-v1"
    cfg = make_config("env=mountaincar_continuous")
    assert resolve_env(cfg.env).time_limit == 999
    env = make_vec_env(resolve_env(cfg.env), 3, seed=0, device=torch.device("cpu"))
    assert isinstance(env.unwrapped, MountainCarContinuousVectorEnv)
    with pytest.raises(ConfigError, match=r"^env.backend=torch: CartPole-v1 has no torch implementation"):
        resolve_env(make_config("env=cartpole", "env.backend=torch").env)
    with pytest.raises(ConfigError, match=r"^env.backend=gymnasium: pglab/Maze-v0 is pglab's own"):
        resolve_env(make_config("env=maze", "env.backend=gymnasium").env)


def test_sb3_sees_the_torch_mountaincar_through_its_vecenv_adapter() -> None:
    """SB3 bootstraps a time-limit cut from ``terminal_observation`` only when
    ``TimeLimit.truncated`` is set, and counts episodes from ``info["episode"]``."""
    from pglab.algos.sb3 import SB3VecEnv

    env = make_vec_env(resolve_env(make_config("env=mountaincar").env), 8, seed=0, device=torch.device("cpu"))
    venv = SB3VecEnv(env)
    obs = venv.reset()
    assert obs.shape == (8, 2) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(400):
        actions = np.where(rng.random(8) < 0.5, np.where(obs[:, 1] >= 0, 2, 0), rng.integers(0, 3, 8))
        obs, reward, done, infos = venv.step(actions)
        assert (reward == -1.0).all()
        for i in np.flatnonzero(done):
            ends += 1
            info = infos[i]
            final = info["terminal_observation"]
            at_flag = final[0] >= 0.5
            assert info["TimeLimit.truncated"] == (not at_flag)  # cut at 200 steps, or the flag
            assert info["episode"]["r"] == -info["episode"]["l"] and info["episode"]["l"] <= 200
            assert obs[i][1] == 0.0 and -0.6 <= obs[i][0] < -0.4  # already the next episode's start
        assert all(not infos[i] for i in np.flatnonzero(~done))
    assert ends >= 8


@pytest.mark.parametrize(("env_id", "goal"), [("MountainCar-v0", 0.5), ("MountainCarContinuous-v0", 0.45)])
def test_the_rgb_frame_is_gymnasiums_picture(env_id: str, goal: float) -> None:
    """Our numpy drawing against gymnasium's pygame one, at its 600 × 400: the same hill,
    car and flag wherever the car is (under 2 % of pixels differ, the lines' antialiasing),
    and a car moved by 0.1 changes the frame."""
    for position in (-1.1, -0.5, 0.0, 0.4):
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        env.unwrapped.state = np.array([position, 0.0])
        theirs = env.render()
        ours = draw_mountain_car(position, goal, 600, 400)
        assert ours.shape == theirs.shape == (400, 600, 3) and ours.dtype == np.uint8
        assert (np.abs(ours.astype(int) - theirs.astype(int)).max(-1) > 64).mean() < 0.02
        moved = draw_mountain_car(position + 0.1, goal, 600, 400)
        assert (moved != ours).any(-1).sum() > 500
    vec = MountainCarVectorEnv(num_envs=2, render_mode="rgb_array")
    vec.reset(seed=0)
    vec.set_state([0, 1], [-0.5, 0.3], [0.0, 0.0])
    frames = vec.render()
    assert len(frames) == 2 and frames[0].shape == (320, 480, 3)
    assert np.array_equal(frames[1], draw_mountain_car(0.3, 0.5))
