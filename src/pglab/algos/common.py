"""What every pglab algorithm shares: the :class:`Agent` contract and the return math.

An algorithm is a class that satisfies :class:`AgentClass` (built as ``Algo(cfg=,
observation_space=, action_space=, device=, max_episode_steps=)``, with a static
``check_config(cfg, env)`` for cross-key constraints that raises ``ConfigError`` before
the run starts) and whose instances satisfy :class:`Agent`. An algorithm never logs:
after each update it hands an :class:`Update` to ``on_update`` and the run logs,
evaluates and checkpoints; ``on_update`` returns False to stop training early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import torch
from torch import nn

from pglab.envs.capabilities import HasDemonstrations
from pglab.envs.spaces import TokenSequence
from pglab.nets import Policy, make_policy
from pglab.nets.base import Sampler, terms_from_log_probs

if TYPE_CHECKING:
    from pglab.config import Config, SFTConfig
    from pglab.envs import EnvSpec, VectorEnv


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf: training stops at once, the run is failed."""


@dataclass
class Update:
    """One update's outcome, handed to the experiment.

    Attributes:
        env_steps: total env steps consumed so far (the x-axis of every metric).
        metrics: scalar metrics of this update (``loss/*``, ``train/grad_norm``, ...).
        episode_returns: undiscounted returns of the episodes finished since the last
            update, ``[E]``.
        episode_lengths: their lengths, ``[E]``.
        train_s: the seconds this update's training took, where the wall clock between two
            updates says something else (a seed stack trains its seeds in one update and
            runs their evaluations one after another); None: that wall clock.
    """

    env_steps: int
    metrics: dict[str, float]
    episode_returns: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    episode_lengths: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    train_s: float | None = None


OnUpdate = Callable[[Update], bool]


LogFn = Callable[[dict[str, float]], None]


@runtime_checkable
class Agent(Protocol):
    """What the run drives: pglab's reinforce and a2c, and the SB3 adapter.

    Attributes:
        supports_compile: ``hardware.compile`` is allowed (:meth:`compile` does something).
        supports_sft: an SFT stage and a KL reference are allowed (:meth:`finetune`).
        supports_pretrained: a pretrained language model may be the policy (``algo.policy``).
        env_steps: env steps consumed so far (restored by :meth:`load_state_dict`).
        group_size: k, the envs that start each episode from the same state (k samples
            per prompt), None: every env its own; the run sets the training env up for it.
        nan_at_step: fault injection (``debug.nan_at_step``), set by the run.
    """

    supports_compile: ClassVar[bool]
    supports_sft: ClassVar[bool]
    supports_pretrained: ClassVar[bool]
    env_steps: int
    group_size: int | None
    nan_at_step: int | None

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """Train until ``env_steps >= total_steps`` or ``on_update`` returns False."""
        ...

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw observations ``obs[B, ...]`` (evaluation)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint restores (tensors and plain values: ``weights_only``-loadable)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def compile(self, env: VectorEnv) -> str:
        """``torch.compile`` what trains on ``env`` (only called when ``supports_compile``);
        returns what was compiled, one line for the run's log."""
        ...

    def finetune(self, expert: HasDemonstrations, cfg: SFTConfig, steps: int, log: LogFn) -> dict[str, float]:
        """The SFT stage, then freeze the result as the KL reference (only when ``supports_sft``);
        returns the last logged ``sft/*`` metrics."""
        ...

    def set_reference(self) -> None:
        """Freeze the current policy as the KL reference: a pretrained policy's initial model
        (only when ``supports_pretrained``)."""
        ...

    def export(self, run_dir: Path) -> None:
        """Extra artifacts in the algorithm's own format (SB3's zip); nothing for pglab's own."""
        ...


@dataclass(frozen=True)
class MemoryNeed:
    """What a run certainly allocates, in bytes: a lower bound the preflight compares with the
    memory the machine has, so that a run that cannot fit is refused before it starts instead
    of dying mid-run (or taking the machine down) while allocating.

    Only allocations the algorithm cannot avoid count — a lower bound never refuses a run
    that fits. The env's own state, temporaries and allocator slack come on top.

    Attributes:
        rollout: the preallocated rollout storage.
        networks: the trained parameters with their gradients and optimiser state.
        activations: hidden-layer outputs an update keeps for its backward pass (MLPs).
        rollout_on_host: the rollout lives in host memory whatever the device (SB3's numpy
            buffer); else everything lives on the run's device.
        rollout_keys: the config keys that size the rollout and the activations, the first
            one the most direct (``env.num_envs``), for the one-line message.
        detail: how the rollout is sized, in words (``5 steps × 100,000,000 envs``).
    """

    rollout: int
    networks: int
    activations: int
    rollout_keys: tuple[str, ...]
    detail: str
    rollout_on_host: bool = False

    @property
    def total(self) -> int:
        return self.rollout + self.networks + self.activations


