"""Videos of evaluation episodes: recorded on an env of their own, written as mp4.

A :class:`Recorder` plays ``episodes`` episodes of the evaluated policy on a one-env copy
of the evaluation env with ``render_mode="rgb_array"``, episode j from evaluation env j's
seed (so it shows the start states the evaluation faced). It never touches the training
envs, the evaluation envs or the training RNG: a run's metrics are the same with videos
on or off. Frames stream into the encoder as they are drawn, so a 999-step episode does
not sit in memory.

The encoder is ffmpeg's H.264, through imageio with the ffmpeg binary that the
imageio-ffmpeg wheel ships; without imageio-ffmpeg the episodes are written as a GIF.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pglab.envs import EnvSpec, VectorEnv, make_vec_env
from pglab.envs.registry import gym_id, native_class

FPS = 30
MACRO_BLOCK = 16  # H.264 codes 16 × 16 blocks: frames are padded to a multiple (white)
MIN_SIDE = 256  # smaller frames are enlarged

AgentAct = Callable[[torch.Tensor, bool], torch.Tensor]


def renders_frames(spec: EnvSpec) -> bool:
    """Whether the env draws ``rgb_array`` frames (the maze and the MountainCars natively,
    gymnasium's classic-control envs through pygame; the dialogues are text)."""
    native = spec.native or native_class(spec.id)
    if native is not None:
        return "rgb_array" in native.metadata.get("render_modes", [])
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(gym_id(spec.id)).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return "rgb_array" in getattr(creator, "metadata", {}).get("render_modes", [])


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


@contextlib.contextmanager
def video_writer(path: Path, fps: int = FPS) -> Iterator[VideoOut]:
    """A video at ``path`` (``.mp4``; ``.gif`` without imageio-ffmpeg, see ``out.path``).
    Written aside and renamed at the end, so a failed recording leaves no half file."""
    import imageio.v2 as imageio

    try:
        import imageio_ffmpeg  # noqa: F401  (the wheel's ffmpeg binary)
    except ImportError:
        path = path.with_suffix(".gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part{path.suffix}")
    if path.suffix == ".mp4":
        kwargs: dict[str, Any] = {"fps": fps, "codec": "libx264", "macro_block_size": 1, "ffmpeg_log_level": "error"}
        kwargs["output_params"] = ["-pix_fmt", "yuv420p"]
        writer = imageio.get_writer(part, format="FFMPEG", **kwargs)
    else:
        writer = imageio.get_writer(part, format="GIF", mode="I", duration=1000 / fps, loop=0)
    try:
        yield VideoOut(path, lambda frame: writer.append_data(fit(frame)))
    except BaseException:
        writer.close()
        part.unlink(missing_ok=True)
        raise
    writer.close()
    part.replace(path)


class Recorder:
    """Records evaluation episodes of ``act`` to video files; see the module docstring.

    Args:
        act: the agent's ``act(obs, deterministic)``.
        spec: the run's resolved env.
        seed: the run's seed; the recording env gets the evaluation seeds ``eval_seeds``.
        eval_seeds: the evaluation envs' seeds; episode j starts as env j's first episode.
        episodes: episodes per video, one after another.
        deterministic: as the evaluation (sampled actions come from a generator of the
            recording's own, seeded by the first evaluation seed).
        device: where the agent computes.
    """

    def __init__(
        self,
        act: AgentAct,
        spec: EnvSpec,
        seed: int,
        eval_seeds: list[int],
        episodes: int,
        deterministic: bool,
        device: torch.device,
    ) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (gymnasium's renderer) without a display
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        self.act, self.eval_seeds, self.episodes = act, eval_seeds, episodes
        self.deterministic, self.device = deterministic, device
        self.env: VectorEnv = make_vec_env(spec, 1, seed, device, stream="eval", render_mode="rgb_array")

    def record(self, path: Path) -> tuple[Path, int]:
        """Play the episodes into ``path``; returns the file written and its frame count."""
        frames = 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode(), video_writer(path) as out:
            if not self.deterministic:
                torch.manual_seed(self.eval_seeds[0])
            for j in range(self.episodes):
                obs, _ = self.env.reset(seed=[self.eval_seeds[j % len(self.eval_seeds)]])
                done = False
                while not done:
                    out.append(self.frame())
                    frames += 1
                    obs, _, terminated, truncated, _ = self.env.step(self.act(obs, self.deterministic))
                    done = bool((terminated | truncated)[0])
        return out.path, frames

    def frame(self) -> np.ndarray:
        frames = self.env.render()
        assert frames is not None
        return np.asarray(frames[0], dtype=np.uint8)

    def close(self) -> None:
        self.env.close()
