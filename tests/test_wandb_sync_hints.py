"""The ``wandb sync`` commands pglab prints (``--help``, a run's end, a sweep's end) work
when pasted into plain ``sh``: run here with a stand-in ``wandb`` that lists its arguments."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF
from pglab.callbacks import sync_command
from pglab.hydra_job import end_of_run_lines
from pglab.run_logger import offline_wandb_dirs


@pytest.fixture
def fake_wandb(tmp_path: Path) -> Path:
    """A ``bin`` folder holding a ``wandb`` that prints each argument of ``wandb sync`` on its own line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "wandb"
    script.write_text('#!/bin/sh\n[ "$1" = sync ] || exit 9\nshift\nfor a in "$@"; do echo "$a"; done\n')
    script.chmod(0o755)
    return bin_dir


def synced(command: str, bin_dir: Path) -> set[Path]:
    """The folders ``command`` (run by ``sh``, not bash: no globstar) hands to ``wandb sync``."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=True)
    return {Path(line) for line in proc.stdout.splitlines()}


def offline_run(job: Path, name: str) -> Path:
    """An offline W&B run folder as wandb writes it, with a subfolder of its own."""
    path = job / "wandb" / f"offline-run-{name}"
    (path / "files").mkdir(parents=True)
    (job / "wandb" / "debug.log").write_text("")
    return path


def test_the_sweep_end_command_syncs_every_job_and_the_nested_ones_too(tmp_path: Path, fake_wandb: Path) -> None:
    sweep = tmp_path / "sweep dir"  # a space: the command quotes the folder
    runs = {offline_run(sweep / "a2c-cartpole-s0-1", "1"), offline_run(sweep / "a2c-cartpole-s0-1", "2")}
    runs.add(offline_run(sweep / "a2c-cartpole-s1-2", "3"))
    command = sync_command(sweep, offline_wandb_dirs(sweep))
    assert command == f"wandb sync '{sweep}'/*/wandb/offline-run-*"
    assert synced(command, fake_wandb) == runs
    runs.add(offline_run(sweep / "inner" / "a2c-maze-s0-3", "4"))  # a sweep run into a sweep's folder
    command = sync_command(sweep, offline_wandb_dirs(sweep))
    assert command.startswith("find ")
    assert synced(command, fake_wandb) == runs


def test_a_run_end_prints_the_final_return_and_a_working_sync_command(tmp_path: Path, fake_wandb: Path) -> None:
    run_dir = tmp_path / "my run"
    path = offline_run(run_dir, "1")
    final, sync = end_of_run_lines(0.76, 100, run_dir)
    assert final == f"final eval return (100 episodes): 0.760  [{run_dir}]"
    assert sync.startswith("W&B run saved offline; sync it with:  wandb sync ")
    assert synced(sync.split(":  ", 1)[1], fake_wandb) == {path}
    online = tmp_path / "online run"  # no offline W&B run: no sync line
    online.mkdir()
    assert end_of_run_lines(-104.31, 10, online) == [f"final eval return (10 episodes): -104.3  [{online}]"]


def test_the_help_commands_work_in_plain_sh(tmp_path: Path, fake_wandb: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        footer = compose(config_name="config", return_hydra_config=True).hydra.help.footer
    commands = dict(re.findall(r"(one run|a sweep|any depth):\s+(.+)$", footer, flags=re.MULTILINE))
    assert sorted(commands) == ["a sweep", "any depth", "one run"]
    run_dir, sweep = tmp_path / "runs" / "r", tmp_path / "sweeps" / "s"
    one = offline_run(run_dir, "1")
    jobs = {offline_run(sweep / "job0", "2"), offline_run(sweep / "job1", "3")}
    nested = offline_run(sweep / "inner" / "job2", "4")
    assert synced(commands["one run"].replace("<run folder>", str(run_dir)), fake_wandb) == {one}
    assert synced(commands["a sweep"].replace("<sweep folder>", str(sweep)), fake_wandb) == jobs
    assert synced(commands["any depth"].replace("<folder>", str(tmp_path)), fake_wandb) == {one, nested, *jobs}
