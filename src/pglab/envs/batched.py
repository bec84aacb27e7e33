"""The machinery shared by pglab's native batched torch environments.

A native env is written once, batched: its state is a handful of tensors with a
leading env dimension ``N``, and one :meth:`BatchedEnv.step` call advances all ``N``
environments with tensor operations (no Python loop over environments). A subclass
supplies four pieces:

* ``_start(idx)`` — begin a new episode in the envs ``idx`` (long ``[M]``), drawing
  its randomness from :mod:`pglab.envs.rng` keyed by ``self.seeds[idx]`` and
  ``self.episode[idx]``;
* ``_advance(actions) -> (reward[N] float32, terminated[N] bool)`` — one transition of
  every env;
* ``_observe() -> obs[N, D] float32``;
* ``_outcome(done) -> (success[N] bool, stats: dict[str, float tensor [N]])`` — how the
  episodes that end now went (read only where ``done``), e.g. the maze's optimality.

An env whose starts are cheap can also override ``_start_where(mask)``, which begins a
new episode in the envs where ``mask`` is set by computing a start for every env and
selecting with ``torch.where``: then a step never waits for the device (no
``done.any()``, no ``nonzero``), which is what keeps a GPU busy. The default finds the
ended envs and calls ``_start``.

This base class adds what every env needs identically: per-env seeds and episode
counters, the time limit (``truncated``, set as gymnasium's ``TimeLimit`` sets it: also
when the episode terminated in the same step; algorithms never bootstrap a terminated
step), discrete and continuous actions (continuous ones clipped to the action space, as
SB3 and pglab's gymnasium adapter do), gymnasium's
``SAME_STEP`` autoreset with a dense ``info["final_obs"]``, per-env episode returns and
lengths, and optional text traces of the first few envs' episodes (for W&B tables).

Because every random number is a function of (env seed, episode index, ...), sub-env
``i`` behaves exactly the same in a batch of 1 or of 4096, so :class:`SingleEnv` — the
``gymnasium.Env`` registered as ``pglab/...`` — is simply the batched env with ``N = 1``
and numpy at the boundary.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch

from pglab.envs import rng
from pglab.envs.capabilities import EnvCapabilities


def _entropy_seed() -> int:
    """A fresh seed from the OS, for resets that are not given one (as gymnasium does)."""
    return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])


def _state_mode() -> contextlib.AbstractContextManager:
    """No autograd, and never inference mode: an env's state tensors outlive the call, and
    tensors made under ``torch.inference_mode`` (as in an evaluation) could not be
    updated in place by a later training step. Nothing inside a ``torch.compile`` trace:
    a compiled rollout runs under ``no_grad`` and outside inference mode."""
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.no_grad())
    return stack


F = TypeVar("F", bound=Callable[..., Any])


def stateful(method: F) -> F:
    """Run ``method`` in :func:`_state_mode` (for every method that creates or updates env state)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _state_mode():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class BatchedEnv(gym.vector.VectorEnv):
    """Base class of pglab's native batched envs; see the module docstring.

    Args:
        num_envs: N.
        max_episode_steps: time limit in steps (None: the env's own default, see
            :meth:`time_limit`; 0: no limit, for :class:`SingleEnv` under a TimeLimit wrapper).
        device: where every tensor lives.
        seeds: the sub-envs' seeds for the first :meth:`reset` (an int s: s, s+1, ...).
        render_mode: ``"ansi"`` or ``"rgb_array"`` (of the subclass's ``render_modes``).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "render_modes": []}
    supports_traces: ClassVar[bool] = False  # the env writes its episodes as text (trace_*)
    capabilities: ClassVar[EnvCapabilities] = EnvCapabilities()
    # constructor arguments that shape the training reward only: evaluation envs go without
    # them (EnvSpec.evaluation), so every evaluated return is the true one
    train_only_kwargs: ClassVar[tuple[str, ...]] = ()
    # step traces whole into a torch.compile program (a compiled A2C rollout): _advance,
    # _observe, _shaped, _outcome and _start_where are branch-free tensor code
    traceable_step: ClassVar[bool] = False

    @stateful
    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None,
        device: torch.device | str = "cpu",
        seeds: int | list[int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}: must be >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: must be one of {self.metadata['render_modes']} or None")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self._initial_seeds = seeds
        self._seeded = False
        n = num_envs
        self.seeds = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.episode = torch.zeros(n, dtype=torch.int64, device=self.device)  # episodes begun since seeding
        self.t = torch.zeros(n, dtype=torch.int64, device=self.device)  # steps into the current episode
        self._ep_return = torch.zeros(n, dtype=torch.float64, device=self.device)
        # Checking discrete actions' range costs a device sync per step: on by default on
        # the CPU, where it is free; off on a GPU, where pglab's policies cannot emit a bad one.
        self.check_actions = self.device.type == "cpu"
        self.trace_envs = 0  # record text traces of envs 0..trace_envs-1 (see trace_*)
        self._traces: list[list[str]] = []

    def _init_spaces(self, observation: gym.spaces.Box, action: gym.spaces.Discrete | gym.spaces.Box) -> None:
        """Set the single and batched spaces (call from the subclass's ``__init__``)."""
        self.single_observation_space = observation
        self.single_action_space = action
        self.observation_space = gym.vector.utils.batch_space(observation, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(action, self.num_envs)
        self._discrete = isinstance(action, gym.spaces.Discrete)
        if not self._discrete:
            self._act_low = torch.as_tensor(action.low, dtype=torch.float32, device=self.device)
            self._act_high = torch.as_tensor(action.high, dtype=torch.float32, device=self.device)

    def _prepare_actions(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Actions as ``long[N]`` (discrete, range-checked when ``check_actions``) or
        ``float32[N, *shape]`` clipped to the action space (continuous)."""
        space = self.single_action_space
        if not self._discrete:
            actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
            return actions.reshape(self.num_envs, *space.shape).clamp(self._act_low, self._act_high)
        actions = torch.as_tensor(actions, device=self.device).reshape(self.num_envs).long()
        if self.check_actions and not torch.compiler.is_compiling():  # a compiled step has no syncs
            low, high = torch.aminmax(actions)
            if int(low) < 0 or int(high) >= int(space.n):
                raise ValueError(f"actions must be integers in [0, {int(space.n)}); got {actions.tolist()[:8]}")
        return actions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's ``__init__`` builds state tensors too: run it in :func:`_state_mode`."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = stateful(cls.__dict__["__init__"])  # type: ignore[method-assign]

    @classmethod
    def check_kwargs(cls, **kwargs: Any) -> None:
        """Check constructor arguments without building anything (a maze of 101 tiles takes
        a second to generate): TypeError for an unknown argument, ValueError naming a bad one."""
        bound = inspect.signature(cls).bind_partial(**kwargs)
        bound.apply_defaults()
        cls._check_params(bound.arguments)

    @staticmethod
    def _check_params(args: dict[str, Any]) -> None:
        """Raise ValueError for a bad parameter (``args``: every constructor argument)."""

    @classmethod
    def time_limit(cls, **kwargs: Any) -> int:
        """The time limit episodes are cut at when ``max_episode_steps`` is not given, for
        these constructor arguments."""
        raise NotImplementedError

    # ----------------------------------------------------------------- subclass hooks

    def _start(self, idx: torch.Tensor) -> None:
        raise NotImplementedError

    def _start_where(self, mask: torch.Tensor) -> bool:
        """Begin new episodes where ``mask`` (bool ``[N]``) is set, after the counters moved on.

        Returns whether any env may have started (the observation must then be taken
        again). This default finds those envs (a device sync) and calls :meth:`_start`;
        an env overrides it to start branch-free.
        """
        idx = torch.nonzero(mask).flatten()
        if idx.numel() == 0:
            return False
        self._start(idx)
        return True

    def _reseeded(self) -> None:
        """The seeds changed: drop anything derived from the old ones (e.g. pre-generated mazes)."""

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        raise NotImplementedError

    def _shaped(self, reward: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """The reward the learner gets for the step just taken (state advanced, not yet
        reset): ``reward`` itself unless the env shapes it; the episode statistics always
        count ``reward``."""
        return reward

    def _outcome(self, done: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def trace_begin(self, i: int) -> str:
        """Text opening the trace of env i's new episode ('' = none)."""
        return ""

    def trace_step(self, i: int, action: int) -> str:
        """Text of env i's step just taken with ``action`` (state already advanced)."""
        return ""

    def trace_end(self, i: int, success: bool, episode_return: float) -> str:
        """Text closing env i's episode trace."""
        return ""

    def render_env(self, i: int) -> Any:
        """The render of sub-env i in ``self.render_mode``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the contract

    def _limit(self) -> int:
        limit = self.max_episode_steps
        return 0 if limit is None else int(limit)

    def seed_envs(self, seed: int | list[int] | None) -> None:
        """Set the sub-envs' seeds and restart their episode counters."""
        if seed is None:
            seed = _entropy_seed()
        if isinstance(seed, int | np.integer):
            values = [rng.fold_seed(int(seed) + i) for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"reset(seed=...): {len(seed)} seeds for {self.num_envs} envs")
            values = [rng.fold_seed(int(s)) for s in seed]
        self.seeds.copy_(torch.tensor(values, dtype=torch.int64))
        self.episode.fill_(-1)  # _begin_where increments to 0
        self._reseeded()
        first = values[0]
        self.action_space.seed(first)
        self.single_action_space.seed(first)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Start a new episode in every env. The first call uses the construction seeds
        unless given seeds; a later call without seeds continues each env's episode count."""
        with _state_mode():
            return self._reset(seed)

    def _reset(self, seed: int | list[int] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        if seed is None and not self._seeded:
            seed = self._initial_seeds
            self.seed_envs(seed)
        elif seed is not None:
            self.seed_envs(seed)
        self._seeded = True
        self._traces = [[] for _ in range(self.trace_envs)]
        self._begin_where(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe(), {}

    def _begin_where(self, done: torch.Tensor) -> bool:
        """Start the next episode of the envs where ``done`` (bool ``[N]``) is set: at a
        reset (all of them) and at the autoreset of a step (those whose episode ended).

        On the CPU, where asking costs nothing, a step in which no episode ended skips
        all of it; on a GPU, and inside a ``torch.compile`` trace, it runs branch-free (no
        device sync) when the env overrides :meth:`_start_where`. Returns whether any env
        may have started.
        """
        if self.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(done.any()):
            return False
        self.episode += done
        self.t.masked_fill_(done, 0)
        self._ep_return.masked_fill_(done, 0.0)
        started = self._start_where(done)
        if self.trace_envs:
            for i in torch.nonzero(done[: self.trace_envs]).flatten().tolist():
                self._traces[i] = [self.trace_begin(i)]
        return started

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every env one step; see the step contract in :mod:`pglab.envs`.

        Args:
            actions: ``[N]`` action indices (discrete; any integer dtype) or ``[N, *shape]``
                actions (continuous; clipped to the space), on any device.
        Returns:
            obs ``[N, D]`` float32, reward ``[N]`` float32, terminated ``[N]`` bool,
            truncated ``[N]`` bool, info with ``final_obs [N, D]``, ``episode_return [N]``,
            ``episode_length [N]``, ``success [N]`` bool and ``episode_stats`` (each
            ``[N]``; all read only where an episode ended), and ``episode_text``
            ({env index: trace}) when traces are on.
        """
        with _state_mode():
            return self._step(actions)

    def _step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        actions = self._prepare_actions(actions)
        reward, terminated = self._advance(actions)
        self.t += 1
        limit = self._limit()
        truncated = self.t >= limit if limit > 0 else torch.zeros_like(terminated)
        done = terminated | truncated
        self._ep_return += reward.double()  # the true return, also under shaping
        shaped = self._shaped(reward, terminated)
        final_obs = self._observe()
        ep_return = torch.where(done, self._ep_return, 0.0).float()
        ep_length = torch.where(done, self.t, 0)
        info: dict[str, Any] = {"final_obs": final_obs, "episode_return": ep_return, "episode_length": ep_length}
        success, stats = self._outcome(done)
        info["success"] = success & done
        info["episode_stats"] = {k: torch.where(done, v, 0.0) for k, v in stats.items()}
        if self.trace_envs:
            texts = self._trace(actions, done, info["success"], ep_return)
            if texts:
                info["episode_text"] = texts
        obs = self._observe() if self._begin_where(done) else final_obs
        return obs, shaped, terminated, truncated, info

    def _trace(
        self, actions: torch.Tensor, done: torch.Tensor, success: torch.Tensor, ep_return: torch.Tensor
    ) -> dict[int, str]:
        k = min(self.trace_envs, self.num_envs)
        acts, dones, succ, rets = (x[:k].tolist() for x in (actions, done, success, ep_return))
        finished: dict[int, str] = {}
        for i in range(k):
            self._traces[i].append(self.trace_step(i, acts[i]))
            if dones[i]:
                self._traces[i].append(self.trace_end(i, bool(succ[i]), float(rets[i])))
                finished[i] = "\n".join(line for line in self._traces[i] if line)
        return finished

    def render(self) -> tuple[Any, ...] | None:
        """Renders of every sub-env (gymnasium's vector convention), in ``render_mode``."""
        if self.render_mode is None:
            return None
        return tuple(self.render_env(i) for i in range(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        pass


class SingleEnv(gym.Env):
    """One environment of a :class:`BatchedEnv` as a standard numpy ``gymnasium.Env``.

    The batched env with ``N = 1`` on the CPU, without autoreset; the time limit stays
    the batched env's own (so the two agree step for step), reported as ``truncated``.
    ``info`` holds ``is_success`` (SB3's key) and, when an episode ends, the same
    per-episode statistics as the batched env (``optimality``, ``expert_fraction``, ...).
    """

    batched_class: type[BatchedEnv]

    @stateful
    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.core = self.batched_class(num_envs=1, device="cpu", render_mode=render_mode, **kwargs)
        self.render_mode = render_mode
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._done = True
        if render_mode == "ansi":
            self.core.trace_envs = 1

    @stateful
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        core = self.core
        if seed is not None:
            core.seed_envs([seed])
        elif not core._seeded:
            core.seed_envs(core._initial_seeds)  # a seeds= given at construction, else fresh entropy
        core._seeded = True
        core._traces = [[] for _ in range(core.trace_envs)]
        core._begin_where(torch.ones(1, dtype=torch.bool))
        self._done = False
        return core._observe()[0].numpy(), {}

    @stateful
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        core = self.core
        if core._discrete and not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        actions = core._prepare_actions(np.asarray(action)[None])
        reward, terminated = core._advance(actions)
        core.t += 1
        limit = core._limit()
        truncated = bool(core.t[0] >= limit) if limit > 0 else False
        done = terminated | torch.tensor([truncated])
        core._ep_return += reward.double()
        reward = core._shaped(reward, terminated)
        success, stats = core._outcome(done)
        info: dict[str, Any] = {"is_success": bool(success[0] & done[0])}
        if bool(done[0]):
            info.update({k: float(v[0]) for k, v in stats.items()})
        if core.trace_envs:
            core._trace(actions, done, success & done, core._ep_return.float())
        return core._observe()[0].numpy(), float(reward[0]), bool(terminated[0]), truncated, info

    def render(self) -> Any:
        return self.core.render_env(0) if self.render_mode is not None else None


class GroupedStarts:
    """What an env whose envs ``[g·k, (g+1)·k)`` can share each episode's start needs
    (:class:`~pglab.envs.capabilities.SharesStarts`): the group size, and each env's group
    leader, whose seed and episode count key the group's episode. A mixin of a
    :class:`BatchedEnv`."""

    num_envs: int
    group_size: int = 1

    def set_group_size(self, k: int) -> None:
        """Envs ``[g·k, (g+1)·k)`` share each episode's start from now on (``k`` must divide N)."""
        if k < 1 or self.num_envs % k:
            raise ValueError(f"group size {k}: must be >= 1 and divide num_envs={self.num_envs}")
        self.group_size = k

    def leaders(self, idx: torch.Tensor) -> torch.Tensor:
        """``[M]`` the first env of each env ``idx[M]``'s group."""
        return idx - idx % self.group_size
