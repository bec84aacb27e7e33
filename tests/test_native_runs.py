"""Maze and dialogue through the whole platform: runs, metrics, samples, W&B, SB3, learning."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from conftest import make_config
from pglab.envs.dialogue import expert_return
from pglab.envs.maze import MazeVectorEnv
from pglab.experiment import run
from wandb_file import read_run

TINY = (
    "total_steps=3000",
    "log_every_steps=1000",
    "eval.every_steps=1500",
    "eval.episodes=6",
    "eval.final_episodes=12",
)


def final_eval(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval/return_mean" in r][-1]


def test_a_dialogue_run_logs_expert_metrics_and_sampled_dialogues_to_files_and_wandb(tmp_path: Path) -> None:
    cfg = make_config("env=dialogue", "algo=reinforce", "logger=wandb", "logger.mode=offline", "eval.samples=2", *TINY)
    run(cfg, tmp_path)
    last = final_eval(tmp_path)
    assert last["eval/expert_return"] == pytest.approx(expert_return(3, 0.2, max_turns=10))
    assert last["eval/expert_fraction"] == pytest.approx(
        last["eval/return_mean"] / expert_return(3, 0.2, max_turns=10), rel=1e-6
    )
    assert 0.0 <= last["eval/success_rate"] <= 1.0
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    evals = sorted({r["env_steps"] for r in samples})
    assert evals[0] == 0 and len(evals) >= 3  # step 0, periodic, final
    assert all(len([s for s in samples if s["env_steps"] == e]) == 2 for e in evals)
    for s in samples:
        assert s["text"].startswith("USER GOAL: cuisine=") and "\nSYSTEM: " in s["text"]
        assert s["text"].splitlines()[-1].startswith("-- ")
        assert s["text"].splitlines()[-1].endswith(f"return {s['return']:.1f}")
    wandb_file = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    logged = read_run(wandb_file)
    tables = [row for row in logged["history"] if "eval/samples/_type" in row]
    assert [row["env_steps"] for row in tables] == evals
    assert all(row["eval/samples/_type"] == "table-file" and row["eval/samples/nrows"] == 2 for row in tables)
    assert logged["exit_code"] == 0
    # the table itself: the same dialogues as samples.jsonl
    table = json.loads((wandb_file.parent / "files" / tables[-1]["eval/samples/path"]).read_text())
    assert table["columns"] == ["env_steps", "env", "return", "length", "success", "text"]
    final_samples = [s for s in samples if s["env_steps"] == evals[-1]]
    assert [row[5] for row in table["data"]] == [s["text"] for s in final_samples]


def test_a_maze_run_reports_success_and_optimality(tmp_path: Path) -> None:
    cfg = make_config("env=maze", "env.size=7", "algo=a2c", *TINY)
    run(cfg, tmp_path)
    last = final_eval(tmp_path)
    assert {"eval/success_rate", "eval/optimality", "eval/optimal_return"} <= set(last)
    maze = MazeVectorEnv(num_envs=1, size=7, maze_seed=0)
    maze.reset(seed=0)
    best = int(maze.optimal_steps[0])
    assert last["eval/optimal_return"] == pytest.approx(1.0 - 0.01 * best)
    sample = json.loads((tmp_path / "samples.jsonl").read_text().splitlines()[0])
    assert sample["text"].splitlines()[0] == "#######" and f"(optimal {best})" in sample["text"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["optimality"] == last["eval/optimality"]


def test_sb3_trains_on_the_single_env_registration() -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    torch.set_num_threads(1)
    venv = sb3_make_vec_env("pglab/Maze-v0", n_envs=4, seed=0, env_kwargs={"size": 7})
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=4, ent_coef=0.01, seed=0, device="cpu")
    model.learn(20_000)
    env = gym.make("pglab/Maze-v0", size=7)
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert terminated and info["is_success"] and info["optimality"] == 1.0


# ------------------------------------------------------------------ learning, small budgets


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "steps"),
    [("reinforce", 250_000), ("a2c", 60_000), ("sb3_ppo", 40_000)],
)
def test_algorithms_solve_a_7x7_fixed_maze(tmp_path: Path, algo: str, steps: int) -> None:
    cfg = make_config("env=maze", "env.size=7", f"algo={algo}", f"total_steps={steps}", "eval.every_steps=20000")
    run(cfg, tmp_path)
    last = final_eval(tmp_path)
    assert last["eval/success_rate"] == 1.0
    assert last["eval/optimality"] == 1.0  # the shortest path, every time


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["reinforce", "a2c"])
def test_algorithms_learn_the_dialogue_with_few_errors(tmp_path: Path, algo: str) -> None:
    cfg = make_config("env=dialogue", "env.error_rate=0.1", f"algo={algo}", "eval.every_steps=50000")
    run(cfg, tmp_path)
    last = final_eval(tmp_path)
    assert last["eval/success_rate"] >= 0.9
    assert last["eval/expert_fraction"] >= 0.85
