"""The one evaluation protocol every algorithm goes through.

* The deterministic policy (argmax / Gaussian mean) acts; nothing is sampled, so an
  evaluation never touches the training RNG and never changes what training does.
* Evaluation envs are separate from the training envs, with seeds of their own
  (``pglab.envs.env_seeds(seed, n, "eval")``), and are re-seeded identically at every
  evaluation, so every evaluation of every algorithm with the same run seed faces the
  same start states.
* Exactly ``episodes`` episodes are run, spread over the envs in fixed per-env quotas
  (env i runs ``(episodes + num_envs - 1 - i) // num_envs`` of them: the first envs take
  the remainder). Counting whatever finishes first
  would favour short episodes and bias the mean.
* Success: an episode that ended the way the env config's ``success_when`` names
  (``reported``: as the env's ``info["success"]`` says).
* Envs that report per-episode statistics (``info["episode_stats"]``: the maze's
  ``optimality`` and ``optimal_return``, the dialogue's ``expert_fraction`` and
  ``expert_return``) get their means as ``eval/<name>`` too; envs that can describe an
  episode in text (``supports_traces``) return the first episode of the first ``samples`` envs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from pglab.config import SuccessWhen
from pglab.envs import VectorEnv

ActFn = Callable[[torch.Tensor], torch.Tensor]
AgentAct = Callable[[torch.Tensor, bool], torch.Tensor]  # an agent's act(obs, deterministic)


@dataclass
class EvalResult:
    """Per-episode outcomes of one evaluation, in the order the envs finished them.

    Attributes:
        returns, lengths, successes: one entry per episode.
        stats: the env's per-episode statistics, name -> one entry per episode.
        samples: text descriptions of a few episodes: dicts with ``env``, ``return``,
            ``length``, ``success`` and ``text``.
    """

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """The design's metric keys: return mean/std (population std), success rate, length,
        and the mean of each env statistic."""
        out = {
            f"{prefix}return_mean": float(self.returns.mean()),
            f"{prefix}return_std": float(self.returns.std()),
            f"{prefix}success_rate": float(self.successes.mean()),
            f"{prefix}episode_length": float(self.lengths.mean()),
        }
        out.update({f"{prefix}{name}": float(values.mean()) for name, values in self.stats.items()})
        return out


def evaluate(
    act: ActFn,
    env: VectorEnv,
    episodes: int,
    seed: int | list[int],
    success_when: SuccessWhen,
    samples: int = 0,
) -> EvalResult:
    """Run exactly ``episodes`` episodes of ``act`` (a deterministic policy) on ``env``.

    Args:
        act: maps ``obs[N, ...]`` to actions ``[N, ...]``; called under ``torch.inference_mode``.
        env: a pglab torch vector env (see :mod:`pglab.envs`), used for nothing else.
        episodes: how many episodes in total.
        seed: the evaluation envs' seeds (or a base seed); the env is reset with them first.
        success_when: which episode end counts as a success.
        samples: describe the first episode of envs 0..samples-1 in text, where the env can.
    """
    return evaluate_groups(act, env, 1, episodes, seed, success_when, samples)[0]


def evaluate_groups(
    act: ActFn,
    env: VectorEnv,
    groups: int,
    episodes: int,
    seed: int | list[int],
    success_when: SuccessWhen,
    samples: int = 0,
) -> list[EvalResult]:
    """:func:`evaluate` of ``groups`` policies at once, each on its own block of ``env``'s
    envs (group g: envs ``[g·n, (g+1)·n)``, ``n = num_envs / groups``, with its own quotas):
    per group the result its evaluation alone gives (its envs step as they step alone, and
    its episodes are listed in the order they finish there). ``samples`` applies to group 0."""
    n_all = env.num_envs
    n = n_all // groups
    traced = min(samples, n) if env.supports_traces else 0
    if traced:
        env.trace_envs = traced
    quota = torch.tensor([(episodes + n - 1 - i) // n for i in range(n)] * groups)
    done_count = torch.zeros(n_all, dtype=torch.long)
    results = [_Episodes() for _ in range(groups)]
    obs, _ = env.reset(seed=seed)
    try:
        with torch.inference_mode():
            while bool((done_count < quota).any()):
                obs, _, terminated, truncated, info = env.step(act(obs))
                ended = (terminated | truncated).cpu()
                if not bool(ended.any()):
                    continue
                counted = ended & (done_count < quota)
                success = _successes(success_when, terminated, truncated, info).cpu()
                episode_stats = {k: v.cpu() for k, v in info.get("episode_stats", {}).items()}
                for i in torch.nonzero(counted).flatten().tolist():
                    first = i < traced and done_count[i] == 0 and i in info.get("episode_text", {})
                    results[i // n].add(i, info, success, episode_stats, first)
                done_count += counted.long()
    finally:
        if traced:
            env.trace_envs = 0
    return [r.result() for r in results]


def _successes(
    success_when: SuccessWhen, terminated: torch.Tensor, truncated: torch.Tensor, info: dict[str, Any]
) -> torch.Tensor:
    """Which of this step's episode ends count as successes (``[N]`` bool)."""
    if success_when == SuccessWhen.terminated:
        return terminated
    if success_when == SuccessWhen.truncated:
        return truncated & ~terminated
    if "success" not in info:
        raise ValueError("env.success_when=reported: this env does not report success")
    return info["success"]


