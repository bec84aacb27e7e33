"""pglab-eval and pglab-replay on saved runs: the final metrics again, exactly; replays;
one line and exit 2 for every folder that cannot be evaluated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from conftest import clean_env, make_config
from pglab.experiment import run

BIN = Path(sys.executable).parent
SHORT = ("total_steps=3000", "log_every_steps=1000", "eval.every_steps=100000", "eval.final_episodes=6")
SHORT += ("eval.num_envs=3", "checkpoint_every_steps=1000")


def command(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A console script as the install put it next to the interpreter (``pip install -e .``)."""
    script = BIN / name
    assert script.is_file(), f"{script}: not installed (pip install -e .)"
    return subprocess.run([str(script), *map(str, args)], env=clean_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Completed runs of ours (a2c) and SB3's (PPO with VecNormalize) on CartPole, and a maze run."""
    root = tmp_path_factory.mktemp("runs")
    out = {"a2c": root / "a2c", "sb3": root / "sb3", "maze": root / "maze"}
    run(make_config("algo=a2c", "env=cartpole", "~tuned", "algo.normalize_obs=true", *SHORT), out["a2c"])
    run(make_config("algo=sb3_ppo", "env=cartpole", "~tuned", "algo.normalize=true", *SHORT), out["sb3"])
    run(make_config("algo=a2c", "env=maze", "env.size=7", *SHORT), out["maze"])
    return out


@pytest.mark.parametrize("which", ["a2c", "sb3", "maze"])
def test_a_saved_run_evaluated_again_gives_its_final_metrics_exactly(runs: dict[str, Path], which: str) -> None:
    """With the run's own seed, episodes and normaliser statistics: summary.json's final
    metrics to the last bit, printed and in eval_<seed>.json; another seed, other episodes."""
    folder = runs[which]
    final = json.loads((folder / "summary.json").read_text())["final"]
    done = command("pglab-eval", folder)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == {k: v for k, v in final.items() if k != "episodes"}
    saved = json.loads((folder / "eval_0.json").read_text())
    assert saved["final"] == printed and saved["seed"] == 0 and saved["episodes"] == 6
    if which == "maze":  # one fixed maze from one start: the same return from any seed
        return
    other = command("pglab-eval", folder, "--seed", "12345", "--episodes", "9", "--video")
    assert other.returncode == 0, other.stderr
    assert json.loads((folder / "eval_12345.json").read_text())["episodes"] == 9
    assert json.loads(other.stdout)["return_mean"] != printed["return_mean"]
    frames = iio.imread(folder / "videos" / "eval_12345.mp4", index=None)
    assert frames.shape[1:] == (400, 608, 3) and len(frames) > 5


def test_an_interrupted_run_is_evaluated_from_its_checkpoint(runs: dict[str, Path], tmp_path: Path) -> None:
    """A run killed mid-way keeps checkpoint.pt and a summary saying so: pglab-eval takes the checkpoint."""
    folder = tmp_path / "cut"
    shutil.copytree(runs["a2c"], folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary |= {"status": "interrupted", "final": None}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "policy.pt").rename(folder / "checkpoint.pt")
    done = command("pglab-eval", folder, "--episodes", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "eval_0.json").read_text())["source"] == "checkpoint.pt"


def test_eval_and_replay_refuse_what_they_cannot_read_in_one_line(runs: dict[str, Path], tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    run_failed = make_config("algo=a2c", "env=cartpole", "~tuned", *SHORT, "debug.fail_at_step=1500")
    with pytest.raises(RuntimeError):
        run(run_failed, failed)
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["a2c"], damaged)
    (damaged / "policy.pt").write_bytes(b"not a checkpoint")
    swapped = tmp_path / "swapped"  # another run's agent: a maze policy in a CartPole run
    shutil.copytree(runs["a2c"], swapped)
    shutil.copy(runs["maze"] / "policy.pt", swapped / "policy.pt")
    unfit = tmp_path / "unfit"  # this run's names on a maze agent's weights
    shutil.copytree(runs["a2c"], unfit)
    payload = torch.load(unfit / "policy.pt", weights_only=True)
    payload["agent"] = torch.load(runs["maze"] / "policy.pt", weights_only=True)["agent"]
    torch.save(payload, unfit / "policy.pt")
    unknown = tmp_path / "unknown"  # an algorithm this pglab does not have
    shutil.copytree(runs["a2c"], unknown)
    summary = json.loads((unknown / "summary.json").read_text())
    summary["config"]["algo"]["name"] = "trpo"
    (unknown / "summary.json").write_text(json.dumps(summary))
    newer = tmp_path / "newer"  # a config key this pglab does not know (another version's)
    shutil.copytree(runs["a2c"], newer)
    summary = json.loads((newer / "summary.json").read_text())
    summary["config"]["algo"]["momentum"] = 0.9
    (newer / "summary.json").write_text(json.dumps(summary))
    cases = {
        swapped: "policy.pt: another run's agent (env 'maze', summary.json says 'cartpole')",
        unfit: "policy.pt: the agent does not fit its config (Error(s) in loading state_dict",
        unknown: "algo=trpo: no such option in",
        newer: "its config does not fit this pglab (",
        tmp_path / "missing": "no such folder",
        runs["a2c"].parent: "a sweep folder of 3 runs; pass one of them",
        failed: "the run failed (RuntimeError: debug.fail_at_step=1500",
        damaged: "policy.pt: does not load (UnpicklingError",
    }
    for folder, message in cases.items():
        for name in ("pglab-eval", "pglab-replay"):
            done = command(name, folder)
            assert done.returncode == 2, (name, folder, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"{name}: ") and message in lines[0], done.stderr
            assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("pglab-eval", ("--device", "nosuch"), "--device=nosuch: not a torch device"),
        ("pglab-replay", ("--video", "/proc/pglab.mp4"), "--video /proc/pglab.mp4: "),
        ("pglab-replay", ("--video", "walk.avi"), "walk.avi: a video is .mp4 or .gif"),
        ("pglab-eval", ("--episodes", "0"), "--episodes=0: must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line(runs: dict[str, Path], name: str, args: tuple[str, ...], message: str) -> None:
    done = command(name, runs["a2c"], *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_replay_prints_steps_or_the_envs_own_text_and_records_video(runs: dict[str, Path], tmp_path: Path) -> None:
    steps = command("pglab-replay", runs["a2c"])
    assert steps.returncode == 0, steps.stderr
    lines = steps.stdout.splitlines()
    assert lines[0].startswith("a2c on cartpole, seed 0, 3,0") and lines[2] == "episode 1"
    assert lines[3].startswith("    0  obs [") and " action " in lines[3]
    end = lines[-1]
    assert end.startswith("-- ") and f"after {len(lines) - 4} steps" in end
    maze = command("pglab-replay", runs["maze"], "--episodes", "2")
    assert maze.returncode == 0, maze.stderr
    assert maze.stdout.count("#######") >= 4 and maze.stdout.count(", return ") == 2
    video = command("pglab-replay", runs["a2c"], "--video", tmp_path / "cartpole.mp4")
    assert video.returncode == 0, video.stderr
    frames = iio.imread(tmp_path / "cartpole.mp4", index=None)
    assert (
        frames.shape[1:] == (400, 608, 3) and len(frames) == len(lines) - 3
    )  # the same episode: a frame a step, and the end


def test_the_report_command_is_installed_under_its_name(runs: dict[str, Path], tmp_path: Path) -> None:
    done = command("pglab-report", runs["a2c"].parent, "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report" / "report.md").is_file()
    assert command("pglab-report", tmp_path / "missing").stderr.startswith("pglab-report: ")
