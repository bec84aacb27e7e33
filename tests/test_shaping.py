"""Potential-based reward shaping of the MountainCars (env.shaping=energy): the term by
hand, the true reward everywhere it is reported, the backends that can have it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.config import ConfigError
from pglab.envs import resolve_env
from pglab.envs.mountaincar import MountainCarContinuousVectorEnv, MountainCarVectorEnv
from pglab.experiment import run
from pglab.preflight import preflight

GAMMA, SCALE = 0.9, 10.0


def phi(p: float, v: float, goal: float) -> float:
    """Φ by hand: energy v²/2 + (0.0025/3)·sin(3p), 0 in the valley at rest, SCALE at the flag at rest."""
    energy, low = v * v / 2 + 0.0025 / 3 * math.sin(3 * p), -0.0025 / 3
    return SCALE * (energy - low) / (0.0025 / 3 * math.sin(3 * goal) - low)


@pytest.mark.parametrize(("cls", "goal", "actions"), [
    (MountainCarVectorEnv, 0.5, [2, 0, 2, 1]),
    (MountainCarContinuousVectorEnv, 0.45, [[1.0], [-1.0], [1.0], [0.3]]),
])  # fmt: skip
def test_the_shaping_term_is_gamma_phi_next_minus_phi(cls: type, goal: float, actions: list) -> None:
    """From the same states, a shaped twin's reward is the true one plus γ·Φ(s') − Φ(s)
    (Φ(s') = 0 where s' is terminal; a time-limit cut keeps it), s' read off an unshaped
    twin; the episode statistics stay the true return."""
    states = ([-0.5, 0.3, 0.49, -1.0], [0.0, 0.01, 0.06, -0.02])
    true_env = cls(num_envs=4, max_episode_steps=2)
    shaped_env = cls(num_envs=4, max_episode_steps=2, shaping="energy", shaping_gamma=GAMMA, shaping_scale=SCALE)
    for env in (true_env, shaped_env):
        env.reset(seed=0)
        env.set_state([0, 1, 2, 3], *states)
    action = torch.tensor(actions)
    for step in range(2):  # the second step is cut by the time limit
        before = [(float(p), float(v)) for p, v in zip(true_env.position, true_env.velocity, strict=True)]
        _, r, term, trunc, info = true_env.step(action)
        after = [(float(p), float(v)) for p, v in info["final_obs"].double().tolist()]  # s', before any reset
        _, r_shaped, term_s, _, info_s = shaped_env.step(action)
        assert torch.equal(term, term_s) and torch.equal(info["episode_return"], info_s["episode_return"])
        for i in range(4):
            if step == 1 and bool(term[i] | trunc[i]) is False:
                continue
            nxt = 0.0 if bool(term[i]) else phi(*after[i], goal)
            expected = float(r[i]) + GAMMA * nxt - phi(*before[i], goal)
            assert float(r_shaped[i]) == pytest.approx(expected, abs=1e-5), (step, i)
        if step == 0:
            assert bool(term[2]) and not bool(term[0])  # env 2 reached the flag: F = -Φ(s)
            # every env back into its state (set_state refreshes Φ, as a start does)
            for env in (true_env, shaped_env):
                env.set_state([0, 1, 2, 3], *states)
    assert bool(trunc[[0, 1, 3]].all()) and bool(term[2])  # the cut (env 2 reached the flag again)


def test_a_shaped_run_trains_on_shaping_and_reports_the_true_return(tmp_path: Path) -> None:
    """MountainCar's true return is minus the episode length: every logged training and
    evaluation return of a shaped run is; the summary's config says it was shaped, and a
    report over shaped and unshaped runs separates them by env.shaping."""
    from pglab.report.write import write_report

    tiny = ("algo=reinforce", "env=mountaincar", "~tuned", "env.num_envs=8", "total_steps=6000",
            "log_every_steps=1000", "eval.every_steps=3000", "eval.episodes=4", "eval.final_episodes=4")  # fmt: skip
    run(make_config(*tiny, "env.shaping=energy"), tmp_path / "runs" / "shaped")
    run(make_config(*tiny), tmp_path / "runs" / "true")
    rows = [json.loads(line) for line in (tmp_path / "runs" / "shaped" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/return_mean" in r]
    trains = [r for r in rows if "train/episode_return" in r]
    assert evals and trains
    assert all(r["eval/return_mean"] == -r["eval/episode_length"] for r in evals)
    assert all(r["train/episode_return"] == pytest.approx(-r["train/episode_length"]) for r in trains)
    summary = json.loads((tmp_path / "runs" / "shaped" / "summary.json").read_text())
    assert summary["config"]["env"]["shaping"] == "energy" and summary["config"]["env"]["shaping_gamma"] == 0.99
    report = write_report([tmp_path / "runs"], tmp_path / "report", quiet=True)
    assert "env.shaping" in report.by
    assert set(report.table["env.shaping"]) == {"energy", "none"}


def test_shaping_is_refused_where_gymnasium_runs_the_car() -> None:
    with pytest.raises(ConfigError, match=r"env\.shaping=energy: the shaping is computed in pglab's batched"):
        preflight(make_config("algo=a2c", "env=mountaincar", "env.backend=gymnasium", "env.shaping=energy"))
    spec = resolve_env(make_config("algo=a2c", "env=mountaincar_continuous", "env.shaping=energy").env)
    assert spec.kwargs["shaping"] == "energy" and "shaping" not in spec.evaluation().kwargs
    assert "shaping" not in resolve_env(make_config("algo=a2c", "env=mountaincar").env).kwargs
