"""Runs and sweeps attacked as a shared cluster attacks them: signals, a dead launcher, two
starts into one folder, a sweep extended or reordered, full and read-only disks.

Every test drives the real ``run.py`` in a subprocess and asserts the exit code, the one
line on stderr (no traceback) and the files before and after.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import RUN_PY, clean_env, run_py
from wandb_file import iter_records, read_run

pytestmark = pytest.mark.slow

# a2c on CartPole: ~25k env steps/s here, so 200k steps is ~8 s of training
LONG = ("env=cartpole", "algo=a2c", "eval.every_steps=1000000", "eval.final_episodes=10", "log_every_steps=2000")


def start(*args: str, cwd: Path, out: Path) -> subprocess.Popen[str]:
    """``run.py ARGS`` in the background, in its own process group, output to ``out``.{out,err}."""
    return subprocess.Popen(
        [sys.executable, str(RUN_PY), *args],
        cwd=cwd,
        env=clean_env(),
        stdout=open(f"{out}.out", "w"),
        stderr=open(f"{out}.err", "w"),
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_steps(run_dir: Path, steps: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the run has logged a line at ``steps`` env steps or more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode})"
        rows = metrics(run_dir)
        if rows and rows[-1]["env_steps"] >= steps:
            return
        time.sleep(0.1)
    raise AssertionError(f"no line at {steps} env steps in {timeout} s")


def stderr_lines(out: Path) -> list[str]:
    return Path(f"{out}.err").read_text().splitlines()


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def train_steps(run_dir: Path) -> list[int]:
    return [r["env_steps"] for r in metrics(run_dir) if "loss/policy" in r]


def stop(proc: subprocess.Popen[str], signum: int, group: bool = False) -> tuple[int, float]:
    """Send ``signum`` (to the process group if ``group``); the exit code and seconds to exit."""
    t0 = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, signum)
    code = proc.wait(timeout=60)
    return code, time.monotonic() - t0


def test_sigterm_checkpoints_marks_the_run_interrupted_and_the_rerun_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = (*LONG, "total_steps=200000", "checkpoint_every_steps=1000000", "logger=wandb", "logger.mode=offline")
    args = (*args, f"hydra.run.dir={run_dir}")
    proc = start(*args, cwd=tmp_path, out=tmp_path / "first")
    wait_for_steps(run_dir, 20000, proc)
    code, seconds = stop(proc, signal.SIGTERM)
    assert code == 143 and seconds < 10, (code, seconds)
    line = f"pglab: interrupted by SIGTERM: {run_dir} keeps its checkpoint; rerun the same command to resume"
    assert stderr_lines(tmp_path / "first") == [line]
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["env_steps"] >= 20000
    assert s["checkpoint_env_steps"] == s["env_steps"]  # checkpointed at the update it stopped at
    assert s["error"].startswith(f"stopped by SIGTERM at {s['env_steps']:,} env steps")
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["env_steps"] == s["env_steps"]
    assert train_steps(run_dir)[-1] == s["env_steps"]  # the last window was logged, not lost
    [wandb_file] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    kinds = {r.WhichOneof("record_type") for r in iter_records(wandb_file)}
    assert "preempting" in kinds and read_run(wandb_file)["exit_code"] == 1  # finished, marked preempted
    before = (run_dir / "metrics.jsonl").read_text()

    rerun = run_py(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    s2 = summary(run_dir)
    assert s2["status"] == "completed" and s2["resumed_from_env_steps"] == s["env_steps"]
    assert (run_dir / "metrics.jsonl").read_text().startswith(before)  # every earlier line kept
    steps = train_steps(run_dir)
    assert steps == sorted(set(steps)) and steps[-1] >= 200000  # each step logged once


def test_ctrl_c_is_one_line_exit_130_and_an_interrupted_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        *LONG, "total_steps=2000000", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path, out=tmp_path / "r"
    )
    wait_for_steps(run_dir, 10000, proc)
    code, seconds = stop(proc, signal.SIGINT, group=True)  # what a terminal's Ctrl-C does
    assert code == 130 and seconds < 10, (code, seconds)
    err = stderr_lines(tmp_path / "r")
    assert err == [f"pglab: interrupted by SIGINT: {run_dir} keeps its checkpoint; rerun the same command to resume"]
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["traceback"] is None
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["env_steps"] == s["env_steps"]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["kill-9", "sigterm", "ctrl-c"],
)
def test_a_stopped_joblib_launcher_leaves_no_worker_running(tmp_path: Path, signum: int, group: bool) -> None:
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *LONG, "seed=0,1", "total_steps=5000000")
    proc = start(*args, "logger=none", f"hydra.sweep.dir={sweep}", cwd=tmp_path, out=tmp_path / "sweep")
    deadline = time.monotonic() + 120
    while len([d for d in sweep.glob("*-s*") if metrics(d)]) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    workers = [pid for pid in _children(proc.pid) if "LokyProcess" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    (os.killpg if group else os.kill)(proc.pid, signum)
    assert proc.wait(timeout=10) == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker kept running after its launcher died"
        time.sleep(0.1)
    for job in sorted(sweep.glob("*-s*")):
        s = summary(job)
        assert s["status"] == "interrupted" and s["checkpoint_env_steps"] == s["env_steps"] > 0, s
        assert torch.load(job / "checkpoint.pt", weights_only=True)["env_steps"] == s["env_steps"]


def test_a_second_start_into_a_live_runs_folder_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = start(
        *LONG, "total_steps=2000000", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path, out=tmp_path / "a"
    )
    wait_for_steps(run_dir, 4000, first)
    recorded = (run_dir / ".hydra" / "overrides.yaml").read_text()
    second = run_py(*LONG, "total_steps=3000", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert second.returncode == 4
    [line] = second.stderr.splitlines()
    assert line.startswith(f"pglab: {run_dir} is in use by a run that is still going (pid {first.pid} on ")
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == recorded  # refused before Hydra wrote
    assert first.poll() is None and summary(run_dir)["status"] == "running"
    os.kill(first.pid, signal.SIGKILL)  # its lock dies with it: a stale lock is no lock
    first.wait(timeout=10)
    third = run_py(*LONG, "total_steps=3000", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["config"]["total_steps"] == 3000
    assert (run_dir / "earlier-1" / "metrics.jsonl").exists()  # the killed run's files, kept aside


def test_a_sweep_rerun_with_more_seeds_in_another_order_reuses_every_finished_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fast = ("env=cartpole", "total_steps=2000", "eval.every_steps=1000000", "eval.final_episodes=4", "logger=none")
    first = run_py("-m", "algo=reinforce,a2c", "seed=0", *fast, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    done = {p.name: (p / "policy.pt").stat().st_mtime_ns for p in sweep.glob("*-s0-*")}
    assert len(done) == 2
    second = run_py("-m", "algo=a2c,reinforce", "seed=1,0", *fast, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "summary.json").exists())
    assert len(jobs) == 4 and set(done) < set(jobs)
    assert {name: (sweep / name / "policy.pt").stat().st_mtime_ns for name in done} == done  # not rerun
    assert second.stdout.count("completed earlier with this config; skipped") == 2
    table = (sweep / "sweep_table.md").read_text()
    for algo in ("a2c", "reinforce"):
        [row] = [r for r in table.splitlines() if r.startswith(f"| {algo} | cartpole |")]
        assert row.endswith("| 2 |  |"), row  # two seeds each, none counted twice


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 80 MiB tmpfs (needs root and mount)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave_bytes: int = 0) -> None:
    """Write a file until only ``leave_bytes`` are free on ``disk``."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    try:
        with open(disk / "filler", "ab") as f:
            f.write(b"\0" * max(free, 0))
    except OSError as err:  # full already (the run's own writes got there first): that is the point
        assert err.errno == errno.ENOSPC, err


