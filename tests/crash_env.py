"""A gymnasium env that raises after a few steps: a job that fails at run time, on purpose.

``env.id=crash_env:Crash-v0`` makes gymnasium import this module (tests/ on PYTHONPATH),
which registers the env. It passes every check made before the run starts.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Crash(gym.Env):
    def __init__(self, crash_after: int = 50) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.crash_after = crash_after
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        if self.steps > self.crash_after:
            raise RuntimeError("Crash-v0 crashed on purpose")
        return np.zeros(2, np.float32), 0.0, False, False, {}


gym.register("Crash-v0", entry_point=Crash, max_episode_steps=20)
