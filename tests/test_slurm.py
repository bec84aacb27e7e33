"""A real SLURM cluster: a 2-job sweep through hydra-submitit-launcher (``hardware=slurm``).

The test starts a single-node cluster on this machine (``scripts/slurm/start.sh``:
munged, slurmctld, slurmd) and stops it afterwards. It needs root and Debian's
``slurm-wlm`` and ``munge`` packages, which ``.ci/run`` installs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, clean_env, run_py

SLURM_SCRIPTS = ROOT / "scripts" / "slurm"
STATE = Path("/tmp/pglab-slurm-test")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[dict[str, str]]:
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"a test SLURM cluster needs root and slurm-wlm + munge ({', '.join(missing) or 'not root'})")
    env = {**os.environ, "PGLAB_SLURM_STATE": str(STATE)}
    subprocess.run([str(SLURM_SCRIPTS / "stop.sh")], env=env, check=False)
    try:  # stop the daemons whatever happens, a failed start included
        started = subprocess.run(
            [str(SLURM_SCRIPTS / "start.sh")], env=env, capture_output=True, text=True, timeout=120
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "idle" in started.stdout, started.stdout
        job_env = clean_env()
        job_env["PATH"] = f"{SLURM_SCRIPTS / 'bin'}:{job_env['PATH']}"  # the sacct stand-in
        yield job_env
    finally:
        subprocess.run([str(SLURM_SCRIPTS / "stop.sh")], env=env, check=False, timeout=60)


def test_a_two_job_sweep_runs_through_slurm(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_py(
        "-m",
        "hardware=slurm",
        "hardware.cluster.partition=debug",
        "hardware.cluster.time_limit_min=5",
        "hardware.cluster.mem_gb=1",
        "env=cartpole",
        "seed=0,1",
        "total_steps=3000",
        "eval.every_steps=1500",
        "eval.final_episodes=10",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        timeout=300,
        env=slurm_cluster,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    assert [s["seed"] for s in summaries] == [0, 1]
    for s in summaries:
        assert s["status"] == "completed" and s["env_steps"] >= 3000
        assert s["slurm_job_id"] is not None, "the job ran inside a SLURM allocation"
        assert s["final"]["episodes"] == 10
    assert len({s["slurm_job_id"] for s in summaries}) == 2
    # submitit asked for the run's own time limit, not its default of 60 minutes
    job_ids = [s["slurm_job_id"] for s in summaries]
    shown = subprocess.run(
        ["scontrol", "show", "job", job_ids[0]], capture_output=True, text=True, env=slurm_cluster, check=True
    )
    assert "TimeLimit=00:05:00" in shown.stdout
    assert "| reinforce | cartpole |" in (sweep_dir / "sweep_table.md").read_text()


def _release_requeued_jobs(env: dict[str, str]) -> None:
    """SLURM holds a requeued job for two minutes (its BeginTime); release it at once.

    That hold is cluster policy, not pglab's; skipping it keeps the test to the time the
    job needs, with the requeue itself left to SLURM and submitit.
    """
    pending = subprocess.run(
        ["squeue", "--noheader", "--states=PD", "--format=%i %r"], capture_output=True, text=True, env=env
    )
    for line in pending.stdout.splitlines():
        job_id, reason = line.split(maxsplit=1)
        if reason.strip() == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, check=False)


def test_a_job_that_needs_three_time_limits_is_requeued_and_completes_with_each_step_logged_once(
    tmp_path: Path, slurm_cluster: dict[str, str]
) -> None:
    """A one-minute time limit, a run that needs about three minutes (4M steps of a2c on
    CartPole at ~25k steps/s). submitit asks SLURM for SIGUSR2 30 s before the limit
    (slurmctld checks limits every 30 s, so the signal always comes before the kill); pglab
    checkpoints at the next update, submitit requeues the job, the requeued job resumes."""
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        "hardware=slurm",
        "hardware.cluster.partition=debug",
        "hardware.cluster.time_limit_min=1",
        "hardware.cluster.mem_gb=1",
        "hydra.launcher.signal_delay_s=30",
        "hydra.launcher.max_num_timeout=12",
        "env=cartpole",
        "algo=a2c",
        "total_steps=4000000",
        "log_every_steps=20000",
        "eval.every_steps=10000000",
        "eval.final_episodes=10",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    launcher = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=tmp_path,
        env=slurm_cluster,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 900
    while launcher.poll() is None:
        assert time.monotonic() < deadline, "the requeued job did not complete in 15 minutes"
        _release_requeued_jobs(slurm_cluster)
        time.sleep(2)
    out, err = launcher.communicate()
    assert launcher.returncode == 0, out[-2000:] + err[-2000:]
    [job] = [p for p in sweep_dir.iterdir() if (p / "summary.json").exists()]
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "completed" and s["env_steps"] >= 4_000_000
    assert s["resumed_from_env_steps"] is not None
    log = (job / "run.log").read_text()
    stops = log.count("pglab: SIGUSR2 received")
    assert stops >= 1, "stopped at the time limit, with a checkpoint"
    assert log.count("resuming from the checkpoint") >= stops
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    steps = [r["env_steps"] for r in rows if "loss/policy" in r]
    assert steps == sorted(set(steps)), "every training line once, in order"
    assert steps[-1] >= 4_000_000 and len(steps) >= 4_000_000 // 20_000
    shown = subprocess.run(
        ["scontrol", "show", "job", s["slurm_job_id"]], capture_output=True, text=True, env=slurm_cluster, check=True
    )
    restarts = int(shown.stdout.split("Restarts=")[1].split()[0])
    assert restarts >= stops  # a signal sent before pglab's handler was up is submitit's alone