FLOAT_BYTES = 4  # float32: weights, gradients, optimiser moments, rewards, activations
OPTIMIZER_STATES = {"adam": 2, "rmsprop": 1}  # float32 tensors per parameter (Adam: m and v)


def parameter_count(build: Callable[[], nn.Module]) -> int:
    """Parameters of the module ``build`` makes, built on the meta device (no memory, no init
    cost: a 10-billion-parameter MLP is counted in milliseconds)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def build_policy(a: Any, observation_space: gym.Space, action_space: gym.Space) -> Policy:
    """The policy an algorithm config ``a`` asks for (:func:`~pglab.nets.make_policy`): its
    MLP sizes, initial log-std, transformer sizes and ``algo.policy``."""
    return make_policy(
        observation_space, action_space, a.hidden_sizes, a.activation, a.log_std_init, a.transformer, a.policy
    )


def policy_bytes(a: Any, observation_space: gym.Space, action_space: gym.Space, optimizer: str) -> int:
    """The policy's weights, gradients and optimiser state (:func:`network_bytes`); of a
    pretrained model (``a.policy``), its weights and its trainable share's state."""
    if a.policy.pretrained:
        from pglab.nets.pretrained import memory_bytes  # transformers: the [lm] extra

        return memory_bytes(a.policy, OPTIMIZER_STATES[optimizer])
    return network_bytes(parameter_count(lambda: build_policy(a, observation_space, action_space)), optimizer)


def network_bytes(parameters: int, optimizer: str) -> int:
    """Weights, their gradients and the optimiser's per-parameter state (``OPTIMIZER_STATES``)."""
    return parameters * FLOAT_BYTES * (2 + OPTIMIZER_STATES[optimizer])


def value_bytes(space: gym.Space) -> int:
    """Bytes one observation or action of ``space`` takes in rollout storage (see :func:`obs_dtype`;
    Discrete actions are int64)."""
    if isinstance(space, gym.spaces.Discrete):
        return 8
    dtype = obs_dtype(space)
    return math.prod(space.shape or ()) * (8 if dtype == torch.int64 else FLOAT_BYTES)


def activation_bytes(observation_space: gym.Space, hidden: list[int], rows: int, networks: int) -> int:
    """Hidden-layer outputs kept for the backward pass of ``networks`` MLPs over ``rows``
    observations: each is the input of the next linear layer, which autograd must save.
    0 for token sequences (a transformer's activations are not counted: a lower bound)."""
    if isinstance(observation_space, TokenSequence):
        return 0
    return rows * sum(hidden) * FLOAT_BYTES * networks


def forward_bytes(observation_space: gym.Space, hidden: list[int], rows: int) -> int:
    """A lower bound on what a gradient-free MLP pass over ``rows`` observations holds at
    once: the input and the output of its widest layer. 0 for token sequences (as
    :func:`activation_bytes`)."""
    if isinstance(observation_space, TokenSequence):
        return 0
    return rows * max(hidden) * FLOAT_BYTES * 2


@runtime_checkable
class AgentClass(Protocol):
    """An algorithm class, as ``algo.impl`` names it (its capability flags are class attributes).

    Runtime-checkable, so that the preflight can refuse a class that is not one before it
    calls anything of it (``algo.impl`` is configuration, not code).
    """

    supports_compile: bool
    supports_sft: bool
    supports_pretrained: bool

    def __call__(
        self,
        *,
        cfg: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None,
        env: VectorEnv,
    ) -> Agent: ...

    def check_config(self, cfg: Config, env: EnvSpec) -> None:
        """Cross-key constraints of this algorithm on this env; one-line ConfigError."""
        ...

    def memory_need(
        self, cfg: Config, env: EnvSpec, observation_space: gym.Space, action_space: gym.Space
    ) -> MemoryNeed:
        """What a run of ``cfg`` on ``env`` certainly allocates (a lower bound, see :class:`MemoryNeed`)."""
        ...


