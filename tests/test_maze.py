"""The maze: perfect mazes, the shortest-path oracle, dynamics, batched == single, gymnasium."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import pglab.envs  # noqa: F401 - registers pglab/Maze-v0
from pglab.envs.maze import MazeEnv, MazeVectorEnv, bfs_distances, generate_mazes, room_tiles


@pytest.mark.parametrize("size", [5, 7, 11, 31])
def test_generated_mazes_are_perfect_and_the_oracle_is_the_bfs_distance(size: int) -> None:
    keys = torch.arange(40, dtype=torch.int64) * 7919
    open_, dist = generate_mazes(keys, size)
    rooms = (size // 2) ** 2
    goal = (size - 2, size - 2)
    for m in range(len(keys)):
        grid = open_[m].reshape(size, size).numpy()
        # outer ring is wall, every room is open, no tile with both coordinates even is open
        assert not grid[0].any() and not grid[-1].any() and not grid[:, 0].any() and not grid[:, -1].any()
        assert grid.flatten()[room_tiles(size).numpy()].all()
        assert not grid[::2, ::2].any()
        # a tree over the rooms: R rooms + R-1 passages, all connected
        assert grid.sum() == 2 * rooms - 1
        bfs = bfs_distances(grid, goal)
        assert ((bfs >= 0) == grid).all(), "every open tile is reachable from the goal"
        np.testing.assert_array_equal(dist[m].reshape(size, size).numpy(), bfs)


def test_a_maze_depends_only_on_its_key() -> None:
    keys = torch.tensor([5, 17, 123456789, 2**32 - 1], dtype=torch.int64)
    open_all, dist_all = generate_mazes(keys, 15)
    open_one, dist_one = generate_mazes(keys[2:3], 15)
    assert torch.equal(open_all[2:3], open_one) and torch.equal(dist_all[2:3], dist_one)
    assert len({tuple(row.tolist()) for row in open_all}) == 4, "different keys, different mazes"


def test_walls_block_and_the_shortest_path_reaches_the_goal_with_the_optimal_return() -> None:
    env = MazeVectorEnv(num_envs=1, size=11, maze_seed=3, step_cost=0.01, goal_reward=1.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 121) and obs.sum() == 1 and obs[0, 1 * 11 + 1] == 1  # top-left room
    # a move into a wall leaves the agent in place and costs a step; 'up' from the top row is a wall
    obs2, reward, terminated, truncated, _ = env.step(torch.tensor([0]))
    total = reward.item()
    assert torch.equal(obs2, obs) and total == pytest.approx(-0.01)
    assert not terminated.item() and not truncated.item()
    d = int(env.optimal_steps[0])
    path = env.shortest_path(0)
    assert len(path) == d + 1 and d > 0
    moves = {-11: 0, 1: 1, 11: 2, -1: 3}
    info: dict = {}
    for a, b in itertools.pairwise(path):
        _, reward, terminated, truncated, info = env.step(torch.tensor([moves[b - a]]))
        total += reward.item()
    assert terminated.item() and not truncated.item()
    assert info["success"].item()
    assert info["episode_length"].item() == d + 1  # the wasted first step counts
    assert info["episode_return"].item() == pytest.approx(1.0 - 0.01 * (d + 1), abs=1e-5)
    assert info["episode_stats"]["optimality"].item() == pytest.approx(d / (d + 1))
    assert info["episode_stats"]["optimal_return"].item() == pytest.approx(1.0 - 0.01 * d)
    assert total == pytest.approx(1.0 - 0.01 * (d + 1), abs=1e-5)


def test_the_time_limit_truncates_and_a_failed_episode_has_optimality_zero() -> None:
    env = MazeVectorEnv(num_envs=2, size=7, max_episode_steps=5)
    env.reset(seed=[1, 2])
    for _ in range(5):
        _, _, terminated, truncated, info = env.step(torch.tensor([0, 3]))  # up, left: into walls
    assert truncated.all() and not terminated.any()
    assert not info["success"].any()
    assert info["episode_stats"]["optimality"].tolist() == [0.0, 0.0]
    assert info["episode_length"].tolist() == [5, 5]


def test_random_layouts_give_a_new_maze_every_episode_and_local_views_see_walls() -> None:
    env = MazeVectorEnv(num_envs=3, size=9, layout="random", observation="local", view_radius=1)
    obs, _ = env.reset(seed=[10, 11, 12])
    assert obs.shape == (3, 9 + 2)
    # at the top-left room: the tiles up and left are walls (outer ring); the centre is open
    view = obs[:, :9].reshape(3, 3, 3)
    assert (view[:, 0, :] == 1).all() and (view[:, :, 0] == 1).all() and (view[:, 1, 1] == 0).all()
    assert torch.allclose(obs[:, 9:], torch.ones(3, 2))  # the goal is down-right, at full distance
    first = [env.maze_grid(i).copy() for i in range(3)]
    assert not np.array_equal(first[0], first[1])
    mazes = []
    for _ in range(40):  # 40 episodes of env 0 (its bank is refilled on the way)
        env._begin_where(torch.tensor([True, False, False]))
        mazes.append(env.maze_grid(0).tobytes())
        assert int(env.optimal_steps[0]) == bfs_distances(env.maze_grid(0), (7, 7))[1, 1]
    assert len(set(mazes)) >= 35


def _random_actions(n_steps: int, n_envs: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 4, (n_steps, n_envs), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 7, "max_episode_steps": 40},
        {"size": 9, "layout": "random", "observation": "local", "random_start": True, "max_episode_steps": 60},
    ],
)
def test_batched_and_single_envs_give_identical_trajectories(kwargs: dict) -> None:
    seeds = [3, 99, 2**31 + 5, 7]
    n_steps = 600
    actions = _random_actions(n_steps, len(seeds), seed=1)
    batched = MazeVectorEnv(num_envs=len(seeds), seeds=seeds, **kwargs)
    obs, _ = batched.reset()
    b_obs, b_next, b_rew, b_term, b_trunc = [obs], [], [], [], []
    for t in range(n_steps):
        obs, reward, terminated, truncated, info = batched.step(actions[t])
        b_obs.append(info["final_obs"])  # what the step reached (the single env shows it too)
        b_next.append(obs)  # after an autoreset: the next episode's first observation
        b_rew.append(reward)
        b_term.append(terminated)
        b_trunc.append(truncated)
    episodes = 0
    for i, seed in enumerate(seeds):
        single = gym.make("pglab/Maze-v0", **kwargs)
        obs_i, _ = single.reset(seed=seed)
        np.testing.assert_array_equal(obs_i, b_obs[0][i].numpy())
        for t in range(n_steps):
            obs_i, reward, terminated, truncated, _ = single.step(int(actions[t, i]))
            np.testing.assert_array_equal(obs_i, b_obs[t + 1][i].numpy())
            assert reward == pytest.approx(float(b_rew[t][i]), abs=1e-6)
            assert (terminated, truncated) == (bool(b_term[t][i]), bool(b_trunc[t][i]))
            if terminated or truncated:
                episodes += 1
                obs_i, _ = single.reset()
                np.testing.assert_array_equal(obs_i, b_next[t][i].numpy())
    assert episodes >= 8, "the comparison must cross many episode boundaries"


def test_the_batched_env_is_deterministic_for_a_seed() -> None:
    def rollout(seeds: list[int]) -> list[torch.Tensor]:
        env = MazeVectorEnv(num_envs=4, size=9, layout="random", observation="local", random_start=True)
        out = [env.reset(seed=seeds)[0]]
        for a in _random_actions(200, 4, seed=0):
            out.append(env.step(a)[0])
        return out

    a, b, c = rollout([1, 2, 3, 4]), rollout([1, 2, 3, 4]), rollout([5, 6, 7, 8])
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize(
    "kwargs", [{}, {"layout": "random", "observation": "local"}, {"size": 5, "random_start": True}]
)
def test_the_single_env_passes_gymnasiums_checker(kwargs: dict) -> None:
    check_env(gym.make("pglab/Maze-v0", **kwargs).unwrapped)


def test_renders_show_maze_agent_goal_and_path() -> None:
    env = MazeEnv(size=7, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    lines = text.splitlines()
    assert len(lines) == 7 and all(len(line) == 7 for line in lines)
    assert lines[1][1] == "A" and lines[5][5] == "G"
    assert text.count(".") == int(env.core.optimal_steps[0]) - 1  # the path between A and G
    rgb = MazeEnv(size=7, render_mode="rgb_array")
    rgb.reset(seed=0)
    img = rgb.render()
    assert img.shape == (56, 56, 3) and img.dtype == np.uint8
    assert tuple(img[8 + 4, 8 + 4]) == (220, 50, 50)  # the agent's tile, red
    assert tuple(img[40 + 4, 40 + 4]) == (60, 180, 75)  # the goal's tile, green
    assert img.std() > 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "size=8: must be an odd number"),
        ({"size": 3}, "size=3: must be an odd number"),
        ({"layout": "spiral"}, "layout='spiral': must be one of fixed, random"),
        ({"observation": "pixels"}, "observation='pixels'"),
        ({"step_cost": -1.0}, "step_cost=-1.0: must be >= 0"),
    ],
)
def test_bad_parameters_are_refused_with_the_parameter_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MazeVectorEnv(num_envs=1, **kwargs)


def test_a_new_seed_replaces_the_mazes_of_the_old_one() -> None:
    kwargs = {"size": 9, "layout": "random", "observation": "local"}
    reused = MazeVectorEnv(num_envs=2, **kwargs)
    reused.reset(seed=[0, 1])
    obs, _ = reused.reset(seed=[123, 124])
    fresh = MazeVectorEnv(num_envs=2, **kwargs)
    obs_fresh, _ = fresh.reset(seed=[123, 124])
    assert torch.equal(obs, obs_fresh)
    assert all(np.array_equal(reused.maze_grid(i), fresh.maze_grid(i)) for i in range(2))
    single = MazeEnv(**kwargs)
    single.reset(seed=0)
    single.reset(seed=123)
    assert np.array_equal(single.core.maze_grid(0), fresh.maze_grid(0))


def test_envs_work_when_made_or_stepped_under_inference_mode() -> None:
    with torch.inference_mode():
        batched = MazeVectorEnv(num_envs=2, size=7)
        single = gym.make("pglab/Maze-v0", size=7)
        single.reset(seed=0)
        single.step(1)
    batched.reset(seed=[0, 1])  # in-place updates outside inference mode must still work
    batched.step(torch.tensor([1, 2]))
    single.reset(seed=1)
    single.step(2)


def test_actions_outside_the_action_space_are_refused() -> None:
    env = MazeVectorEnv(num_envs=2, size=7)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be integers in \[0, 4\)"):
        env.step(torch.tensor([0, 4]))


def test_a_single_env_made_with_a_seed_uses_it() -> None:
    a = MazeEnv(size=9, layout="random", observation="local", seeds=42)
    b = MazeEnv(size=9, layout="random", observation="local")
    obs_a, _ = a.reset()
    obs_b, _ = b.reset(seed=42)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert np.array_equal(a.core.maze_grid(0), b.core.maze_grid(0))
