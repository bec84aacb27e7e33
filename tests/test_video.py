"""Videos of evaluation episodes: the files, their frames, W&B's copy, the metrics untouched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import make_config
from pglab.config import ConfigError
from pglab.envs import resolve_env
from pglab.experiment import TIMING_KEYS, run
from pglab.preflight import preflight
from pglab.video import Recorder, fit
from wandb_file import read_run

TINY = (
    "algo=a2c", "env=mountaincar", "~tuned", "env.num_envs=4", "total_steps=3000", "log_every_steps=1000",
    "eval.every_steps=1000", "eval.episodes=2", "eval.final_episodes=2", "eval.num_envs=2",
)  # fmt: skip


def _lines(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def _frames(path: Path) -> np.ndarray:
    return iio.imread(path, index=None)


def test_videos_of_evaluations_leave_the_metrics_as_they_were(tmp_path: Path) -> None:
    """The same seed with and without eval.video: identical metrics.jsonl; a video at
    every second periodic evaluation (step 0 included) and at the final one, 201 frames
    of 320 × 480 each (200 steps, the untrained car never reaching the flag, and the
    end), and W&B's eval/video holding the same file."""
    run(make_config(*TINY), tmp_path / "off")
    video = ("eval.video=true", "eval.video_every=2", "logger=wandb", "logger.mode=offline")
    run(make_config(*TINY, *video), tmp_path / "on")
    assert _lines(tmp_path / "on") == _lines(tmp_path / "off")
    evals = [r["env_steps"] for r in _lines(tmp_path / "on") if "eval/return_mean" in r]
    expected = [s for s in evals[:-1] if (s // 1000) % 2 == 0] + [evals[-1]]
    assert expected == [0, 2000, 3000]
    videos = sorted((tmp_path / "on" / "videos").glob("*.mp4"), key=lambda p: int(p.stem))
    assert [int(p.stem) for p in videos] == expected
    assert not (tmp_path / "off" / "videos").exists()
    frames = _frames(videos[-1])
    assert frames.shape == (201, 320, 480, 3)
    logged = read_run(next((tmp_path / "on").glob("wandb/offline-run-*/run-*.wandb")))
    rows = [row for row in logged["history"] if "eval/video/_type" in row]
    assert [row["env_steps"] for row in rows] == expected
    assert all(row["eval/video/_type"] == "video-file" for row in rows)
    media = next((tmp_path / "on").glob("wandb/offline-run-*")) / "files" / rows[-1]["eval/video/path"]
    assert media.read_bytes() == videos[-1].read_bytes()


def test_a_video_shows_the_policy_that_acted(tmp_path: Path) -> None:
    """Always pushing left and always pushing right from the same start: other frames,
    and the car ends on the side it was pushed to."""
    spec = resolve_env(make_config(*TINY).env)
    paths = {}
    for name, action in (("left", 0), ("right", 2)):
        recorder = Recorder(
            lambda obs, _, a=action: torch.full((obs.shape[0],), a), spec, [7], 1, True, torch.device("cpu")
        )
        paths[name], count = recorder.record(tmp_path / f"{name}.mp4")
        recorder.close()
        assert count == 201
    left, right = _frames(paths["left"]), _frames(paths["right"])
    diff = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()  # noqa: E731  (H.264 is lossy)
    assert diff(left[0], right[0]) < 0.2  # the same start state
    assert diff(left[-1], right[-1]) > 1.0
    hill = np.stack([(f < 60).all(-1) for f in (*left, *right)]).all(0)  # dark in every frame: the hill

    def car(frame: np.ndarray) -> float:  # the mean column of the dark pixels that move
        return float(np.nonzero((frame < 60).all(-1) & ~hill)[1].mean())

    assert car(left[30]) < car(left[0]) - 5 and car(right[30]) > car(right[0]) + 5
    assert car(left[30]) < car(right[30]) - 40


def test_without_the_ffmpeg_wheel_a_gif_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GIF holds the episode's frames (Pillow merges repeated ones: a walk into a wall),
    enlarged 5× from the 7-cell maze's 56 pixels and padded to 288."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    spec = resolve_env(make_config("algo=a2c", "env=maze", "env.size=7").env)
    steps = iter(range(10**6))
    act = lambda obs, _: torch.full((obs.shape[0],), next(steps) % 4)  # noqa: E731
    recorder = Recorder(act, spec, [1], 1, True, torch.device("cpu"))
    path, count = recorder.record(tmp_path / "maze.mp4")
    assert path == tmp_path / "maze.gif" and not (tmp_path / "maze.mp4").exists()
    frames = _frames(path)
    assert 1 < len(frames) <= count and frames.shape[1:] == (288, 288, 3)


def test_small_frames_are_enlarged_whole_and_padded_to_blocks() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (88, 88, 3), dtype=np.uint8)
    out = fit(frame)
    assert out.shape == (272, 272, 3)  # 88 · 3 = 264, padded to 272
    assert np.array_equal(out[:264:3, :264:3], frame) and (out[264:] == 255).all()
    big = np.zeros((320, 480, 3), dtype=np.uint8)
    assert fit(big) is big


def test_video_of_an_env_without_frames_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"eval.video=true: env=dialogue draws no frames"):
        preflight(make_config("algo=a2c", "env=dialogue", "eval.video=true"))


