"""MountainCar-v0 and MountainCarContinuous-v0, batched in torch, step for step gymnasium's.

The physics, bounds, rewards, termination, time limits (200 and 999 steps) and reset
distribution are gymnasium's (``gymnasium/envs/classic_control/mountain_car.py`` and
``continuous_mountain_car.py``), down to the floating-point type of every operation, so
that from the same state and the same actions the observations, rewards and flags are
bit-for-bit gymnasium's (``tests/test_mountaincar.py`` checks it against gymnasium
itself). What that takes:

* **MountainCar-v0** keeps its state in float64, as gymnasium does:
  ``v += (a - 1)·0.001 + cos(3p)·(-0.0025)``; clip v to ±0.07; ``p += v``; clip p to
  [-1.2, 0.6]; at the left wall a leftward velocity becomes 0; terminated when
  ``p >= 0.5 and v >= goal_velocity``; reward -1 per step.
* **MountainCarContinuous-v0** stores its state as float32 after every step (gymnasium
  writes it into a float32 array), but the state drawn at reset is float64 until the
  first step; NumPy's promotion rules (NEP 50) then decide which operations of a step run
  in float32 and which in float64. :meth:`MountainCarContinuousVectorEnv._advance`
  follows them operation by operation, for both kinds of state.
* ``cos`` is the C library's, as gymnasium's ``math.cos``: on the CPU through NumPy
  (a zero-copy view of the tensor), because ``torch.cos`` differs from it in the last
  bit for about 0.2 % of arguments. On a GPU ``torch.cos`` is used: the same physics to
  within one float64 ulp per step, without a device round trip.
* Start states: position uniform in [-0.6, -0.4), velocity 0. The number comes from
  pglab's counter-based generator (:mod:`pglab.envs.rng`), keyed by the env's seed and
  episode index, so the distribution is gymnasium's but the draws are not NumPy's.

Every step is branch-free tensor code: no Python loop over envs, no device sync, also at
the autoreset (:meth:`_start_where`), so a batch of 65,536 envs on a GPU never waits.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from pglab.envs import drawing, rng
from pglab.envs.batched import BatchedEnv, SingleEnv

MIN_POSITION, MAX_POSITION, MAX_SPEED = -1.2, 0.6, 0.07
GRAVITY = 0.0025  # the velocity update's cos(3p) coefficient: the force of the potential (GRAVITY / 3) sin(3p)
SHAPING_KWARGS = ("shaping", "shaping_gamma", "shaping_scale")
_START = 0x5EED  # purpose key of the start-state draws
_F32 = torch.float32


def _libm_cos(x: torch.Tensor) -> torch.Tensor:
    """``cos`` of a float64 tensor as C's ``cos`` (and so Python's ``math.cos``) gives it.

    On the CPU through NumPy on a shared-memory view (no copy); elsewhere, and inside a
    ``torch.compile`` trace (NumPy cannot be traced), ``torch.cos``.
    """
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        return torch.from_numpy(np.cos(x.numpy()))
    return torch.cos(x)


class _MountainCarBase(BatchedEnv):
    """State, starts and observations shared by the discrete and the continuous car.

    State: ``position[N]`` and ``velocity[N]``, float64.
    """

    metadata: ClassVar[dict[str, Any]] = {**BatchedEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}
    default_time_limit: ClassVar[int]
    goal_position: ClassVar[float]
    train_only_kwargs: ClassVar[tuple[str, ...]] = SHAPING_KWARGS
    traceable_step: ClassVar[bool] = True

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        device: torch.device | str = "cpu",
        seeds: int | list[int] | None = None,
        render_mode: str | None = None,
        goal_velocity: float = 0.0,
        shaping: str = "none",
        shaping_gamma: float = 0.99,
        shaping_scale: float = 10.0,
    ) -> None:
        self._check_params(
            {"goal_velocity": goal_velocity, "shaping": shaping, "shaping_gamma": shaping_gamma,
             "shaping_scale": shaping_scale}
        )  # fmt: skip
        self.shaping, self.shaping_gamma, self.shaping_scale = shaping == "energy", shaping_gamma, shaping_scale
        if max_episode_steps is None:
            max_episode_steps = self.default_time_limit
        super().__init__(num_envs, max_episode_steps, device, seeds, render_mode)
        self.goal_velocity = float(goal_velocity)
        n = num_envs
        self.position = torch.zeros(n, dtype=torch.float64, device=self.device)
        self.velocity = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._keys = torch.zeros(n, dtype=torch.int64, device=self.device)
        self._phi = torch.zeros(n, dtype=torch.float64, device=self.device)  # Φ of each env's current state
        low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
        high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)
        self._init_spaces(gym.spaces.Box(low, high, dtype=np.float32), self._action_space())
        self._init_constants()

    def _init_constants(self) -> None:
        """Tensors the subclass's step needs, made once on the device."""

    @classmethod
    def time_limit(cls, **_: Any) -> int:
        """gymnasium's registered ``max_episode_steps``."""
        return cls.default_time_limit

    @staticmethod
    def _check_params(args: dict[str, Any]) -> None:
        for key in ("goal_velocity", "shaping_gamma", "shaping_scale"):
            value = args.get(key, 0.0)
            if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"{key}={value!r}: must be a finite number")
        if args.get("shaping", "none") not in ("none", "energy"):
            raise ValueError(f"shaping={args['shaping']!r}: must be none or energy")
        if not 0.0 <= args.get("shaping_gamma", 0.99) <= 1.0:
            raise ValueError(f"shaping_gamma={args['shaping_gamma']!r}: must be >= 0 and <= 1")

    def _action_space(self) -> gym.spaces.Space:
        raise NotImplementedError

    def _reseeded(self) -> None:
        self._keys.copy_(rng.bits(self.seeds, _START))

    def _start_positions(self) -> torch.Tensor:
        """``[N]`` float64 start positions of every env's current episode, uniform in [-0.6, -0.4)."""
        u = rng.draw(self._keys, self.episode).double() / 2.0**32
        return -0.6 + 0.2 * u  # gymnasium: np_random.uniform(low=-0.6, high=-0.4)

    def _start(self, idx: torch.Tensor) -> None:
        self.position[idx] = self._start_positions()[idx]
        self.velocity[idx] = 0.0
        self._refresh_potential()

    def _start_where(self, mask: torch.Tensor) -> bool:
        self.position.copy_(torch.where(mask, self._start_positions(), self.position))
        self.velocity.masked_fill_(mask, 0.0)
        self._refresh_potential()
        return True

    # ---------------------------------------------------------------- shaping (env.shaping=energy)

    def potential(self) -> torch.Tensor:
        """``[N]`` float64 Φ(s): the car's mechanical energy per unit mass,
        ``v²/2 + (GRAVITY/3)·sin(3p)``, rescaled so that the valley at rest is 0 and the flag
        at rest is ``shaping_scale``."""
        energy = 0.5 * self.velocity**2 + GRAVITY / 3 * torch.sin(3 * self.position)
        low, flag = -GRAVITY / 3, GRAVITY / 3 * float(np.sin(3 * self.goal_position))
        return self.shaping_scale * (energy - low) / (flag - low)

    def _refresh_potential(self) -> None:
        if self.shaping:
            self._phi = self.potential()

    def _shaped(self, reward: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """With shaping: ``r + γ·Φ(s') − Φ(s)``, Φ(s') = 0 when s' is terminal (the absorbing
        state's potential, which keeps the optimal policy: Ng et al. 1999); a time-limit
        cut keeps γ·Φ(s'), the state the task would continue from."""
        if not self.shaping:
            return reward
        phi_next = self.potential()
        shaped = reward.double() + self.shaping_gamma * torch.where(terminated, 0.0, phi_next) - self._phi
        self._phi = phi_next
        return shaped.float()

    def set_state(self, idx: torch.Tensor | list[int], position: Any, velocity: Any) -> None:
        """Put envs ``idx`` into a given state, as a fresh start (for tests and studies).

        ``position`` and ``velocity`` are float64 ``[len(idx)]`` (sequences of Python floats
        or float64 arrays; a float32 tensor would have lost the state's precision already);
        like gymnasium's ``env.unwrapped.state = np.array([p, v])``.
        """
        for name, x in (("position", position), ("velocity", velocity)):
            if isinstance(x, torch.Tensor | np.ndarray) and x.dtype not in (torch.float64, np.float64):
                raise ValueError(f"set_state: {name} must be float64, got {x.dtype}")
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.position[idx] = torch.as_tensor(position, dtype=torch.float64, device=self.device)
            self.velocity[idx] = torch.as_tensor(velocity, dtype=torch.float64, device=self.device)
        self._refresh_potential()

    def _observe(self) -> torch.Tensor:
        return torch.stack([self.position, self.velocity], dim=1).float()

    def _outcome(self, done: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._terminated, {}

    def render_env(self, i: int) -> np.ndarray:
        """``rgb_array``: sub-env i as gymnasium draws MountainCar (the hill
        ``0.45·sin(3x) + 0.55``, the car tilted along it with two wheels, the flag at the
        goal), at 0.8 of its 600 × 400 pixels: ``uint8[320, 480, 3]``."""
        return draw_mountain_car(float(self.position[i]), self.goal_position)


def _height(x: np.ndarray | float) -> np.ndarray | float:
    return np.sin(3 * x) * 0.45 + 0.55


@functools.lru_cache(maxsize=4)
def _hill(width: int, height: int) -> np.ndarray:
    """The frame without car and flag, drawn once per size (read-only: copy it)."""
    scale, k = width / (MAX_POSITION - MIN_POSITION), width / 600
    img = drawing.canvas(width, height)
    xs = np.linspace(MIN_POSITION, MAX_POSITION, 100)
    drawing.polyline(img, list(zip((xs - MIN_POSITION) * scale, _height(xs) * scale, strict=True)), (0, 0, 0), 2 * k)
    img.flags.writeable = False
    return img


def draw_mountain_car(position: float, goal_position: float, width: int = 480, height: int = 320) -> np.ndarray:
    """gymnasium's MountainCar picture of a car at ``position`` (its ``render`` with pygame,
    redrawn in numpy): ``uint8[height, width, 3]``."""
    scale = width / (MAX_POSITION - MIN_POSITION)
    k = width / 600  # gymnasium's pixel sizes are for a 600-wide screen
    img = _hill(width, height).copy()
    car_w, car_h, clearance = 40 * k, 20 * k, 10 * k
    angle = np.cos(3 * position)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    origin = np.array([(position - MIN_POSITION) * scale, clearance + _height(position) * scale])
    body = np.array([[-car_w / 2, 0], [-car_w / 2, car_h], [car_w / 2, car_h], [car_w / 2, 0]])
    drawing.fill_convex(img, [tuple(origin + rot @ c) for c in body], (0, 0, 0))
    for wx in (car_w / 4, -car_w / 4):
        drawing.fill_disk(img, tuple(origin + rot @ np.array([wx, 0.0])), car_h / 2.5, (128, 128, 128))
    flag_x = (goal_position - MIN_POSITION) * scale
    flag_y1 = _height(goal_position) * scale
    flag_y2 = flag_y1 + 50 * k
    drawing.polyline(img, [(flag_x, flag_y1), (flag_x, flag_y2)], (0, 0, 0), 1.5 * k)
    flag = [(flag_x, flag_y2), (flag_x, flag_y2 - 10 * k), (flag_x + 25 * k, flag_y2 - 5 * k)]
    drawing.fill_convex(img, flag, (204, 204, 0))
    return img


class MountainCarVectorEnv(_MountainCarBase):
    """N MountainCar-v0 envs (3 actions: push left, none, right) in one batch; see the module docstring.

    Args:
        num_envs: N.
        max_episode_steps: time limit (None: gymnasium's 200).
        device: where the state lives.
        seeds: the sub-envs' seeds for the first reset.
        render_mode: ``rgb_array`` (gymnasium's picture, see :meth:`render_env`) or None.
        goal_velocity: the velocity the car must have at the flag (gymnasium's argument).
    """

    default_time_limit = 200
    goal_position = 0.5

    def _init_constants(self) -> None:
        # (action - 1) * force for the actions 0, 1, 2: exactly these float64 numbers
        self._push = torch.tensor([-0.001, 0.0, 0.001], dtype=torch.float64, device=self.device)
        self._reward = torch.full((self.num_envs,), -1.0, dtype=_F32, device=self.device)

    def _action_space(self) -> gym.spaces.Space:
        return gym.spaces.Discrete(3)

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position, velocity = self.position, self.velocity
        # velocity += (action - 1) * force + cos(3 * position) * (-gravity), in float64
        velocity = velocity + (self._push[actions] + _libm_cos(3.0 * position) * -GRAVITY)
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        self._terminated = (position >= 0.5) & (velocity >= self.goal_velocity)
        self.position.copy_(position)
        self.velocity.copy_(velocity)
        return self._reward.clone(), self._terminated


class MountainCarContinuousVectorEnv(_MountainCarBase):
    """N MountainCarContinuous-v0 envs (one force in [-1, 1]) in one batch; see the module docstring.

    Args: as :class:`MountainCarVectorEnv` (time limit 999).
    """

    default_time_limit = 999
    goal_position = 0.45

    def _init_constants(self) -> None:
        # the state is float64 from a reset until the first step, float32 after it
        self._wide = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._power = torch.tensor(0.0015, dtype=_F32, device=self.device)  # float32(0.0015), as NumPy casts it

    def _action_space(self) -> gym.spaces.Space:
        return gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _start(self, idx: torch.Tensor) -> None:
        super()._start(idx)
        self._wide[idx] = True

    def _start_where(self, mask: torch.Tensor) -> bool:
        self._wide |= mask
        return super()._start_where(mask)

    def set_state(self, idx: torch.Tensor | list[int], position: Any, velocity: Any) -> None:
        super().set_state(idx, position, velocity)
        self._wide[torch.as_tensor(idx, dtype=torch.long, device=self.device)] = True

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        force = actions[:, 0]  # float32, already clipped to [-1, 1]
        goal_v = self.goal_velocity
        # force * power: float32 · float32(0.0015)
        push = force * self._power
        # --- a float32 state (every step but the first of an episode)
        p32, v32 = self.position.float(), self.velocity.float()
        gravity = (GRAVITY * _libm_cos((p32 * 3.0).double())).float()  # 3·p in float32, cos in float64
        v_n = (v32 + (push - gravity)).clamp(-np.float32(MAX_SPEED), np.float32(MAX_SPEED))
        p_n = (p32 + v_n).clamp(np.float32(MIN_POSITION), np.float32(MAX_POSITION))
        v_n = torch.where((p_n == np.float32(MIN_POSITION)) & (v_n < 0), 0.0, v_n)
        term_n = (p_n >= np.float32(0.45)) & (v_n >= np.float32(goal_v))
        # --- the float64 state of a reset: the increment is float32, the rest float64
        p64, v64 = self.position, self.velocity
        gravity_w = (GRAVITY * _libm_cos(3.0 * p64)).float()
        v_w = (v64 + (push - gravity_w).double()).clamp(-MAX_SPEED, MAX_SPEED)
        p_w = (p64 + v_w).clamp(MIN_POSITION, MAX_POSITION)
        v_w = torch.where((p_w == MIN_POSITION) & (v_w < 0), 0.0, v_w)
        term_w = (p_w >= 0.45) & (v_w >= goal_v)
        wide = self._wide
        self.position.copy_(torch.where(wide, p_w.float().double(), p_n.double()))
        self.velocity.copy_(torch.where(wide, v_w.float().double(), v_n.double()))
        self._terminated = torch.where(wide, term_w, term_n)
        self._wide.zero_()
        # reward = (100 if terminated else 0) - action² · 0.1, in float64 (the action as given)
        a = force.double()
        reward = torch.where(self._terminated, 100.0, 0.0) - a * a * 0.1
        return reward.float(), self._terminated


class MountainCarEnv(SingleEnv):
    """One :class:`MountainCarVectorEnv` as a ``gymnasium.Env`` (``pglab/MountainCar-v0``)."""

    batched_class = MountainCarVectorEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}


class MountainCarContinuousEnv(SingleEnv):
    """One :class:`MountainCarContinuousVectorEnv` as a ``gymnasium.Env`` (``pglab/MountainCarContinuous-v0``)."""

    batched_class = MountainCarContinuousVectorEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}
