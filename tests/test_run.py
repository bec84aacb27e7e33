"""Whole runs through ``pglab.experiment.run``: files, learning, determinism, W&B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.experiment import TIMING_KEYS, run
from pglab.run_logger import resolve_wandb_mode
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
    # the checkpoint is the trained agent: reloaded, it scores the same final evaluation
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert ckpt["algo"] == "reinforce" and ckpt["agent"]["env_steps"] == summary["env_steps"]
    assert reload_and_evaluate(cfg, ckpt) == final


def reload_and_evaluate(cfg, ckpt) -> float:
    """Rebuild the agent from a checkpoint and run the final evaluation as the run did."""
    from pglab.envs import env_seeds, make_vec_env, resolve_env
    from pglab.evaluation import evaluate
    from pglab.experiment import build_agent

    n = min(cfg.eval.num_envs, cfg.eval.final_episodes)
    eval_env = make_vec_env(resolve_env(cfg.env), n, seed=cfg.seed, device=torch.device("cpu"), stream="eval")
    agent = build_agent(cfg, eval_env, torch.device("cpu"))
    agent.load_state_dict(ckpt["agent"])
    result = evaluate(
        lambda o: agent.act(o, deterministic=True),
        eval_env,
        cfg.eval.final_episodes,
        env_seeds(cfg.seed, n, "eval"),
        cfg.env.success_when,
    )
    return result.metrics()["eval/return_mean"]


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
    """A Gaussian policy on MountainCarContinuous. REINFORCE rarely reaches the flag here,
    but the stochastic policy must learn what it sees every step: the action cost. Its
    training return rises from the cost of unit-std exploration (about -52) as the
    learned log-std falls from its initial 0."""
    cfg = make_config(
        "env=mountaincar_continuous",
        "~tuned",  # REINFORCE's defaults: log-std 0, raw observations, the value baseline
        "seed=0",
        "env.num_envs=4",
        "algo.lr=0.03",
        "total_steps=80000",
        "eval.every_steps=1000000",
        "eval.final_episodes=10",
        "log_every_steps=4000",
    )
    run(cfg, tmp_path)
    train = [r["train/episode_return"] for r in read_metrics(tmp_path) if "train/episode_return" in r]
    assert len(train) >= 15
    first, last = sum(train[:3]) / 3, sum(train[-3:]) / 3
    assert first < -40, train
    assert last > first + 10, train
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    log_std = ckpt["agent"]["policy"]["log_std"]
    assert float(log_std.max()) < -0.3, log_std


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
    cfg = make_config(*SMALL, "logger=wandb", "logger.mode=offline", "env.id=crash_env:Crash-v0")
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "crashed on purpose" in summary["error"] and "Traceback" in summary["traceback"]
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


def test_an_unreachable_wandb_server_falls_back_to_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import pglab.run_logger

    monkeypatch.setenv("WANDB_API_KEY", "c" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(pglab.run_logger, "ONLINE_INIT_TIMEOUT_S", 5.0)
    cfg = make_config(*SMALL, "logger=wandb", "logger.mode=auto")
    assert resolve_wandb_mode(cfg.logger) == "online"
    t0 = time.monotonic()
    run(cfg, tmp_path)
    assert time.monotonic() - t0 < 60
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["wandb_mode"] == "offline"
    [file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert any("eval/return_mean" in h for h in read_run(file)["history"])


def test_wandb_mode_env_var_is_honoured_under_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("logger=wandb", "logger.mode=auto").logger
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(cfg) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "d" * 40)
    assert resolve_wandb_mode(cfg) == "offline"
    assert resolve_wandb_mode(make_config("logger=wandb", "logger.mode=online").logger) == "online"


def test_a_second_run_into_the_same_folder_keeps_the_first_apart(tmp_path: Path) -> None:
    run(make_config(*SMALL, "seed=1"), tmp_path)
    first = read_metrics(tmp_path)
    run(make_config(*SMALL, "seed=2"), tmp_path)
    second = read_metrics(tmp_path)
    assert [r["env_steps"] for r in second] == sorted(r["env_steps"] for r in second)  # one curve
    assert read_metrics(tmp_path / "earlier-1") == first
    assert json.loads((tmp_path / "earlier-1" / "summary.json").read_text())["seed"] == 1
    assert json.loads((tmp_path / "summary.json").read_text())["seed"] == 2
