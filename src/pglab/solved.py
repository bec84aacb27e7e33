"""When an env counts as solved: ``env.solved``, a mapping of evaluation metric → minimum.

Every env declares its criterion in ``conf/env/<env>.yaml``; all its conditions must
hold at one evaluation. A return threshold suits envs whose best return is known
(MountainCar ≥ −110, CartPole ≥ 475); the maze's optimal return differs per maze, so it
is solved when every episode reaches the goal by a shortest path (``success_rate`` and
``optimality`` 1); the dialogue when it earns a fraction of the optimal expert's expected
return (``expert_fraction``); the token-level dialogue when the judge gives most replies
its maximum (``success_rate``). The run's first evaluation that meets the criterion
gives ``solved_at_*`` in ``summary.json``, ends training under ``eval.stop_when_solved``,
and counts in the report's "solved" column. A leaf module: plain Python.
"""

from __future__ import annotations

from collections.abc import Mapping

# the evaluation metrics a criterion may name (``eval/<name>``; see pglab.evaluation)
SOLVED_METRICS = ("return_mean", "success_rate", "optimality", "expert_fraction")
_SHORT = {"return_mean": "return", "success_rate": "success", "expert_fraction": "of expert"}


def unknown_metrics(criterion: Mapping[str, float]) -> list[str]:
    """The names in ``criterion`` that are not evaluation metrics (a typo, for a config error)."""
    return [name for name in criterion if name not in SOLVED_METRICS]


def missing_metrics(criterion: Mapping[str, float], metrics: Mapping[str, float]) -> list[str]:
    """The names in ``criterion`` that this evaluation does not report (``metrics`` keyed
    ``eval/<name>``): an env that has no such measure (``optimality`` outside the maze)."""
    return [name for name in criterion if f"eval/{name}" not in metrics]


def is_solved(criterion: Mapping[str, float], metrics: Mapping[str, float]) -> bool:
    """Whether one evaluation's ``metrics`` (``eval/<name>`` → value) meet every condition;
    False for an empty criterion (an env with no notion of solved)."""
    return bool(criterion) and all(metrics[f"eval/{name}"] >= least for name, least in criterion.items())


def describe(criterion: Mapping[str, float]) -> str:
    """Short text for tables: ``return ≥ -110``; ``success ≥ 1, optimality ≥ 1``; "" for none."""
    return ", ".join(f"{_SHORT.get(name, name)} ≥ {least:g}" for name, least in criterion.items())
