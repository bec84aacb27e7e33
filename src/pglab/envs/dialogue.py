"""A toy task-oriented dialogue, batched in torch: the classic dialogue-policy testbed.

A simulated user wants to book a restaurant described by ``num_slots`` slots (cuisine,
area, price, ...; 4-8 values each), drawn uniformly per episode. Every turn the system
(the agent) takes one dialogue act:

* ``request(slot)`` — the user informs the slot's value. With probability
  ``error_rate`` the system mishears: its belief takes a uniformly drawn *wrong* value.
  The recogniser's confidence is uniform on [0.4, 1.0) for a correct hearing and on
  [0, 0.6) for a mishearing, so a confidence below 0.4 is surely wrong, one of 0.6 or
  more surely right, and one in between is wrong with probability ``error_rate``.
* ``confirm(slot)`` — the user affirms or corrects the belief; it is then right, with
  confidence 1. Confirming a slot never informed is a wasted turn.
* ``book`` — ends the dialogue; success if every slot's belief is the user's value.
* ``bye`` — ends the dialogue unserved.

Reward: −1 per turn; ``+success_reward`` for a successful ``book``; ``−failure_penalty``
for a wrong ``book``, a ``bye``, or running out of turns (``max_turns`` turns: the turn
count is observed, so this is a true terminal state, not a truncation).

Observation (``2·num_slots + 1`` floats in [0, 1]): per slot whether it is filled, per
slot the belief's confidence (0 if unfilled), and ``turn / max_turns``.

The expert (:func:`solve_expert`, :func:`expert_action`) is the optimal policy for this
model, computed exactly by backward induction. Slots are exchangeable and every
ambiguous belief is right with probability ``1 − error_rate``, independently of the
rest, so (unfilled slots, ambiguous slots, surely wrong slots, turns left) is a
sufficient statistic of the observation; the induction runs over those states and every
act (request, confirm, re-request, book, bye), the turn limit included. With the default
rewards the result reads: request every slot, confirm the surely wrong ones and — when
``(success_reward + failure_penalty)`` times the chance of a wrong ambiguous slot pays
for the turns — the ambiguous ones, then book; with a small stake it gives up at once.
Its exact expected return (:func:`expert_return`) is the reference line in evaluation.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from pglab.envs import rng
from pglab.envs.batched import BatchedEnv, SingleEnv
from pglab.envs.capabilities import EnvCapabilities

# Slot names and values; a dialogue uses the first num_slots slots.
SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cuisine", ("italian", "chinese", "indian", "french", "thai", "mexican")),
    ("area", ("north", "south", "east", "west", "centre")),
    ("price", ("cheap", "moderate", "expensive", "luxury")),
    ("people", ("two", "three", "four", "five", "six", "seven")),
    ("day", ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")),
    ("time", ("18:00", "18:30", "19:00", "19:30", "20:00", "20:30", "21:00", "21:30")),
    ("seating", ("indoor", "outdoor", "terrace", "bar")),
    ("rating", ("one-star", "two-star", "three-star", "four-star", "five-star")),
)
MAX_SLOTS = len(SLOTS)
SURE_WRONG_BELOW = 0.4  # a correct hearing's confidence is uniform on [0.4, 1.0)
SURE_RIGHT_FROM = 0.6  # a mishearing's confidence is uniform on [0.0, 0.6)
_DIALOGUE, _GOAL = 0x4449414C, 0x474F414C  # purpose constants of the counter-based RNG


def check_dialogue_params(
    num_slots: int, error_rate: float, max_turns: int, success_reward: float, failure_penalty: float
) -> None:
    """Raise ValueError naming the parameter, its value and what is allowed.

    The one place of these ranges: ``pglab.envs`` runs this check on ``env.*`` before a run.
    """
    if not isinstance(num_slots, int) or not 1 <= num_slots <= MAX_SLOTS:
        raise ValueError(f"num_slots={num_slots}: must be an integer from 1 to {MAX_SLOTS}")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate={error_rate}: must be a probability in [0, 1]")
    if not isinstance(max_turns, int) or max_turns < 2 * num_slots + 1:
        raise ValueError(
            f"max_turns={max_turns}: must be >= 2*num_slots+1 = {2 * num_slots + 1} "
            "(time to request and confirm every slot, then book)"
        )
    for name, value in (("success_reward", success_reward), ("failure_penalty", failure_penalty)):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value}: must be a finite number")
    if success_reward <= 0:
        raise ValueError(f"success_reward={success_reward}: must be > 0")
    if failure_penalty < 0:
        raise ValueError(f"failure_penalty={failure_penalty}: must be >= 0")


def action_names(num_slots: int) -> list[str]:
    """Dialogue act of each action index: requests, then confirms, then book and bye."""
    names = [f"request({SLOTS[k][0]})" for k in range(num_slots)]
    names += [f"confirm({SLOTS[k][0]})" for k in range(num_slots)]
    return [*names, "book", "bye"]


# The expert's acts, as kinds; expert_action maps a kind to the first slot it applies to.
REQUEST, CONFIRM_WRONG, CONFIRM_AMBIGUOUS, BOOK, BYE, REREQUEST_AMBIGUOUS, REREQUEST_WRONG = range(7)


def solve_expert(
    num_slots: int, error_rate: float, max_turns: int, success_reward: float, failure_penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """The optimal values and acts of the dialogue, by backward induction.

    State: ``(L, u, m, w)`` = turns left, unfilled slots, ambiguous slots (confidence in
    [0.4, 0.6)), surely wrong slots (< 0.4); the other slots are surely right. A hearing
    (request or re-request) is surely right with probability (1−e)·2/3, ambiguous with
    1/3 and surely wrong with e·2/3; a confirm makes a slot surely right; ``book``
    succeeds with probability (1−e)^m when u = w = 0; every act costs 1 and a non-final
    act on the last turn ends the dialogue with the failure penalty.

    Returns:
        ``value [T+1, K+1, K+1, K+1]`` (float64) and ``act [T+1, K+1, K+1, K+1]`` (int64,
        one of the kinds above; -1 where the state cannot occur), indexed ``[L, u, m, w]``.
    """
    k, e, t_max = num_slots, error_rate, max_turns
    s_rew, f_pen = success_reward, failure_penalty
    p_hear = ((1 - e) * 2 / 3, 1 / 3, e * 2 / 3)  # surely right, ambiguous, surely wrong
    value = np.zeros((t_max + 1, k + 1, k + 1, k + 1))
    act = np.full((t_max + 1, k + 1, k + 1, k + 1), -1, dtype=np.int64)
    for left in range(1, t_max + 1):

        def after(u: int, m: int, w: int, left: int = left) -> float:
            return -f_pen if left == 1 else value[left - 1, u, m, w]

        def heard(u: int, m: int, w: int) -> float:  # one more hearing lands in a category
            return p_hear[0] * after(u, m, w) + p_hear[1] * after(u, m + 1, w) + p_hear[2] * after(u, m, w + 1)

        for u in range(k + 1):
            for m in range(k + 1 - u):
                for w in range(k + 1 - u - m):
                    p_success = (1 - e) ** m if u == 0 and w == 0 else 0.0
                    options = [
                        (REQUEST, -1 + heard(u - 1, m, w) if u else None),
                        (CONFIRM_WRONG, -1 + after(u, m, w - 1) if w else None),
                        (CONFIRM_AMBIGUOUS, -1 + after(u, m - 1, w) if m else None),
                        (BOOK, -1 + p_success * s_rew - (1 - p_success) * f_pen),
                        (BYE, -1 - f_pen),
                        (REREQUEST_AMBIGUOUS, -1 + heard(u, m - 1, w) if m else None),
                        (REREQUEST_WRONG, -1 + heard(u, m, w - 1) if w else None),
                    ]
                    best_kind, best = BOOK, -math.inf
                    for kind, v in options:  # the first of equally good acts wins
                        if v is not None and v > best + 1e-9:
                            best_kind, best = kind, v
                    value[left, u, m, w] = best
                    act[left, u, m, w] = best_kind
    return value, act


def expert_return(
    num_slots: int,
    error_rate: float,
    max_turns: int,
    success_reward: float = 20.0,
    failure_penalty: float = 10.0,
) -> float:
    """The expert's exact expected return: the optimal value of a new dialogue."""
    value, _ = solve_expert(num_slots, error_rate, max_turns, success_reward, failure_penalty)
    return float(value[max_turns, num_slots, 0, 0])