def discounted_returns(
    rewards: torch.Tensor, dones: torch.Tensor, bootstrap: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Discounted reward-to-go with explicit values at episode ends.

    ``G[t] = r[t] + gamma * (bootstrap[t] if dones[t] else G[t+1])``, computed backwards.
    ``bootstrap[t]`` is the value of the state reached at an episode end: 0 for a
    terminal state, V(final observation) for a time-limit cut or a rollout cut-off.
    A step after the last row that is not an episode end is treated as ending with
    ``bootstrap[T-1]`` (rollout cut-off).

    Args:
        rewards: ``[T, N]`` rewards.
        dones: ``[T, N]`` bool, an episode ended at step t (terminated or truncated).
        bootstrap: ``[T, N]`` value added (discounted) at episode ends.
        gamma: discount factor.

    Returns:
        ``[T, N]`` returns-to-go, in the rewards' dtype.
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    next_return = bootstrap[T - 1].to(rewards.dtype)
    for t in range(T - 1, -1, -1):
        tail = torch.where(dones[t], bootstrap[t].to(rewards.dtype), next_return)
        next_return = rewards[t] + gamma * tail
        out[t] = next_return
    return out


@torch.no_grad()
def grad_norm_and_clip(params: Iterable[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Global L2 norm of the gradients (before clipping), as a 0-d tensor; clips in place
    when ``max_norm`` is set. Never waits for the device (no ``.item()``).

    The same kernels as ``torch.nn.utils.clip_grad_norm_`` (a norm per gradient, the norm
    of those, ``min(1, max_norm / (norm + 1e-6))`` multiplied in), so the same bits, without
    its grouping by device and dtype: the parameters share one device and dtype, and at
    PPO's many small steps the grouping cost half of the clip."""
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm is not None:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def apply_update(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    parts: dict[str, torch.Tensor],
    clip: Callable[[], torch.Tensor],
    params: list[nn.Parameter],
    check_params: bool = True,
    step: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Backward, clip, check, step, check: one gradient step with two device syncs in all.

    The loss is checked before the optimiser steps (a NaN loss never reaches the
    weights), the parameters after it (unless ``check_params`` is False: a caller taking
    many steps per update checks them once, after the last, with :func:`check_parameters`);
    both raise :class:`NonFiniteError`.

    Args:
        optimizer: steps ``params``.
        loss: the scalar to minimise.
        parts: its named parts, logged as they are (``loss/policy``, ...).
        clip: clips the gradients in place and returns their norm before clipping.
        params: every trained parameter, checked after the step.
        step: the optimiser's step (a compiled one); None: ``optimizer.step``.

    Returns:
        the update's metrics: ``parts`` and ``train/grad_norm`` as floats.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip()
    values = torch.stack([loss.detach(), *(v.detach() for v in parts.values()), grad_norm.detach()]).tolist()
    if not math.isfinite(values[0]):
        raise NonFiniteError(f"loss became non-finite ({values[0]})")
    (step or optimizer.step)()
    if check_params:
        check_parameters(params)
    metrics = dict(zip(parts, values[1:-1], strict=True))
    metrics["train/grad_norm"] = values[-1]
    return metrics


def params_finite(params: list[nn.Parameter]) -> torch.Tensor:
    """Whether every parameter is finite, as a 0-d bool tensor (no device sync)."""
    return torch.isfinite(torch.cat([p.detach().view(-1) for p in params])).all()


def check_parameters(params: list[nn.Parameter], finite: torch.Tensor | None = None) -> None:
    """Raise :class:`NonFiniteError` if any parameter holds a NaN or inf (one device sync);
    ``finite``: :func:`params_finite`, when a compiled program computed it already."""
    if not bool(params_finite(params) if finite is None else finite):
        bad = next(n for n, p in enumerate(params) if not bool(torch.isfinite(p).all()))
        raise NonFiniteError(f"parameters became non-finite (parameter {bad} of {len(params)})")


def inject_nan(loss: torch.Tensor, env_steps: int, nan_at_step: int | None) -> torch.Tensor:
    """Fault injection (``debug.nan_at_step``): the loss as NaN from that env step on, as
    a diverging update would make it; :func:`check_finite` must then stop the run."""
    if nan_at_step is not None and env_steps >= nan_at_step:
        return loss * float("nan")
    return loss


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` if ``value`` holds a NaN or inf."""
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"{name} became non-finite ({value.detach().flatten()[:4].tolist()})")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout.

    ``delta[t] = r[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]`` and
    ``A[t] = delta[t] + gamma * lam * (1 - dones[t]) * A[t+1]``, with ``A[T] = 0``.
    ``next_values[t]`` is V of the state step t actually reached: the final observation
    where an episode ended (so a time-limit cut bootstraps from it), the next observation
    otherwise, and after the last step the value of the rollout's last observation.
    ``lam = 1`` gives the n-step return up to the rollout end minus V; ``lam = 0`` the
    one-step TD error.

    Args:
        rewards, values, next_values: ``[T, N]``.
        terminated: ``[T, N]`` bool, a true terminal state was reached (no bootstrap).
        dones: ``[T, N]`` bool, terminated or truncated (the advantage chain is cut).
        gamma, lam: discount and GAE λ.

    Returns:
        ``[T, N]`` advantages; the critic's targets are ``advantages + values``.
    """
    T = rewards.shape[0]
    # everything that does not depend on A[t+1] at once, over [T, N]; the loop is one op a step
    delta = rewards + gamma * next_values * (~terminated).to(rewards.dtype) - values
    carry = (gamma * lam) * (~dones).to(rewards.dtype)
    adv = torch.empty_like(rewards)
    adv[T - 1] = delta[T - 1]
    for t in range(T - 2, -1, -1):
        torch.addcmul(delta[t], carry[t], adv[t + 1], out=adv[t])
    return adv


class RunningMeanStd(torch.nn.Module):
    """Running mean and variance of a stream of batches (Chan et al.'s parallel update).

    Kept as buffers, so they travel with ``state_dict()`` into checkpoints and are used
    unchanged at evaluation.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(eps, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch ``x[B, *shape]``."""
        self.set(*self.folded(x))

    def folded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, var, count)`` with the batch ``x[B, *shape]`` folded in, the statistics
        left as they are: a compiled program computes them, and :meth:`set` stores them
        outside it (inductor lost updates of 0-d float64 buffers made inside a program)."""
        x = x.double()
        b_mean, b_var, b = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b
        m2 = self.var * self.count + b_var * b + delta.pow(2) * self.count * b / total
        return self.mean + delta * b / total, m2 / total, total

    @torch.no_grad()
    def set(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Store statistics (as :meth:`folded` returns them)."""
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.copy_(count)


class ObsNormalizer:
    """Running mean/std observation normalisation, as A2C, PPO and REINFORCE use it:
    ``clip((obs - mean) / std, ±clip)`` with :class:`RunningMeanStd` statistics that an
    algorithm updates after each update (so they stay fixed while it collects data and
    while it is evaluated). Its state is the statistics' ``state_dict`` (``mean``, ``var``,
    ``count``), what checkpoints store under ``obs_rms``.

    Args:
        shape: one observation's shape.
        clip: the bound after normalising.
        device: where the statistics live.
    """

    def __init__(self, shape: tuple[int, ...], clip: float, device: torch.device) -> None:
        self.rms = RunningMeanStd(shape).to(device)
        self.clip = clip
        self._constants = self._from_stats()

    def _from_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`constants` from the current statistics."""
        inv_std = torch.rsqrt(self.rms.var + 1e-8)
        return self.rms.mean.float(), inv_std.float()

    def constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, 1/std)`` in float32, each ``[*shape]``: what :meth:`__call__` applies,
        made when the statistics change (so a compiled program reading them sees one kind
        of value, never a cache still to fill)."""
        return self._constants

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs[..., *shape]`` normalised (a new tensor)."""
        mean, inv_std = self.constants()
        return ((obs - mean) * inv_std).clamp_(-self.clip, self.clip)

    def update(self, obs: torch.Tensor) -> None:
        """Fold raw observations ``[B, *shape]`` into the statistics."""
        self.set(*self.rms.folded(obs))

    def set(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Store statistics (as :meth:`RunningMeanStd.folded` returns them)."""
        self.rms.set(mean, var, count)
        self._constants = self._from_stats()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.rms.load_state_dict(state)
        self._constants = self._from_stats()


class NormalizedSampler:
    """A policy's sampler fed normalised observations (:class:`ObsNormalizer`), for an
    algorithm that stores raw observations and normalises them again for its update."""

    def __init__(self, sample: Sampler, normalize: ObsNormalizer) -> None:
        self.sample, self.normalize = sample, normalize

    def reset(self) -> None:
        self.sample.reset()

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.sample(self.normalize(obs))


def check_obs_normalization(normalize_obs: bool, cfg: Config, env: EnvSpec) -> None:
    """``algo.normalize_obs`` only where observations are numbers, not token ids."""
    from pglab.config import ConfigError

    if normalize_obs and env.capabilities.token_observations:
        raise ConfigError(f"algo.normalize_obs=true: {cfg.env.name} observes token ids, which must not be normalised")


def compile_networks(policy: Policy, value: nn.Module | None) -> str:
    """``torch.compile`` a policy's body and a critic in place (``hardware.compile``); parameters
    and checkpoints are unchanged (``nn.Module.compile`` keeps the state-dict keys). Returns
    what was compiled, as :meth:`Agent.compile` says it."""
    policy.body.compile(dynamic=True)  # batch sizes vary: rollout, update, evaluation
    if value is not None:
        value.compile(dynamic=True)
    return "the networks"


# --------------------------------------------------------------------------- whole episodes


def episode_buffers(
    env: VectorEnv, max_steps: int, device: torch.device, with_final_obs: bool
) -> dict[str, torch.Tensor]:
    """Storage for one complete episode per env, ``[max_steps, N, ...]``, preallocated once
    (see :func:`collect_episodes` for what each entry holds); ``final_obs`` only
    ``with_final_obs`` (a critic bootstraps time-limit cuts from it)."""
    T, n = max_steps, env.num_envs
    obs_shape = env.single_observation_space.shape
    dtype = obs_dtype(env.single_observation_space)
    act_space = env.single_action_space
    if isinstance(act_space, gym.spaces.Discrete):
        actions = torch.zeros(T, n, dtype=torch.long, device=device)
    else:
        actions = torch.zeros(T, n, *act_space.shape, dtype=torch.float32, device=device)
    return {
        "obs": torch.zeros(T, n, *obs_shape, dtype=dtype, device=device),
        "actions": actions,
        "rewards": torch.zeros(T, n, device=device),
        "valid": torch.zeros(T, n, dtype=torch.bool, device=device),
        "dones": torch.zeros(T, n, dtype=torch.bool, device=device),
        "cut": torch.zeros(T, n, dtype=torch.bool, device=device),
        "final_obs": torch.zeros(T, n, *obs_shape, dtype=dtype, device=device)
        if with_final_obs
        else torch.zeros(0, device=device),
        "ep_returns": torch.zeros(n, device=device),
        "ep_lengths": torch.zeros(n, dtype=torch.long, device=device),
        "ep_success": torch.zeros(n, dtype=torch.bool, device=device),
    }


@torch.inference_mode()
def collect_episodes(
    env: VectorEnv, sample: Sampler, buf: dict[str, torch.Tensor], max_steps: int, with_final_obs: bool
) -> tuple[int, bool]:
    """Fill ``buf`` (:func:`episode_buffers`) with one complete episode per env, all reset
    together; returns ``(T, success_reported)``: the longest length, and whether the env
    reports each episode's success.

    Writes ``obs[T,N,D]``, ``actions[T,N,...]``, ``rewards[T,N]``, ``valid[T,N]`` (step
    belongs to the env's episode), ``dones[T,N]`` (its last step), ``cut[T,N]`` (its
    last step, cut by the time limit), ``final_obs[T,N,D]`` (``with_final_obs``: the state
    each step reached, what a cut bootstraps from), and ``ep_returns[N]``/``ep_lengths[N]``/
    ``ep_success[N]`` (where the env reports success).

    An env that finishes early keeps stepping (a vector env steps all its members) until
    the slowest is done: waiting keeps the batch unbiased (stopping early would
    over-represent short episodes); those steps are masked out by ``valid``. The loop
    asks the device whether every episode has ended only every ``sync_every`` steps (1 on
    the CPU, where asking is free; 16 on a GPU).
    """
    obs, _ = env.reset()
    n = env.num_envs
    device = buf["rewards"].device
    sample.reset()  # a transformer's key-value cache runs over the episode
    active = torch.ones(n, dtype=torch.bool, device=device)
    sync_every = 1 if device.type == "cpu" else 16
    success_reported = False
    t = 0
    while True:
        check_episode_steps(t, max_steps)
        action = sample(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        outcome = (reward, terminated, truncated, info)
        success_reported |= record_episode_step(buf, t, obs, action, active, outcome, with_final_obs)
        obs = next_obs
        t += 1
        if (t % sync_every == 0 or t == max_steps) and not bool(active.any()):
            return t, success_reported


def check_episode_steps(t: int, max_steps: int) -> None:
    """Step ``t`` of whole-episode collection must lie within the time limit."""
    if t >= max_steps:
        raise RuntimeError(
            f"an episode ran past the time limit of {max_steps} steps; is the env's max_episode_steps right?"
        )


def record_episode_step(
    buf: dict[str, torch.Tensor],
    t: int,
    obs: torch.Tensor,
    action: torch.Tensor,
    active: torch.Tensor,
    outcome: tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]],
    with_final_obs: bool,
) -> bool:
    """Store step t of :func:`collect_episodes` (``obs`` the step started from, ``outcome`` the
    env's ``(reward, terminated, truncated, info)``) and clear ``active[N]`` where an episode
    ended; True if the env reports success."""
    reward, terminated, truncated, info = outcome
    buf["obs"][t] = obs
    buf["actions"][t] = action
    buf["rewards"][t] = reward
    buf["valid"][t] = active
    ended = active & (terminated | truncated)
    buf["dones"][t] = ended
    if with_final_obs:
        buf["cut"][t] = ended & ~terminated
        buf["final_obs"][t] = info["final_obs"]
    buf["ep_returns"].copy_(torch.where(ended, info["episode_return"], buf["ep_returns"]))
    buf["ep_lengths"].copy_(torch.where(ended, info["episode_length"], buf["ep_lengths"]))
    active &= ~ended
    if "success" not in info:
        return False
    buf["ep_success"].copy_(torch.where(ended, info["success"], buf["ep_success"]))
    return True


# --------------------------------------------------------------------------- action terms


@dataclass
class ActionTerms:
    """What a policy-gradient loss needs about the actions taken, for B steps.

    Attributes:
        logp: ``[B]`` log π(a|s), differentiable.
        entropy: ``[B]`` entropy of π(·|s), differentiable.
        logp_ref: ``[B]`` log π_ref(a|s) of the reference policy (None without one).
        kl: ``[B]`` KL(π(·|s) ‖ π_ref(·|s)) over the whole action set, exact, detached
            (None without a reference).
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    logp_ref: torch.Tensor | None = None
    kl: torch.Tensor | None = None


def _with_reference(logp_all: torch.Tensor, ref_all: torch.Tensor, actions: torch.Tensor) -> ActionTerms:
    """Terms from full log-probabilities ``[B, A]`` (policy, reference) and actions ``[B]``."""
    terms = ActionTerms(*terms_from_log_probs(logp_all, actions))
    terms.logp_ref = ref_all.gather(1, actions.long()[:, None]).squeeze(1)
    terms.kl = (logp_all.exp() * (logp_all - ref_all)).sum(dim=1).detach()
    return terms


def rollout_terms(
    policy: Policy, obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor, reference: Policy | None = None
) -> ActionTerms:
    """:class:`ActionTerms` of every step of a rollout ``[T, N]`` (episodes continue across
    rollouts), in ``obs.flatten(0, 1)`` order; with a reference (categorical policies only),
    both policies' full log-probabilities give the exact KL."""
    if reference is None:
        return ActionTerms(*policy.rollout_terms(obs, actions, dones))
    with torch.no_grad():
        ref_all = reference.rollout_log_probs_all(obs, actions, dones)
    return _with_reference(policy.rollout_log_probs_all(obs, actions, dones), ref_all, actions.flatten())


def episode_terms(
    policy: Policy, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor, reference: Policy | None = None
) -> ActionTerms:
    """:class:`ActionTerms` of the valid steps of whole episodes, in ``obs[valid]`` order.

    Args:
        policy: the policy (a sequence policy scores each episode in one causal pass).
        obs: ``[T, N, ...]`` observations, episode n in column n from step 0.
        actions: ``[T, N]`` actions.
        valid: ``[T, N]`` which steps belong to the episodes.
        reference: a frozen reference policy, or None.

    Returns:
        the terms of the ``B = valid.sum()`` valid steps, row-major over ``[T, N]``.
    """
    if reference is None:
        return ActionTerms(*policy.episode_terms(obs, actions, valid))
    with torch.no_grad():
        ref_all = reference.episode_log_probs_all(obs, actions, valid)
    return _with_reference(policy.episode_log_probs_all(obs, actions, valid), ref_all, actions[valid])


def obs_dtype(space: Any) -> torch.dtype:
    """The torch dtype rollout storage keeps observations of ``space`` in: int64 for token
    sequences (ids a transformer embeds), float32 otherwise (what the vector envs hand over,
    integer Boxes included)."""
    return torch.int64 if isinstance(space, TokenSequence) else torch.float32
