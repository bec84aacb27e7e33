"""Sweeps that lose nothing: failure isolation, NaN stops, checkpoints, resume, skip, launchers."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CONF, RUN_PY, clean_env, make_config, run_py
from pglab.algos.common import NonFiniteError
from pglab.experiment import run
from pglab.run_dir import CHECKPOINT
from wandb_file import read_run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


TINY = ("env=cartpole", "total_steps=4000", "log_every_steps=1000", "eval.every_steps=2000", "eval.final_episodes=10")


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("algo", "extra", "reason"),
    [
        ("reinforce", "env.num_envs=4", "loss became non-finite"),
        ("a2c", "algo.n_steps=5", "loss became non-finite"),
        ("sb3_a2c", "algo.n_steps=5", "became non-finite"),
        ("sb3_ppo", "algo.n_steps=64", "policy parameters after an SB3 update became non-finite"),
    ],
)
def test_a_nan_in_the_loss_stops_the_run_at_once_as_failed(tmp_path: Path, algo: str, extra: str, reason: str) -> None:
    cfg = make_config(*TINY, f"algo={algo}", extra, "total_steps=40000", "debug.nan_at_step=3000")
    with pytest.raises(NonFiniteError, match=reason):
        run(cfg, tmp_path)
    summary = summary_of(tmp_path)
    assert summary["status"] == "failed"
    assert summary["error"].startswith("NonFiniteError: ") and reason in summary["error"]
    assert summary["env_steps"] < 5000, "stopped at the first update after the NaN, never trained on"
    assert not (tmp_path / "policy.pt").exists()


def test_a_completed_run_is_skipped_and_a_changed_config_starts_afresh(tmp_path: Path) -> None:
    cfg = make_config(*TINY)
    first = run(cfg, tmp_path)
    stamp = (tmp_path / "metrics.jsonl").stat().st_mtime_ns
    assert not (tmp_path / CHECKPOINT).exists(), "a completed run keeps policy.pt, not the resume checkpoint"
    assert run(cfg, tmp_path) == first  # the same config: skipped, its result returned
    assert (tmp_path / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert not (tmp_path / "earlier-1").exists()
    run(make_config(*TINY, "total_steps=3000"), tmp_path)  # another config: the first run is kept apart
    assert summary_of(tmp_path / "earlier-1")["config"]["total_steps"] == 4000
    assert summary_of(tmp_path)["config"]["total_steps"] == 3000


def test_checkpoints_are_atomic_weights_only_and_hold_what_a_resume_needs(tmp_path: Path) -> None:
    cfg = make_config(*TINY, "algo=a2c", "checkpoint_every_steps=1500", "debug.fail_at_step=3500")
    with pytest.raises(RuntimeError, match="failing on purpose"):
        run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert 3000 <= ckpt["env_steps"] < 3500
    assert {"nets", "optimizer", "env_steps"} <= set(ckpt["agent"])
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"])
    assert ckpt["run_state"]["loop"]["checkpoint"]["next"] > ckpt["env_steps"]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


# ------------------------------------------------------------------ kill -9 and resume


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUN_PY), *args],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_run_killed_midway_resumes_from_its_checkpoint_and_logs_each_step_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "env=cartpole",
        "algo=a2c",
        "total_steps=60000",
        "log_every_steps=1000",
        "eval.every_steps=10000",
        "checkpoint_every_steps=5000",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={run_dir}",
    ]
    proc = _start(args, tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ckpt = run_dir / CHECKPOINT
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["env_steps"] >= 20000:
            break
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    killed_at = max(r["env_steps"] for r in read_jsonl(run_dir / "metrics.jsonl"))
    checkpoint_at = torch.load(run_dir / CHECKPOINT, weights_only=True)["env_steps"]
    assert summary_of(run_dir)["status"] == "running"

    done = run_py(*args, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = summary_of(run_dir)
    assert summary["status"] == "completed" and summary["resumed_from_env_steps"] == checkpoint_at
    assert summary["env_steps"] >= 60000
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train = [r["env_steps"] for r in rows if "loss/policy" in r]
    evals = [r["env_steps"] for r in rows if "eval/return_mean" in r]
    assert train == sorted(set(train)), "no train step logged twice"
    assert evals == sorted(set(evals)), "no evaluation logged twice"
    assert max(b - a for a, b in itertools.pairwise(train)) <= 1000 + 80, "no steps missing"
    assert train[-1] >= 60000 and checkpoint_at <= killed_at
    assert evals[0] == 0 and evals[-1] == summary["env_steps"]
    assert not (run_dir / CHECKPOINT).exists() and (run_dir / "policy.pt").exists()
    # offline W&B cannot resume a run: the resumed part is a second run, tagged, from the checkpoint on
    folders = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(folders) == 2
    resumed = read_run(next(folders[-1].glob("run-*.wandb")))
    steps = [row["env_steps"] for row in resumed["history"] if "env_steps" in row]
    assert min(steps) > checkpoint_at and max(steps) == summary["env_steps"] and resumed["exit_code"] == 0
    # a third time: completed with this config, so nothing runs
    stamp = (run_dir / "metrics.jsonl").stat().st_mtime_ns
    again = run_py(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and (run_dir / "metrics.jsonl").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------ sweeps and launchers


@pytest.mark.slow
def test_a_joblib_sweep_isolates_failures_and_a_rerun_skips_the_finished_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "seed=0,1",
        "debug.fail_at_step=null,1500",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = run_py(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert len(jobs) == 4
    by_status: dict[str, list[Path]] = {}
    for job in jobs:
        by_status.setdefault(summary_of(job)["status"], []).append(job)
    assert len(by_status["completed"]) == 2 and len(by_status["failed"]) == 2
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("FAILED ")]
    assert len(failed_lines) == 2
    for job in by_status["failed"]:
        assert any(str(job) in line and "failing on purpose" in line for line in failed_lines)
        assert "RuntimeError: debug.fail_at_step=1500" in summary_of(job)["error"]
        assert "Traceback" in summary_of(job)["traceback"]
    table = (sweep_dir / "sweep_table.md").read_text()
    assert "| reinforce | cartpole |" in table and "| 2 |" in table  # 2 failed of 4
    # W&B: one run per job, each with its own job's config; failed ones marked failed
    for job in jobs:
        files = list(job.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1
        logged = read_run(files[0])
        summary = summary_of(job)
        assert logged["config"]["seed"] == summary["seed"]
        assert logged["exit_code"] == (0 if summary["status"] == "completed" else 1)
        steps = [row["env_steps"] for row in logged["history"] if "env_steps" in row]
        assert steps == sorted(steps)
    # rerun the same command: the finished jobs are skipped, the failed ones run again
    stamps = {job: (job / "metrics.jsonl").stat().st_mtime_ns for job in by_status["completed"]}
    again = run_py(*args, cwd=tmp_path, timeout=300)
    assert again.returncode != 0
    for job, stamp in stamps.items():
        assert (job / "metrics.jsonl").stat().st_mtime_ns == stamp
        assert summary_of(job)["status"] == "completed"


def test_named_sweeps_enumerate_their_jobs() -> None:
    from hydra import initialize_config_dir

    from pglab.cli import job_overrides

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        jobs = job_overrides("config", ["sweep=mountaincar_compare"], multirun=True)
    assert jobs is not None and len(jobs) == 4 * 5
    assert {j[0] for j in jobs} == {"algo=reinforce", "algo=a2c", "algo=sb3_a2c", "algo=sb3_ppo"}
    assert {j[1] for j in jobs} == {f"seed={i}" for i in range(5)}


def run_tune_a2c_cartpole(tmp_path: Path, *extra: str) -> Path:
    """``sweep=tune_a2c_cartpole`` on tiny budgets into ``tmp_path/tune``; its sweep folder."""
    sweep_dir = tmp_path / "tune"
    args = ["-m", "sweep=tune_a2c_cartpole", *extra, *TINY, "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_py(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return sweep_dir


@pytest.mark.slow
def test_an_optuna_sweep_maximises_the_final_return(tmp_path: Path) -> None:
    sweep_dir = run_tune_a2c_cartpole(tmp_path, "hydra.sweeper.n_trials=3")
    finals = [summary_of(p)["final"]["return_mean"] for p in sweep_dir.iterdir() if (p / "summary.json").exists()]
    assert len(finals) == 3
    result = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {max(finals)}" in result
    lrs = {summary_of(p)["config"]["algo"]["lr"] for p in sweep_dir.iterdir() if (p / "summary.json").exists()}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)


@pytest.mark.slow
def test_an_optuna_seeds_sweep_scores_each_trial_by_the_mean_over_its_seeds(tmp_path: Path) -> None:
    """hydra/sweeper=optuna_seeds: each trial runs once per seed; Optuna is told their mean.
    Three trials in batches of two: every trial x seed job has its own job number."""
    sweep_dir = run_tune_a2c_cartpole(
        tmp_path, "hydra/sweeper=optuna_seeds", "hydra.sweeper.seeds=[0,3]", "hydra.sweeper.n_trials=3"
    )
    jobs = [p for p in sweep_dir.iterdir() if (p / "summary.json").exists()]
    runs = [summary_of(p) for p in jobs]
    by_lr: dict[float, dict[int, float]] = {}
    for r in runs:
        by_lr.setdefault(r["config"]["algo"]["lr"], {})[r["seed"]] = r["final"]["return_mean"]
    assert len(runs) == 6 and all(set(seeds) == {0, 3} for seeds in by_lr.values()), by_lr
    numbers = [yaml.safe_load((p / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"] for p in jobs]
    assert sorted(numbers) == list(range(6))
    rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
    assert len(rows) == 3
    for row in rows:
        lr = float(next(o for o in row["overrides"].split() if o.startswith("algo.lr=")).split("=")[1])
        seeds = by_lr[lr]
        assert (float(row["seed_0"]), float(row["seed_3"])) == (seeds[0], seeds[3])
        assert float(row["mean"]) == pytest.approx((seeds[0] + seeds[3]) / 2, rel=1e-12)
    best = max(float(row["mean"]) for row in rows)
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(best, rel=1e-12)
    assert sum(by_lr[result["best_params"]["algo.lr"]].values()) / 2 == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("algo", ["reinforce", "sb3_ppo"])
def test_an_interrupted_run_resumes_with_its_full_state(tmp_path: Path, algo: str) -> None:
    """Fail after a checkpoint, rerun the same config: it resumes from the checkpoint (agent,
    optimiser, normaliser statistics) and continues the same metrics file."""
    extra = ["env.num_envs=4"] if algo == "reinforce" else ["algo.n_steps=64", "algo.normalize=true"]
    cfg = make_config(*TINY, f"algo={algo}", *extra, "checkpoint_every_steps=2000", "debug.fail_at_step=3500")
    with pytest.raises(RuntimeError, match="failing on purpose"):
        run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    if algo == "sb3_ppo":
        assert {"policy", "optimizer", "obs_rms", "ret_rms", "n_updates"} <= set(ckpt["agent"])
    lines_before = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["env_steps"] <= ckpt["env_steps"]]
    with pytest.raises(RuntimeError, match="failing on purpose"):  # the same config fails at the same step again
        run(cfg, tmp_path)
    assert ckpt["agent"]["env_steps"] == ckpt["env_steps"], "the agent's own counter is in the checkpoint"
    summary = summary_of(tmp_path)
    assert summary["resumed_from_env_steps"] == ckpt["env_steps"]
    assert ckpt["env_steps"] < summary["env_steps"] < ckpt["env_steps"] + 1500, "continued, not restarted"
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[: len(lines_before)] == lines_before, "the file continues from the checkpoint"
    train = [r["env_steps"] for r in rows if "loss/policy" in r]
    assert train == sorted(set(train))
    assert not (tmp_path / "earlier-1").exists()