class DialogueVectorEnv(BatchedEnv):
    """``num_envs`` dialogues stepped together; see the module docstring for the task.

    Args:
        num_envs: N.
        num_slots: K, 1..8.
        error_rate: probability of mishearing an informed value.
        max_turns: turn limit (>= 2K+1); reaching it is a terminal failure.
        success_reward, failure_penalty: see the module docstring.
        max_episode_steps: ignored beyond ``max_turns`` (the dialogue always ends by then).
        device, seeds, render_mode: see :class:`~pglab.envs.batched.BatchedEnv`
            (``ansi`` renders each env's dialogue so far).
    """

    metadata: ClassVar[dict[str, Any]] = {**BatchedEnv.metadata, "render_modes": ["ansi"]}
    supports_traces: ClassVar[bool] = True
    capabilities: ClassVar[EnvCapabilities] = EnvCapabilities(episode_stats=("expert_fraction", "expert_return"))

    def __init__(
        self,
        num_envs: int = 1,
        num_slots: int = 3,
        error_rate: float = 0.2,
        max_turns: int = 10,
        success_reward: float = 20.0,
        failure_penalty: float = 10.0,
        max_episode_steps: int | None = None,
        device: torch.device | str = "cpu",
        seeds: int | list[int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_dialogue_params(num_slots, error_rate, max_turns, success_reward, failure_penalty)
        limit = max_turns if max_episode_steps is None else min(max_turns, max_episode_steps)
        super().__init__(num_envs, limit, device, seeds, render_mode)
        self.num_slots = k = num_slots
        self.error_rate = float(error_rate)
        self.max_turns = max_turns
        self.success_reward = float(success_reward)
        self.failure_penalty = float(failure_penalty)
        value, act = solve_expert(k, self.error_rate, max_turns, self.success_reward, self.failure_penalty)
        self.expert_return = float(value[max_turns, k, 0, 0])
        dev = self.device
        self._num_values = torch.tensor([len(SLOTS[i][1]) for i in range(k)], device=dev)
        self._slot_ids = torch.arange(k, device=dev)
        self._draw_ids = torch.arange(3, device=dev)  # mishear?, which wrong value, confidence
        self._below_sure_right = float(np.nextafter(np.float32(SURE_RIGHT_FROM), np.float32(0)))
        self._init_spaces(gym.spaces.Box(0.0, 1.0, (2 * k + 1,), dtype=np.float32), gym.spaces.Discrete(2 * k + 2))
        n = num_envs
        self.goal = torch.zeros(n, k, dtype=torch.int64, device=dev)
        self.belief = torch.full((n, k), -1, dtype=torch.int64, device=dev)
        self.confidence = torch.zeros(n, k, device=dev)
        self.turn = torch.zeros(n, dtype=torch.int64, device=dev)
        self.booked_ok = torch.zeros(n, dtype=torch.bool, device=dev)
        self.corrected = torch.zeros(n, dtype=torch.bool, device=dev)
        self._episode_key = torch.zeros(n, dtype=torch.int64, device=dev)  # mixed (seed, episode)
        self._expert_acts = torch.as_tensor(act, device=dev)  # [L, u, m, w] -> act kind
        if render_mode == "ansi":
            self.trace_envs = num_envs

    @staticmethod
    def _check_params(args: dict[str, Any]) -> None:
        names = ("num_slots", "error_rate", "max_turns", "success_reward", "failure_penalty")
        check_dialogue_params(*(args[k] for k in names))

    @staticmethod
    def time_limit(max_turns: int = 10, **_: Any) -> int:
        """Episodes never last longer than ``max_turns``."""
        return max_turns

    def _start(self, idx: torch.Tensor) -> None:
        key = rng.bits(self.seeds[idx], self.episode[idx], _DIALOGUE)
        self._episode_key[idx] = key
        self.goal[idx] = rng.randint(self._num_values, key[:, None], _GOAL, self._slot_ids)
        self.belief[idx] = -1
        self.confidence[idx] = 0.0
        self.turn[idx] = 0
        self.booked_ok[idx] = False

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.num_slots
        slot = actions % k  # the slot of a request or confirm
        onehot = self._slot_ids[None, :] == slot[:, None]  # [N, K]
        request = actions < k
        confirm = (actions >= k) & (actions < 2 * k)
        book = actions == 2 * k
        bye = actions == 2 * k + 1
        # request: the user informs; the system may mishear
        # three numbers per env and turn: one hash of (episode key, 3 * turn + i)
        # (counters from 1: counter 0 would repeat the first hash of the goal's chain)
        draws = rng.draw(self._episode_key[:, None], 3 * self.turn[:, None] + self._draw_ids + 1)  # [N, 3]
        true_value = self.goal.gather(1, slot[:, None]).squeeze(1)
        n_values = self._num_values[slot]
        misheard = draws[:, 0].double() / 2**32 < self.error_rate
        wrong = (true_value + 1 + draws[:, 1] % (n_values - 1)) % n_values
        heard = torch.where(misheard, wrong, true_value)
        u = draws[:, 2].double() / 2**32
        conf = torch.where(misheard, SURE_RIGHT_FROM * u, SURE_WRONG_BELOW + (1 - SURE_WRONG_BELOW) * u).float()
        conf = torch.where(misheard, conf.clamp(max=self._below_sure_right), conf)  # float32 rounding
        informed = onehot & request[:, None]
        self.belief = torch.where(informed, heard[:, None], self.belief)
        self.confidence = torch.where(informed, conf[:, None], self.confidence)
        # confirm: the user affirms or corrects a filled slot
        fixed = onehot & confirm[:, None] & (self.belief >= 0)
        self.corrected = (fixed & (self.belief != self.goal)).any(dim=1)  # the user said "no, ..."
        self.belief = torch.where(fixed, self.goal, self.belief)
        self.confidence = torch.where(fixed, 1.0, self.confidence)
        # book / bye / out of turns
        self.turn = self.turn + 1
        matches = (self.belief == self.goal).all(dim=1)
        self.booked_ok = book & matches
        out_of_turns = self.turn >= self.max_turns
        failed = (book & ~matches) | bye | (out_of_turns & ~book)
        reward = -1.0 + self.success_reward * self.booked_ok.float() - self.failure_penalty * failed.float()
        return reward.float(), book | bye | out_of_turns

    def _observe(self) -> torch.Tensor:
        filled = (self.belief >= 0).float()
        turn = (self.turn.float() / self.max_turns)[:, None]
        return torch.cat([filled, self.confidence, turn], dim=1)

    def _outcome(self, done: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fraction = (
            self._ep_return / self.expert_return if self.expert_return != 0 else torch.zeros_like(self._ep_return)
        )
        expert = torch.full_like(self._ep_return, self.expert_return)
        return self.booked_ok, {"expert_fraction": fraction, "expert_return": expert}

    # ----------------------------------------------------------------- the expert

    def expert_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The optimal policy from the observation alone: ``obs [B, 2K+1]`` → actions ``[B]``."""
        return expert_action(obs, self.num_slots, self.max_turns, self._expert_acts)

    # ----------------------------------------------------------------- text

    def _value(self, slot: int, value: int) -> str:
        return SLOTS[slot][1][value]

    def trace_begin(self, i: int) -> str:
        goal = ", ".join(f"{SLOTS[s][0]}={self._value(s, int(v))}" for s, v in enumerate(self.goal[i].tolist()))
        return f"USER GOAL: {goal}"

    def trace_step(self, i: int, action: int) -> str:
        k = self.num_slots
        name = SLOTS[action % k][0]
        if action < k:
            s = action
            true, heard = self._value(s, int(self.goal[i, s])), self._value(s, int(self.belief[i, s]))
            note = "" if true == heard else f"  [misheard as {name}={heard}]"
            return (
                f"SYSTEM: request({name})\nUSER: inform({name}={true}){note}  "
                f"[confidence {float(self.confidence[i, s]):.2f}]"
            )
        if action < 2 * k:
            s = action - k
            if int(self.belief[i, s]) < 0:
                return f"SYSTEM: confirm({name})\nUSER: I have not told you the {name} yet."
            value = self._value(s, int(self.goal[i, s]))
            if bool(self.corrected[i]):
                return f"SYSTEM: confirm({name})\nUSER: No, {name}={value}."
            return f"SYSTEM: confirm({name})\nUSER: {name}={value}, yes."
        if action == 2 * k:
            held = ", ".join(
                f"{SLOTS[s][0]}={self._value(s, int(b)) if b >= 0 else '?'}"
                for s, b in enumerate(self.belief[i].tolist())
            )
            reply = "Thank you, that is what I wanted." if bool(self.booked_ok[i]) else "That is not what I asked for."
            return f"SYSTEM: book({held})\nUSER: {reply}"
        return "SYSTEM: bye()\nUSER: (leaves without a booking)"

    def trace_end(self, i: int, success: bool, episode_return: float) -> str:
        last = self._traces[i][-1] if self._traces[i] else ""
        ended_by_agent = last.startswith(("SYSTEM: book", "SYSTEM: bye"))
        outcome = "success" if success else "failure" if ended_by_agent else "failure (out of turns)"
        return f"-- {outcome} after {int(self.turn[i])} turns, return {episode_return:.1f}"

    def render_env(self, i: int) -> str:
        """The dialogue of env i so far, turn by turn (``ansi``)."""
        lines = self._traces[i] if i < len(self._traces) else []
        return "\n".join(line for line in lines if line)


def expert_action(obs: torch.Tensor, num_slots: int, max_turns: int, acts: torch.Tensor) -> torch.Tensor:
    """The expert's act for each observation.

    Args:
        obs: ``[B, 2K+1]`` observations.
        num_slots: K.
        max_turns: T.
        acts: the act kinds of :func:`solve_expert`, long ``[T+1, K+1, K+1, K+1]``.
    Returns:
        long ``[B]`` action indices (the act applies to the first slot it can).
    """
    k = num_slots
    filled = obs[:, :k] > 0.5
    conf = obs[:, k : 2 * k]
    sure_wrong = filled & (conf < SURE_WRONG_BELOW)
    ambiguous = filled & (conf >= SURE_WRONG_BELOW) & (conf < SURE_RIGHT_FROM)
    left = max_turns - torch.round(obs[:, 2 * k] * max_turns).long()
    kind = acts.to(obs.device)[left, (~filled).sum(1), ambiguous.sum(1), sure_wrong.sum(1)]
    slot_ids = torch.arange(k, device=obs.device)

    def first(mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, slot_ids, k).min(dim=1).values.clamp(max=k - 1)

    by_kind = torch.stack(
        [
            first(~filled),  # REQUEST
            k + first(sure_wrong),  # CONFIRM_WRONG
            k + first(ambiguous),  # CONFIRM_AMBIGUOUS
            torch.full_like(kind, 2 * k),  # BOOK
            torch.full_like(kind, 2 * k + 1),  # BYE
            first(ambiguous),  # REREQUEST_AMBIGUOUS
            first(sure_wrong),  # REREQUEST_WRONG
        ],
        dim=1,
    )
    return by_kind.gather(1, kind[:, None]).squeeze(1)


class DialogueEnv(SingleEnv):
    """``gymnasium.make("pglab/Dialogue-v0", num_slots=3, error_rate=0.2, ...)``: one dialogue."""

    batched_class = DialogueVectorEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
