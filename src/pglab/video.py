"""Videos of evaluation episodes: recorded on an env of their own, written as mp4.

A :class:`Recorder` plays ``episodes`` episodes of the evaluated policy on a single
gymnasium env of the run's env (the class registered for its id, ``render_mode=
"rgb_array"``), episode j from evaluation env j's seed, so it starts where the
evaluation's env j starts. A single env, not a one-env vector env: it does not reset
itself at the episode's end, so the last frame shows how the episode ended (the car at
the flag, the walker at the goal): an episode of T steps gives T + 1 frames. The
recording never touches the training envs, the evaluation envs or the training RNG, so a
run's metrics are the same with videos on or off. Frames stream into the encoder as they
are drawn: a 999-step episode does not sit in memory.

The encoder is ffmpeg's H.264 through imageio, with the ffmpeg binary the imageio-ffmpeg
wheel ships; where that wheel or its binary is missing, the episodes are a GIF.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator

from pglab.envs import EnvSpec
from pglab.envs.registry import gym_id
from pglab.report.identity import VIDEO_SUFFIXES

FPS = 30
MACRO_BLOCK = 16  # H.264 codes 16 × 16 blocks: frames are padded to a multiple (white)
MIN_SIDE = 256  # smaller frames are enlarged

AgentAct = Callable[[torch.Tensor, bool], torch.Tensor]


def _env_class(spec: EnvSpec) -> Any:
    """What ``spec.id`` is registered as: a ``gymnasium.Env`` class, or another creator."""
    entry = gym.spec(gym_id(spec.id)).entry_point
    return load_env_creator(entry) if isinstance(entry, str) else entry


def renders_frames(spec: EnvSpec) -> bool:
    """Whether the env draws ``rgb_array`` frames (the maze and the MountainCars natively,
    gymnasium's classic-control envs through pygame; the dialogues are text)."""
    cls = _env_class(spec)
    return isinstance(cls, type) and issubclass(cls, gym.Env) and "rgb_array" in cls.metadata.get("render_modes", [])


def fit(frame: np.ndarray) -> np.ndarray:
    """``frame[H, W, 3]`` as the encoder takes it: a frame under :data:`MIN_SIDE` pixels on
    its longer side enlarged by a whole factor (nearest neighbour: the maze's 8-pixel
    cells stay sharp), then padded with white to multiples of :data:`MACRO_BLOCK`."""
    factor = -(-MIN_SIDE // max(frame.shape[:2]))
    if factor > 1:
        frame = frame.repeat(factor, axis=0).repeat(factor, axis=1)
    h, w = frame.shape[:2]
    ph, pw = -h % MACRO_BLOCK, -w % MACRO_BLOCK
    if not ph and not pw:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), constant_values=255)


@dataclass
class VideoOut:
    """One video being written: ``append(frame[H, W, 3] uint8)``; the file it ends up in."""

    path: Path
    append: Callable[[np.ndarray], None]


def has_ffmpeg() -> bool:
    """Whether imageio-ffmpeg and its bundled binary are there."""
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).is_file()
    except (ImportError, RuntimeError):
        return False


@contextlib.contextmanager
def video_writer(path: Path, fps: int = FPS) -> Iterator[VideoOut]:
    """A video at ``path`` (``.mp4`` or ``.gif``; an mp4 becomes a GIF without ffmpeg, see
    ``out.path``). Written aside and renamed when complete: a recording that fails or is
    stopped leaves no half file under the name.

    Raises:
        ValueError: another suffix.
    """
    import imageio.v2 as imageio

    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: a video is .mp4 or .gif")
    if path.suffix == ".mp4" and not has_ffmpeg():
        path = path.with_suffix(".gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part{path.suffix}")
    part.touch()  # an unwritable folder fails here, with an OSError, not inside ffmpeg
    if path.suffix == ".mp4":
        kwargs: dict[str, Any] = {"fps": fps, "codec": "libx264", "macro_block_size": 1, "ffmpeg_log_level": "error"}
        writer = imageio.get_writer(part, format="FFMPEG", **kwargs)  # yuv420p, imageio's default
    else:
        writer = imageio.get_writer(part, format="GIF", mode="I", duration=1000 / fps, loop=0)
    done = False
    try:
        yield VideoOut(path, lambda frame: writer.append_data(fit(frame)))
        writer.close()
        part.replace(path)
        done = True
    finally:
        if not done:
            with contextlib.suppress(Exception):  # the first error is the one to report
                writer.close()
            part.unlink(missing_ok=True)


class Recorder:
    """Records evaluation episodes of ``act`` to video files; see the module docstring.

    Args:
        act: the agent's ``act(obs, deterministic)`` (``obs[1, ...]`` on ``device``).
        spec: the run's resolved env.
        eval_seeds: the evaluation envs' seeds; episode j starts as env j's first episode
            (cycling when ``episodes`` exceeds them, so a deterministic policy repeats).
        episodes: episodes per video, one after another.
        deterministic: as the evaluation (sampled actions come from a generator of the
            recording's own, seeded by the first evaluation seed).
        device: where the agent computes.
    """

    def __init__(
        self,
        act: AgentAct,
        spec: EnvSpec,
        eval_seeds: list[int],
        episodes: int,
        deterministic: bool,
        device: torch.device,
    ) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (gymnasium's renderer) without a display
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        self.act, self.eval_seeds, self.episodes = act, eval_seeds, episodes
        self.deterministic, self.device = deterministic, device
        if spec.native is not None:  # pglab's single env takes every kwarg, its time limit included
            self.env: gym.Env = _env_class(spec)(render_mode="rgb_array", **spec.kwargs)
        else:
            self.env = gym.make(gym_id(spec.id), render_mode="rgb_array", **spec.kwargs)

    def record(self, path: Path) -> tuple[Path, int]:
        """Play the episodes into ``path``; returns the file written and its frame count."""
        frames = 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode(), video_writer(path) as out:
            if not self.deterministic:
                torch.manual_seed(self.eval_seeds[0])
            for j in range(self.episodes):
                obs, _ = self.env.reset(seed=self.eval_seeds[j % len(self.eval_seeds)])
                done = False
                while not done:
                    out.append(self.frame())
                    action = self.act(
                        torch.as_tensor(np.asarray(obs, np.float32), device=self.device)[None], self.deterministic
                    )
                    obs, _, terminated, truncated, _ = self.env.step(self.to_env(action))
                    frames += 1
                    done = bool(terminated or truncated)
                out.append(self.frame())  # how the episode ended
                frames += 1
        return out.path, frames

    def to_env(self, action: torch.Tensor) -> Any:
        """Env 0's action as the single env takes it: an index, or values clipped to the box
        (as the vector envs clip a policy's unbounded sample)."""
        space = self.env.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(action[0])
        assert isinstance(space, gym.spaces.Box)
        return np.clip(action[0].cpu().numpy(), space.low, space.high).astype(space.dtype)

    def frame(self) -> np.ndarray:
        return np.asarray(self.env.render(), dtype=np.uint8)

    def close(self) -> None:
        self.env.close()