def test_a_disk_that_fills_during_a_run_ends_it_with_one_line_and_intact_files(
    tmp_path: Path, small_disk: Path
) -> None:
    run_dir = small_disk / "run"
    args = (*LONG, "total_steps=2000000", "checkpoint_every_steps=10000", "logger=none", f"hydra.run.dir={run_dir}")
    proc = start(*args, cwd=tmp_path, out=tmp_path / "r")
    wait_for_steps(run_dir, 30000, proc)
    fill(small_disk)
    code = proc.wait(timeout=60)
    assert code == 3
    [line] = stderr_lines(tmp_path / "r")
    assert line.startswith("pglab: output error: No space left on device writing ")
    assert line.endswith("the disk is full; free some space; rerun the same command to resume")
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the last good checkpoint
    assert ckpt["env_steps"] >= 20000
    assert summary(run_dir)["status"] in ("running", "failed")  # its last complete version

    again = run_py(*args, cwd=tmp_path)  # the disk still full at resume: refused before any work
    assert again.returncode == 3
    [line] = again.stderr.splitlines()
    assert line.startswith(f"pglab: output error: hydra.run.dir={run_dir}: only ")
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["env_steps"] == ckpt["env_steps"]
    (small_disk / "filler").unlink(missing_ok=True)
    resumed = run_py(*args[:-2], "total_steps=60000", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_unwritable_output_folders_are_one_line_before_any_work(tmp_path: Path, small_disk: Path) -> None:
    fast = ("env=cartpole", "total_steps=1000", "logger=none")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    fill(small_disk, leave_bytes=1 << 20)
    cases = {
        f"hydra.run.dir={a_file}": f"{a_file} is a file, not a folder",
        f"hydra.run.dir={a_file}/run": f"{a_file} is a file, not a folder",
        f"hydra.run.dir={small_disk}/run": "MiB free on its disk",
    }
    for override, expected in cases.items():
        proc = run_py(*fast, override, cwd=tmp_path)
        assert proc.returncode == 3, (override, proc.stderr)
        [line] = proc.stderr.splitlines()
        assert line.startswith("pglab: output error: hydra.run.dir=") and expected in line, line
    assert a_file.read_text() == "not a folder\n" and not (small_disk / "run").exists()
    (small_disk / "filler").unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = run_py("-m", *fast, "seed=0,1", f"hydra.sweep.dir={small_disk}/sweep", cwd=tmp_path)
    assert proc.returncode == 3
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"pglab: output error: hydra.sweep.dir={small_disk}/sweep: cannot write in {small_disk}")
    assert "read-only" in line
