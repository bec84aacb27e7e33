"""A2C's rollout and update as compiled programs (``hardware.compile=true``).

Eager A2C spends most of a small update in dispatch: a few hundred torch operations of a
few microseconds each, over tensors of a few thousand numbers. Here they run as a handful
of programs that ``torch.compile`` (inductor) builds once, with static shapes and whole
graphs (``fullgraph``):

* **the rollout**: all ``n_steps`` steps of normalise → policy → sample → env physics →
  autoreset → store, unrolled into one program: :meth:`A2C.fill_rollout` traced with the
  env's own ``step``, which runs branch-free inside a trace (no device sync at the
  autoreset or for the action check);
* **the loss**: policy and critic over the rollout, reward scaling, GAE and the loss, and
  its backward (AOTAutograd: one program each way);
* **the gradient clip and the optimiser step** (one program each).

What stays eager: the critic on the few states where an episode ended before the
rollout's last step (their number varies: :meth:`A2C.ended_values`) and the update's two
host round trips of :func:`~pglab.algos.common.apply_update` (the loss checked before the
step, the parameters after it, the metrics read once).

Random numbers: compiled code draws them from ATen's generators (inductor's
``fallback_random``), so a compiled rollout samples its actions from the same uniform
numbers as an eager one, in the same order.

Numerics: the same computation, not the same bits. Inductor fuses the element-wise
operations into loops of its own (a fused multiply-add where eager rounds twice, its own
vectorised ``exp`` and ``cos``; the env's ``cos`` is then torch's, within one float64 ulp
of C's, as on a GPU), so a compiled update's numbers agree with eager ones to float32
rounding (``tests/test_compiled_a2c.py``: relative 1e-5 for one update from the same
rollout, 1e-4 over the first updates of a run). A run's trajectory stays the eager
run's until a rounding difference flips a sampled action (a uniform number within about
1e-7 of a cumulative probability), after which the two runs are different samples of
the same algorithm. A fixed seed's compiled run is reproducible on one machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from pglab.algos.common import apply_update, check_parameters, grad_norm_and_clip, inject_nan, params_finite
from pglab.envs.batched import BatchedEnv
from pglab.nets.mlp import CategoricalPolicy, GaussianPolicy

if TYPE_CHECKING:
    from pglab.algos.a2c import A2C
    from pglab.envs import VectorEnv

Stats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # a RunningMeanStd's (mean, var, count)
# random numbers from ATen's generators, as eager
COMPILE_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {"fallback_random": True}
MAX_UNROLLED_STEPS = 64  # the rollout, reward scaling and GAE unroll n_steps: compile time grows with it


def compile_refusal(agent: A2C, env: VectorEnv) -> str | None:
    """Why ``agent`` cannot train on ``env`` as compiled programs (one line), or None."""
    if not isinstance(env, BatchedEnv) or not type(env).traceable_step:
        return f"the {type(env).__name__} step is not traceable (pglab's batched MountainCars are)"
    if env.trace_envs:
        return "the training env records text traces"
    if not isinstance(agent.policy, CategoricalPolicy | GaussianPolicy):
        return f"a {type(agent.policy).__name__} policy (compiled: the MLP policies)"
    if agent.reference is not None:
        return "a KL reference policy"
    if agent.cfg.n_steps > MAX_UNROLLED_STEPS:
        return f"algo.n_steps={agent.cfg.n_steps} > {MAX_UNROLLED_STEPS} (every step is unrolled into the programs)"
    return None


class CompiledA2CSteps:
    """The compiled ``collect`` and ``update`` of one A2C agent on one env; see the module
    docstring. Programs are built at their first call (seconds) and reused while the
    shapes stay (the env's ``N``, the rollout's ``T``).

    Dynamo's caches are reset when this is made: its programs are keyed by code, and a
    process that trains run after run (a sequential sweep) would otherwise pile up one
    cache entry per run until Dynamo's recompile limit sent the programs back to eager.

    Args:
        agent: the A2C agent; its networks, optimiser and statistics are used in place,
            so its checkpoints and evaluations are unchanged.
        env: the training env :func:`compile_refusal` accepted (``collect`` runs on it only).
    """

    def __init__(self, agent: A2C, env: BatchedEnv) -> None:
        torch._dynamo.reset()
        self.agent, self.env = agent, env
        self._rollout = torch.compile(self._rollout_program, fullgraph=True, options=COMPILE_OPTIONS)
        self._loss = torch.compile(agent.loss, fullgraph=True, options=COMPILE_OPTIONS)
        self._reward_stats = torch.compile(agent.reward_stats_after, fullgraph=True, options=COMPILE_OPTIONS)
        self._clip = torch.compile(self._clip_program, fullgraph=True, options=COMPILE_OPTIONS)
        self._after_step = torch.compile(self._after_step_program, fullgraph=True, options=COMPILE_OPTIONS)
        # the optimiser's step has graph breaks of its own; it stays eager under anneal_lr (a
        # float learning rate that changes every update would recompile it) and on a GPU
        # (compiling it there sets capturable=True, which checkpoints would carry to the CPU)
        eager_step = agent.cfg.anneal_lr or agent.device.type != "cpu"
        self._step = agent.optimizer.step if eager_step else torch.compile(agent.optimizer.step)

    def _rollout_program(
        self, env: BatchedEnv, obs: torch.Tensor, buf: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """The traced rollout: :meth:`A2C.fill_rollout` from raw ``obs[N, D]`` into ``buf``
        (``[T, N, ...]`` each), with the agent's own :meth:`A2C.rollout_act` (the
        normaliser's constants are inputs of the program: they change after every update)."""
        return self.agent.fill_rollout(env.step, obs, buf, self.agent.rollout_act)

    def _clip_program(self) -> torch.Tensor:
        """The gradients' global norm before clipping (0-d), clipped in place."""
        return grad_norm_and_clip(self.agent.params, self.agent.cfg.max_grad_norm)

    def _after_step_program(self, final_obs: torch.Tensor) -> tuple[torch.Tensor, Stats | None]:
        """After the optimiser's step: whether every parameter is finite (0-d bool), and
        the observation statistics with the rollout's reached states ``[T·N, D]`` folded in."""
        agent = self.agent
        return params_finite(agent.params), None if agent.obs_norm is None else agent.obs_norm.rms.folded(final_obs)

    def update_reward_stats(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """:meth:`A2C.update_reward_stats`, compiled: the program computes, this stores."""
        agent = self.agent
        with torch.no_grad():
            scale, returns, stats = self._reward_stats(rewards, dones, agent.running_returns(rewards))
        agent.store_reward_stats(returns, stats)
        return scale

    def collect(self, env: VectorEnv, obs: torch.Tensor, buf: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`A2C.collect`, compiled, on the env the programs were made for."""
        if env is not self.env:
            raise ValueError("hardware.compile: this agent was compiled for another training env; compile it again")
        with torch.no_grad():
            obs, success = self._rollout(self.env, obs, buf)
        self.agent.success_reported |= success
        return obs

    def update(self, buf: dict[str, torch.Tensor]) -> dict[str, float]:
        """:meth:`A2C.update`, compiled."""
        agent = self.agent
        if agent.reference is not None:  # arrived after compile (an SFT stage): the loss would miss its KL
            raise ValueError("hardware.compile: a KL reference policy is not compiled; set hardware.compile=false")
        scale = None if agent.ret_rms is None else self.update_reward_stats(buf["rewards"], buf["dones"])
        loss, parts = self._loss(buf, agent.ended_values(buf), scale)
        loss = inject_nan(loss, agent.env_steps, agent.nan_at_step)
        metrics = apply_update(agent.optimizer, loss, parts, self._clip, agent.params, False, self._step)
        with torch.no_grad():
            finite, stats = self._after_step(buf["final_obs"].flatten(0, 1))
        check_parameters(agent.params, finite)
        if agent.obs_norm is not None and stats is not None:
            agent.obs_norm.set(*stats)
        return metrics
