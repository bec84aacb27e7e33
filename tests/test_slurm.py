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
