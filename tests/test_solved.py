"""``env.solved``: every env has a success criterion, used by ``solved_at_*``,
``eval.stop_when_solved`` and the report's "solved" column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.config import ConfigError
from pglab.envs import make_vec_env, resolve_env
from pglab.experiment import run
from pglab.loop import Solved
from pglab.preflight import preflight
from pglab.solved import describe, is_solved, missing_metrics, unknown_metrics

CRITERIA = {
    "mountaincar": {"return_mean": -110.0},
    "mountaincar_continuous": {"return_mean": 90.0},
    "cartpole": {"return_mean": 475.0},
    "maze": {"success_rate": 1.0, "optimality": 1.0},
    "dialogue": {"expert_fraction": 0.9},
    "dialogue_lm": {"success_rate": 0.9},
}


@pytest.mark.parametrize("env", sorted(CRITERIA))
def test_every_env_declares_its_criterion(env: str) -> None:
    assert make_config(f"env={env}").env.solved == CRITERIA[env]


def test_a_criterion_holds_only_when_every_condition_does() -> None:
    maze = CRITERIA["maze"]
    assert is_solved(maze, {"eval/success_rate": 1.0, "eval/optimality": 1.0, "eval/return_mean": 0.76})
    assert not is_solved(maze, {"eval/success_rate": 1.0, "eval/optimality": 0.96})
    assert not is_solved(maze, {"eval/success_rate": 0.9, "eval/optimality": 1.0})
    assert is_solved({"return_mean": -110.0}, {"eval/return_mean": -110.0})  # "at or above"
    assert not is_solved({"return_mean": -110.0}, {"eval/return_mean": -110.01})
    assert not is_solved({}, {"eval/return_mean": 1e9})  # no criterion: never solved


def test_texts_and_the_checks_that_name_a_bad_metric() -> None:
    assert describe({"return_mean": -110.0}) == "return ≥ -110"
    assert describe(CRITERIA["maze"]) == "success ≥ 1, optimality ≥ 1"
    assert describe(CRITERIA["dialogue"]) == "of expert ≥ 0.9"
    assert describe({}) == ""
    assert unknown_metrics({"return_mean": 1.0, "retrun_mean": 1.0}) == ["retrun_mean"]
    assert missing_metrics(CRITERIA["maze"], {"eval/success_rate": 1.0}) == ["optimality"]


def test_a_misspelt_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"env.solved.retrun_mean: not an evaluation metric"):
        make_config("env=cartpole", "+env.solved.retrun_mean=400")


def test_a_metric_the_env_does_not_report_is_refused_before_any_work() -> None:
    with pytest.raises(ConfigError, match=r"env.solved.optimality: env=cartpole's evaluation does not report it"):
        preflight(make_config("env=cartpole", "+env.solved.optimality=1"))
    preflight(make_config("env=maze", "env.solved.optimality=0.9"))  # the maze reports it


@pytest.mark.parametrize("env", ["maze", "dialogue", "dialogue_lm"])
def test_an_env_declares_exactly_the_episode_stats_it_reports(env: str) -> None:
    spec = resolve_env(make_config(f"env={env}").env)
    vec = make_vec_env(spec, 4, seed=0, device=torch.device("cpu"))
    vec.reset()
    actions = torch.as_tensor(vec.action_space.sample())
    _, _, _, _, info = vec.step(actions)
    assert tuple(info["episode_stats"]) == spec.capabilities.episode_stats


def test_a_metric_the_env_does_not_report_is_named_at_the_first_evaluation() -> None:
    with pytest.raises(ConfigError, match=r"env.solved.optimality: this env's evaluation does not report it"):
        Solved().record({"optimality": 1.0}, {"eval/return_mean": 500.0}, 0, 0.0, 0.0)


def test_the_first_evaluation_that_meets_it_is_recorded_once() -> None:
    solved = Solved()
    assert not solved.record({"return_mean": 0.0}, {"eval/return_mean": -1.0}, 100, 1.0, 0.5)
    assert solved.record({"return_mean": 0.0}, {"eval/return_mean": 0.0}, 200, 2.0, 1.0)
    assert not solved.record({"return_mean": 0.0}, {"eval/return_mean": 5.0}, 300, 3.0, 1.5)
    assert (solved.env_steps, solved.wall_s, solved.train_s) == (200, 2.0, 1.0)


def test_a_maze_run_stops_when_solved_and_says_when(tmp_path: Path) -> None:
    """The maze has no return threshold (its optimal return depends on the maze): it is
    solved at the first evaluation where every episode reaches the goal by a shortest path."""
    cfg = make_config("algo=a2c", "env=maze", "eval.stop_when_solved=true", "total_steps=200000")
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    lines = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    evals = [r for r in lines if "eval/optimality" in r]
    periodic = evals[:-1]  # the last line is the final evaluation
    met = [r["env_steps"] for r in periodic if r["eval/success_rate"] >= 1.0 and r["eval/optimality"] >= 1.0]
    assert summary["solved"] == CRITERIA["maze"]
    assert met == [summary["solved_at_env_steps"]]  # the first one met it, and training stopped there
    assert summary["env_steps"] == summary["solved_at_env_steps"] < 200_000
    assert summary["final"]["optimality"] == 1.0