def test_the_report_links_the_last_video_of_the_best_and_the_median_run(tmp_path: Path) -> None:
    """Three seeds with videos: report.md's Videos row links the final evaluation's video of
    the run with the highest final return and of the middle one, relative to report.md."""
    from pglab.report.write import write_report

    finals = {}
    for seed in (0, 1, 2):
        video = ("eval.video=true", "eval.video_every=10")  # step 0 and the final evaluation only
        cfg = make_config("algo=a2c", "env=cartpole", "~tuned", *TINY[3:], f"seed={seed}", *video)
        finals[seed] = run(cfg, tmp_path / "sweep" / f"s{seed}")
    order = sorted(finals, key=lambda s: -finals[s])
    report = write_report([tmp_path / "sweep"], tmp_path / "sweep" / "report", quiet=True)
    text = (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert "## Videos" in text and report is not None
    videos = text[text.index("## Videos") :]
    row = next(line for line in videos.splitlines() if line.startswith("| cartpole | a2c |"))
    for label, seed in (("best", order[0]), ("median", order[1])):
        link = f"[{label}: seed {seed}, return {finals[seed]:.4g}](../s{seed}/videos/3000.mp4)"
        assert link in row, row
        assert (tmp_path / "sweep" / f"s{seed}" / "videos" / "3000.mp4").is_file()


def test_a_new_run_in_the_folder_moves_the_earlier_videos_and_evaluations_aside(tmp_path: Path) -> None:
    """Another config into the same folder: the earlier run's videos and pglab-eval records
    go to earlier-1/ with its other files, so the report cannot link them as the new run's."""
    run(make_config(*TINY, "eval.video=true"), tmp_path)
    (tmp_path / "eval_0.json").write_text("{}")
    earlier = sorted(p.name for p in (tmp_path / "videos").iterdir())
    run(make_config(*TINY, "seed=1"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "earlier-1" / "videos").iterdir()) == earlier
    assert (tmp_path / "earlier-1" / "eval_0.json").exists() and not (tmp_path / "eval_0.json").exists()
    assert not (tmp_path / "videos").exists()


def test_a_resumed_run_drops_the_videos_after_its_checkpoint(tmp_path: Path) -> None:
    """Stopped at its first update (a stop request, as SIGTERM sets it): the checkpoint holds
    that update; videos of later evaluations and unfinished recordings left in the folder go
    when the run resumes, the one at step 0 stays, and the resumed run records the rest."""
    import signal

    from pglab.signals import Interrupted, StopRequest

    cfg = make_config(*TINY, "eval.video=true")
    with pytest.raises(Interrupted):
        run(cfg, tmp_path, stop=StopRequest(signum=signal.SIGTERM))
    videos = tmp_path / "videos"
    first = (videos / "0.mp4").read_bytes()
    (videos / "2500.mp4").write_bytes(b"a later evaluation's, before a kill")
    (videos / ".3000.mp4.part.mp4").write_bytes(b"cut mid-recording")
    run(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["resumed_from_env_steps"] > 0
    assert sorted(int(p.stem) for p in videos.iterdir()) == [0, 1000, 2000, 3000]
    assert (videos / "0.mp4").read_bytes() == first
