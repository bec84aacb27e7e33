"""A seed stack's evaluations run as one (``hydra/launcher=vectorized``, :mod:`pglab.seed_group`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pglab.algos.seed_stack import SeedStackA2C
from pglab.config import SuccessWhen
from pglab.envs import VectorEnv
from pglab.evaluation import EvalResult, evaluate_groups


class StackEvaluations:
    """The periodic and final evaluations of a stack's seeds, run as one when they fall due
    together (:func:`~pglab.evaluation.evaluate_groups` over the stacked seeds' evaluation
    envs, the stack's batched deterministic policy): each seed gets the result its own
    evaluation gives, since its envs and its policy do not depend on the others'. The first
    seed to ask at an env step evaluates every stacked seed; the others take theirs at that
    step, and a seed's final evaluation at the step of its last periodic one (a seed that
    stopped when solved) is that one. When the stack has shrunk, the evaluation envs are built again for the seeds left.

    Only for deterministic evaluations without text samples (each seed's sampled actions
    would need its own generator stream, a trace its own envs).

    Args:
        stack: the seed stack (its ``ids``: the members still stacked).
        make_env: the evaluation envs of the given members, side by side.
        seeds: per member, its evaluation envs' seeds.
        success_when: which episode end counts as a success.
    """

    def __init__(
        self,
        stack: SeedStackA2C,
        make_env: Callable[[list[int]], VectorEnv],
        seeds: list[list[int]],
        success_when: SuccessWhen,
    ) -> None:
        self.stack, self.make_env, self.seeds, self.success_when = stack, make_env, seeds, success_when
        self.ids: list[int] = []
        self.env: VectorEnv | None = None
        self._ready: dict[int, tuple[tuple[int, int], EvalResult]] = {}  # member -> (its key, its result)

    def of(self, i: int) -> SeedEvaluator:
        return SeedEvaluator(self, i)

    def result(self, i: int, episodes: int) -> EvalResult:
        """Member i's evaluation of ``episodes`` episodes at the stack's current env step
        (a periodic and a final evaluation at one step are the same evaluation)."""
        key = (self.stack.env_steps, episodes)
        ready = self._ready.get(i)
        if ready is not None and ready[0] == key:
            return ready[1]
        if self.env is None or self.ids != self.stack.ids:
            self.close()
            self.ids = list(self.stack.ids)
            self.env = self.make_env(self.ids)
        seeds = [x for k in self.ids for x in self.seeds[k]]
        results = evaluate_groups(self.stack.mode, self.env, len(self.ids), episodes, seeds, self.success_when)
        self._ready = {k: (key, r) for k, r in zip(self.ids, results, strict=True)}
        return results[self.ids.index(i)]

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


@dataclass
class SeedEvaluator:
    """Member i's evaluations through its stack's (:class:`~pglab.evaluation.Evaluates`)."""

    evaluations: StackEvaluations
    i: int

    def __call__(self, episodes: int) -> EvalResult:
        return self.evaluations.result(self.i, episodes)