@dataclass
class _Episodes:
    """One evaluation's episodes as they finish."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    stats: dict[str, list[float]] = field(default_factory=dict)
    texts: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, i: int, info: dict[str, Any], success: torch.Tensor, stats: dict[str, torch.Tensor], text: bool
    ) -> None:
        """Env i's episode that ended at this step (``text``: describe it)."""
        self.returns.append(float(info["episode_return"][i]))
        self.lengths.append(int(info["episode_length"][i]))
        self.successes.append(bool(success[i]))
        for k, v in stats.items():
            self.stats.setdefault(k, []).append(float(v[i]))
        if text:
            self.texts.append(
                {
                    "env": i,
                    "return": self.returns[-1],
                    "length": self.lengths[-1],
                    "success": self.successes[-1],
                    "text": info["episode_text"][i],
                }
            )

    def result(self) -> EvalResult:
        return EvalResult(
            np.asarray(self.returns),
            np.asarray(self.lengths),
            np.asarray(self.successes, dtype=np.float64),
            {k: np.asarray(v) for k, v in self.stats.items()},
            sorted(self.texts, key=lambda t: t["env"]),
        )


class Evaluates(Protocol):
    """What a run's training loop evaluates with: ``episodes`` episodes of the current policy."""

    def __call__(self, episodes: int) -> EvalResult: ...


class Evaluator:
    """A run's evaluations: ``evaluator(episodes)`` runs the protocol on the run's own
    evaluation envs and seeds.

    With ``deterministic=False`` (sampled actions, as language-model replies are judged) the
    actions come from a generator seeded by the first evaluation seed inside
    ``torch.random.fork_rng``, so every evaluation is reproducible and the training RNG is
    never touched.

    Args:
        act: the agent's ``act(obs, deterministic)``.
        env: the evaluation envs.
        seeds: their seeds (``pglab.envs.env_seeds(seed, n, "eval")``).
        success_when: which episode end counts as a success.
        deterministic: evaluate the policy's mode, or sample.
        samples: episodes per evaluation described in text, where the env can.
        device: where the envs and the agent compute.
    """

    def __init__(
        self,
        act: AgentAct,
        env: VectorEnv,
        seeds: list[int],
        success_when: SuccessWhen,
        deterministic: bool,
        samples: int,
        device: torch.device,
    ) -> None:
        self.act, self.env, self.seeds = act, env, seeds
        self.success_when, self.deterministic, self.samples, self.device = success_when, deterministic, samples, device

    def __call__(self, episodes: int) -> EvalResult:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if not self.deterministic:  # sampled actions from a generator of the evaluation's own
                torch.manual_seed(self.seeds[0])
            return evaluate(
                lambda o: self.act(o, self.deterministic),
                self.env,
                episodes,
                self.seeds,
                self.success_when,
                samples=self.samples,
            )
