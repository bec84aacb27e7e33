"""The one evaluation protocol every algorithm goes through.

* The deterministic policy (argmax / Gaussian mean) acts; nothing is sampled, so an
  evaluation never touches the training RNG and never changes what training does.
* Evaluation envs are separate from the training envs, with seeds of their own
  (``pglab.envs.env_seeds(seed, n, "eval")``), and are re-seeded identically at every
  evaluation, so every evaluation of every algorithm with the same run seed faces the
  same start states.
* Exactly ``episodes`` episodes are run, spread over the envs in fixed per-env quotas
  (env i runs ``(episodes + i) // num_envs`` of them). Counting whatever finishes first
  would favour short episodes and bias the mean.
* Success: an episode that ended the way the env config's ``success_when`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from pglab.config import SuccessWhen

ActFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    """Per-episode outcomes of one evaluation, in the order the envs finished them."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """The design's metric keys: return mean/std (population std), success rate, length."""
        return {
            f"{prefix}return_mean": float(self.returns.mean()),
            f"{prefix}return_std": float(self.returns.std()),
            f"{prefix}success_rate": float(self.successes.mean()),
            f"{prefix}episode_length": float(self.lengths.mean()),
        }


def evaluate(
    act: ActFn,
    env: gym.vector.VectorEnv,
    episodes: int,
    seed: int | list[int],
    success_when: SuccessWhen,
) -> EvalResult:
    """Run exactly ``episodes`` episodes of ``act`` (a deterministic policy) on ``env``.

    Args:
        act: maps ``obs[N, ...]`` to actions ``[N, ...]``; called under ``torch.inference_mode``.
        env: a pglab torch vector env (see :mod:`pglab.envs`), used for nothing else.
        episodes: how many episodes in total.
        seed: the evaluation envs' seeds (or a base seed); the env is reset with them first.
        success_when: which episode end counts as a success.
    """
    n = env.num_envs
    quota = torch.tensor([(episodes + i) // n for i in range(n)])
    done_count = torch.zeros(n, dtype=torch.long)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    obs, _ = env.reset(seed=seed)
    with torch.inference_mode():
        while bool((done_count < quota).any()):
            obs, _, terminated, truncated, info = env.step(act(obs))
            ended = (terminated | truncated).cpu()
            if not bool(ended.any()):
                continue
            counted = ended & (done_count < quota)
            success = terminated if success_when == SuccessWhen.terminated else truncated & ~terminated
            for i in torch.nonzero(counted).flatten().tolist():
                returns.append(float(info["episode_return"][i]))
                lengths.append(int(info["episode_length"][i]))
                successes.append(bool(success[i]))
            done_count += counted.long()
    return EvalResult(np.asarray(returns), np.asarray(lengths), np.asarray(successes, dtype=np.float64))
