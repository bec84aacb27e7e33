"""Whole runs through ``pglab.experiment.run``: files, learning, determinism, W&B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.algos.reinforce import Reinforce
from pglab.experiment import TIMING_KEYS, run
from pglab.logging import resolve_wandb_mode
from wandb_file import read_run


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


SMALL = (
    "env=cartpole",
    "total_steps=6000",
    "log_every_steps=1000",
    "eval.every_steps=2000",
    "eval.episodes=4",
    "eval.final_episodes=8",
)


def test_a_run_writes_metrics_summary_and_a_loadable_checkpoint(tmp_path: Path) -> None:
    cfg = make_config(*SMALL)
    final = run(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final"]["return_mean"] == final
    assert summary["final"]["episodes"] == 8
    assert summary["env_steps"] >= 6000 and summary["sps"] > 0 and summary["wall_s"] > 0
    assert summary["config"]["env"]["id"] == "CartPole-v1"
    # the curve: an evaluation at 0, periodic ones, train lines, the final evaluation last
    evals = [r for r in rows if "eval/return_mean" in r]
    assert evals[0]["env_steps"] == 0 and evals[-1]["eval/return_mean"] == final
    assert [r["env_steps"] for r in rows] == sorted(r["env_steps"] for r in rows)
    train = [r for r in rows if "loss/policy" in r]
    assert len(train) >= 5
    for key in (
        "train/episode_return",
        "train/episode_length",
        "loss/value",
        "loss/entropy",
        "train/grad_norm",
        "time/sps",
        "time/wall_s",
    ):
        assert key in train[-1]
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert ckpt["algo"] == "reinforce" and ckpt["agent"]["env_steps"] == summary["env_steps"]
    env_space = __import__("gymnasium").make("CartPole-v1")
    agent = Reinforce(cfg.algo, env_space.observation_space, env_space.action_space, torch.device("cpu"), 500)
    agent.load_state_dict(ckpt["agent"])
    obs = torch.randn(16, 4)
    assert agent.act(obs).tolist() == agent.act(obs).tolist()


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(make_config(*SMALL, "seed=3"), a)
    run(make_config(*SMALL, "seed=3"), b)
    run(make_config(*SMALL, "seed=4"), c)
    assert without_timing(read_metrics(a)) == without_timing(read_metrics(b))
    assert without_timing(read_metrics(a)) != without_timing(read_metrics(c))


@pytest.mark.slow
def test_reinforce_learns_cartpole(tmp_path: Path) -> None:
    cfg = make_config("env=cartpole", "seed=0", "total_steps=80000", "eval.every_steps=100000")
    final = run(cfg, tmp_path)
    assert final >= 400, final


@pytest.mark.slow
def test_reinforce_learns_continuous_actions(tmp_path: Path) -> None:
    """A Gaussian policy on MountainCarContinuous: from a random start it learns not to waste
    action cost; deterministic eval return rises well above the initial policy's."""
    cfg = make_config(
        "env=mountaincar_continuous", "seed=0", "total_steps=60000", "eval.every_steps=100000", "eval.final_episodes=10"
    )
    final = run(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    first = rows[0]["eval/return_mean"]
    assert final > -5.0, (first, final)


def test_wandb_offline_file_holds_the_config_and_the_logged_eval_returns(tmp_path: Path) -> None:
    cfg = make_config(*SMALL, "logger=wandb", "logger.mode=auto")
    assert resolve_wandb_mode(cfg.logger) == "offline"  # no key configured here
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["wandb_mode"] == "offline"
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    data = read_run(files[0])
    assert data["exit_code"] == 0
    assert data["config"]["env"] == summary["config"]["env"]
    assert data["config"]["algo"] == summary["config"]["algo"]
    assert data["config"]["seed"] == 0
    logged = [(h["env_steps"], h["eval/return_mean"]) for h in data["history"] if "eval/return_mean" in h]
    local = [(r["env_steps"], r["eval/return_mean"]) for r in read_metrics(tmp_path) if "eval/return_mean" in r]
    assert logged == local and len(local) >= 3


def test_a_failed_run_is_recorded_and_its_wandb_run_marked_failed(tmp_path: Path) -> None:
    cfg = make_config(*SMALL, "logger=wandb", "logger.mode=offline", "+env.kwargs.no_such_arg=1")
    with pytest.raises(TypeError):
        run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "no_such_arg" in summary["error"] and "Traceback" in summary["traceback"]
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert read_run(files[0])["exit_code"] == 1


def test_a_run_left_open_by_a_crashed_job_never_receives_the_next_jobs_data(tmp_path: Path) -> None:
    import wandb

    stale = wandb.init(
        mode="offline",
        dir=str(tmp_path / "crashed"),
        project="pglab",
        name="crashed",
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )
    stale.log({"crashed/value": 1.0})
    stale_dir = Path(stale.dir).parent
    run(make_config(*SMALL, "logger=wandb", "logger.mode=offline"), tmp_path / "next")
    old = read_run(next(stale_dir.glob("run-*.wandb")))
    assert old["exit_code"] == 1  # finished as failed when the next job started
    assert all("eval/return_mean" not in h for h in old["history"])
    new = read_run(next((tmp_path / "next" / "wandb").glob("offline-run-*/run-*.wandb")))
    assert any("eval/return_mean" in h for h in new["history"])
    assert all("crashed/value" not in h for h in new["history"])


def test_wandb_mode_auto_goes_online_only_with_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("logger=wandb", "logger.mode=auto").logger
    assert resolve_wandb_mode(cfg) == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_wandb_mode(cfg) == "online"
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert resolve_wandb_mode(cfg) == "online"
    assert resolve_wandb_mode(make_config("logger=wandb", "logger.mode=offline").logger) == "offline"
    assert resolve_wandb_mode(make_config("logger=wandb", "logger.mode=disabled").logger) == "disabled"
    assert resolve_wandb_mode(make_config("logger=none").logger) == "disabled"
