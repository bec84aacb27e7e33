"""Real multiruns through run.py into temporary folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import clean_env, run_py
from pglab.job_dir import job_dir_name
from wandb_file import read_run

FAST = ("total_steps=2000", "eval.episodes=2", "eval.final_episodes=4", "eval.every_steps=1000000")


@pytest.mark.slow
def test_a_2x2_sweep_leaves_one_folder_per_job_and_the_sweep_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_py(
        "-m", "env=cartpole,mountaincar", "seed=0,1", "logger=wandb", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != "report")
    assert [p.name.rsplit("-", 1)[0] for p in jobs] == [
        "reinforce-cartpole-s0",
        "reinforce-cartpole-s1",
        "reinforce-mountaincar-s0",
        "reinforce-mountaincar-s1",
    ]
    for job in jobs:  # each folder is named from its job's overrides (pglab.job_dir)
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert job.name == job_dir_name(overrides, "reinforce", job.name.split("-")[1], job.name.split("-")[2][1:])
    assert (sweep / "report" / "report.md").exists()  # the sweep's report, next to its jobs
    finals = {}
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert (job / "metrics.jsonl").stat().st_size > 0 and (job / "policy.pt").exists()
        assert (job / ".hydra" / "config.yaml").exists()
        # one offline W&B run per job, grouped by the sweep folder
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
        finals[job.name] = summary["final"]["return_mean"]
        # progress goes to the job's log as plain lines in a multirun
        assert "steps (" in (job / "run.log").read_text()
    table = (sweep / "sweep_table.md").read_text()
    assert "| reinforce | mountaincar | -200.0 ± 0.0 | 2 |  |" in table
    cp = [finals[jobs[0].name], finals[jobs[1].name]]
    import numpy as np

    assert f"| reinforce | cartpole | {np.mean(cp):.1f} ± {np.std(cp, ddof=1):.1f} | 2 |  |" in table
    assert table in proc.stdout + "\n"
    assert f"wandb sync {sweep}/*/wandb/offline-run-*" in proc.stdout


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # tests/crash_env.py registers Crash-v0, which raises at run time (after every check)
    env = clean_env()
    env["PYTHONPATH"] = str(Path(__file__).parent)
    proc = run_py(
        "-m",
        "env=cartpole",
        "env.id=CartPole-v1,crash_env:Crash-v0",
        "logger=wandb",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 1
    by_id = {json.loads((p / "summary.json").read_text())["config"]["env"]["id"]: p for p in sweep.glob("*-s0-*")}
    fine_dir, crashed_dir = by_id["CartPole-v1"], by_id["crash_env:Crash-v0"]
    done = json.loads((fine_dir / "summary.json").read_text())
    failed = json.loads((crashed_dir / "summary.json").read_text())
    assert done["status"] == "completed"
    assert failed["status"] == "failed" and "crashed on purpose" in failed["error"]
    assert "Traceback" in failed["traceback"]
    # its W&B run is marked failed, the other one not
    [crashed] = (crashed_dir / "wandb").glob("offline-run-*/run-*.wandb")
    [fine] = (fine_dir / "wandb").glob("offline-run-*/run-*.wandb")
    assert read_run(crashed)["exit_code"] == 1 and read_run(fine)["exit_code"] == 0
    table = (sweep / "sweep_table.md").read_text()
    # the jobs differ in env.id: one row each, the failure on its own row
    assert f"| reinforce | cartpole | env.id=CartPole-v1 | {done['final']['return_mean']:.1f} ± — | 1 |  |" in table
    assert "| reinforce | cartpole | env.id=crash_env\\:Crash-v0 | — (no completed run) | 0 | 1 |" in table
    assert "FAILED reinforce-cartpole-s0: RuntimeError: Crash-v0 crashed on purpose" in proc.stderr
    assert "pglab: 1 of 2 jobs failed" in proc.stderr
