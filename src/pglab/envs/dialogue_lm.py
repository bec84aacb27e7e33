"""Token-level dialogue: write the system's reply to a user's request, one word at a time.

The language-model view of pglab's dialogue task (:mod:`pglab.envs.dialogue`). Each
episode, a simulated user asks for a restaurant with ``num_slots`` slot values (the
dialogue's ``SLOTS``), in a sentence of the small built-in word-level vocabulary
:data:`VOCAB` (no downloads)::

    <user> hi , i would like a table in the north cheap price italian food . <sys>

The agent writes the reply token by token (action = the next token's id) until it
writes ``<end>`` or reaches ``max_reply_tokens``; then a programmatic **judge** scores
the whole reply, once, at the last step (a sparse reward, like a reward model's score)::

    booked italian food in the north cheap price . <end>          -> 3.0, a success

The judge's rules (:func:`judge`; the weights are :class:`JudgeRules`), over the reply's
tokens before ``<end>``:

* ``+correct_reward`` (1.0) for each of the user's slots whose value the reply states;
* ``-wrong_penalty`` (1.0) for each *distinct* slot value the reply states that is not
  one the user asked for (a wrong cuisine, or any value of a slot the user never named);
* ``-repeat_penalty`` (0.5) for each repeated content token: every occurrence of a
  token after its first, except the function words :data:`FUNCTION_WORDS` (``the``,
  ``,``, ``.``, ...);
* ``-length_penalty`` (0.25) for each token beyond ``length_budget`` (the default
  budget, ``sum of the slot phrases + 5``, fits ``sure , i booked`` + the phrases + ``.``);
* ``-unfinished_penalty`` (1.0) when the reply never writes ``<end>``.

The score's maximum is ``num_slots · correct_reward``; a reply that reaches it is a
**success** (every value right, nothing wrong, no repetition, within budget, ended).

**The expert's replies** (:meth:`DialogueLMVectorEnv.demonstrations`, what the SFT
stage fits) come from the dialogue's expert, with its habits: it hears each value
through the dialogue's noisy channel (a uniformly drawn wrong value with probability
``error_rate``), states the slots in a random order after an opener (``booked`` /
``okay , booked`` / ``sure , i booked``), and with probability ``ramble_rate`` adds a
pleasantry (``enjoy your meal .``: over the budget) and with probability
``repeat_rate`` restates a slot (``, yes , italian food``: a repetition). A model that
imitates it well therefore scores clearly below the maximum; policy gradient on the
judge's score can do better, and a KL penalty to the imitation model says how far it
may move.

Observation (int64 ``[P + R + 1]``): the prompt, left-padded with ``<pad>`` to ``P``
tokens (it always ends with ``<sys>`` at index ``P - 1``), the reply so far,
right-padded to ``R = max_reply_tokens``, and the number of reply tokens written. Reply
token ``t`` sits at index ``P + t``, so a causal model reads the whole episode from its
last observation.

Batched in torch like the other native envs; every random number is keyed by (env
seed, episode index) through :mod:`pglab.envs.rng`. With :meth:`set_group_size` ``k``,
envs ``[g·k, (g+1)·k)`` share each episode's prompt (the key of the group's first env),
for k samples per prompt (RLOO, group-normalised advantages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import torch

from pglab.envs import rng
from pglab.envs.batched import BatchedEnv, GroupedStarts, SingleEnv
from pglab.envs.capabilities import EnvCapabilities
from pglab.envs.dialogue import MAX_SLOTS, SLOTS
from pglab.envs.spaces import TokenSequence

# --------------------------------------------------------------------------- vocabulary

PAD, END, USER, SYS = "<pad>", "<end>", "<user>", "<sys>"
SPECIAL = (PAD, END, USER, SYS)
# How each slot's value is said, by the user and by the system: words before and after it.
PHRASES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ("food",)),  # cuisine: "italian food"
    (("in", "the"), ()),  # area: "in the north"
    ((), ("price",)),  # price: "cheap price"
    (("for",), ("people",)),  # people: "for four people"
    (("on",), ()),  # day: "on monday"
    (("at",), ()),  # time: "at 19:30"
    ((), ("seating",)),  # seating: "terrace seating"
    (("rated",), ()),  # rating: "rated four-star"
)
OPENERS_USER = ((), ("hi", ","), ("hello", ","))
REQUESTS_USER = (
    ("i", "want", "to", "book", "a", "table"),
    ("i", "would", "like", "a", "table"),
    ("please", "book", "a", "table"),
    ("can", "you", "book", "a", "table"),
    ("we", "need", "a", "table"),
    ("find", "me", "a", "restaurant"),
)
OPENERS_SYS = (("booked",), ("okay", ",", "booked"), ("sure", ",", "i", "booked"))
CLOSINGS_SYS = (("enjoy", "your", "meal", "."), ("thank", "you", "."), ("have", "a", "nice", "evening", "."))
REPEAT_SYS = (",", "yes")  # then one slot's phrase again
# Words the system may also say, so the vocabulary is not only what the expert writes.
EXTRA_WORDS = (
    "sorry", "no", "not", "available", "there", "is", "are", "it", "that", "this", "what", "which",
    "would", "do", "does", "prefer", "time", "day", "area", "cuisine", "seats", "reservation",
    "confirmed", "reserved", "done", "great", "choice", "anything", "else", "help", "welcome",
    "goodbye", "bye", "restaurant", "place", "table", "and", "with", "of", "my", "our", "us",
    "me", "we", "they", "good", "fine", "nice", "lovely", "tonight", "tomorrow", "please", "thanks",
    "sir", "madam", "booking", "number", "reference", "phone", "address", "street", "near",
    "centre", "town", "cheaper", "later", "earlier", "another", "one", "more", "less",
)  # fmt: skip
# Tokens the judge does not count as repetitions when they recur.
FUNCTION_WORDS = frozenset(
    {",", ".", "the", "a", "in", "for", "on", "at", "i", "you", "your", "to", "and", "with", "of", "is", "it", "yes"}
)


def _build_vocab() -> tuple[str, ...]:
    words: list[str] = list(SPECIAL)
    for _, values in SLOTS:
        words += values
    for before, after in PHRASES:
        words += before + after
    for group in (OPENERS_USER, REQUESTS_USER, OPENERS_SYS, CLOSINGS_SYS, (REPEAT_SYS,), (EXTRA_WORDS,)):
        for phrase in group:
            words += phrase
    return tuple(dict.fromkeys(words))  # first occurrence order, no duplicates


VOCAB: tuple[str, ...] = _build_vocab()
TOKEN: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
PAD_ID, END_ID, USER_ID, SYS_ID = (TOKEN[w] for w in SPECIAL)
_HOLE = -1  # an unused position in a segment table, squeezed out by _compact
_LM, _SFT = 0x4C4D5254, 0x53465444  # purpose constants of the counter-based RNG


def encode(text: str) -> list[int]:
    """Token ids of a space-separated string (a KeyError names an unknown word)."""
    return [TOKEN[w] for w in text.split()]


def decode(ids: list[int] | torch.Tensor) -> str:
    """The words of token ids, space-separated."""
    return " ".join(VOCAB[int(i)] for i in ids)


def phrase_length(slot: int) -> int:
    """Tokens of slot ``slot``'s phrase (its value and the words around it)."""
    before, after = PHRASES[slot]
    return len(before) + 1 + len(after)


def default_length_budget(num_slots: int) -> int:
    """The judge's default length budget: the slot phrases + 5, so that a reply with the
    longest opener (``sure , i booked ... .``) just fits and a pleasantry or a restated
    slot does not."""
    return sum(phrase_length(k) for k in range(num_slots)) + 5


def prompt_width(num_slots: int) -> int:
    """P: the longest prompt of ``num_slots`` slots, in tokens (with ``<user>`` and ``<sys>``)."""
    longest = max(map(len, OPENERS_USER)) + max(map(len, REQUESTS_USER))
    return 1 + longest + sum(phrase_length(k) for k in range(num_slots)) + 1 + 1


# --------------------------------------------------------------------------- the judge

Count = TypeVar("Count", float, torch.Tensor)  # a count: a number, or one per reply


@dataclass(frozen=True)
class JudgeRules:
    """The judge's weights (see the module docstring for the rules)."""

    correct_reward: float = 1.0
    wrong_penalty: float = 1.0
    repeat_penalty: float = 0.5
    length_penalty: float = 0.25
    unfinished_penalty: float = 1.0

    def score(self, correct: Count, wrong: Count, repeats: Count, overlong: Count, unfinished: Count) -> Count:
        """The score from each rule's count (numbers, or float ``[N]`` tensors alike)."""
        return (
            self.correct_reward * correct
            - self.wrong_penalty * wrong
            - self.repeat_penalty * repeats
            - self.length_penalty * overlong
            - self.unfinished_penalty * unfinished
        )


def _token_table(words: set[str] | frozenset[str], device: torch.device) -> torch.Tensor:
    table = torch.zeros(len(VOCAB), dtype=torch.bool, device=device)
    table[[TOKEN[w] for w in words]] = True
    return table


def judge(
    reply: torch.Tensor,
    goal: torch.Tensor,
    length_budget: int,
    rules: JudgeRules = JudgeRules(),
    written: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Score replies by the judge's rules.

    Args:
        reply: long ``[N, R]`` reply tokens; only those before the first ``<end>`` count.
        goal: long ``[N, K]`` token ids of the user's slot values.
        length_budget: tokens a reply may have before each further one costs.
        rules: the weights.
        written: ``[N]`` tokens written so far (null: all R); later positions are ignored,
            and a reply without ``<end>`` among them is unfinished.

    Returns:
        float32 ``[N]`` tensors: ``score``, ``correct``, ``wrong``, ``repeats``,
        ``overlong``, ``unfinished`` (0/1) and ``reply_length`` (tokens before ``<end>``),
        and bool ``[N]`` ``success`` (the score is the maximum).
    """
    n, r = reply.shape
    dev = reply.device
    limit = torch.full((n,), r, device=dev) if written is None else written.clamp(max=r)
    is_end = (reply == END_ID) & (torch.arange(r, device=dev)[None, :] < limit[:, None])
    ended = is_end.any(dim=1)
    length = torch.where(ended, is_end.long().argmax(dim=1), limit)
    inside = torch.arange(r, device=dev)[None, :] < length[:, None]
    counts = torch.zeros(n, len(VOCAB), device=dev).scatter_add_(1, reply, inside.float())  # [N, V]
    is_value = _token_table({v for _, values in SLOTS for v in values}, dev)
    is_content = ~_token_table(FUNCTION_WORDS, dev)
    is_goal = torch.zeros(n, len(VOCAB), dtype=torch.bool, device=dev).scatter_(1, goal, True)
    said = counts > 0
    correct = (counts.gather(1, goal) > 0).sum(dim=1).float()
    wrong = (said & is_value & ~is_goal).sum(dim=1).float()
    repeats = ((counts - 1).clamp(min=0) * is_content).sum(dim=1)
    overlong = (length - length_budget).clamp(min=0).float()
    unfinished = (~ended).float()
    score = rules.score(correct, wrong, repeats, overlong, unfinished)
    k = goal.shape[1]
    success = (correct == k) & (wrong == 0) & (repeats == 0) & (overlong == 0) & ended
    return {
        "score": score,
        "correct": correct,
        "wrong": wrong,
        "repeats": repeats,
        "overlong": overlong,
        "unfinished": unfinished,
        "reply_length": length.float(),
        "success": success,
    }


# --------------------------------------------------------------------------- text assembly


def _segments(options: tuple[tuple[str, ...], ...], device: torch.device) -> torch.Tensor:
    """``[len(options), W]`` token ids of each option, holes after it."""
    width = max(map(len, options))
    rows = [[TOKEN[w] for w in opt] + [_HOLE] * (width - len(opt)) for opt in options]
    return torch.tensor(rows, dtype=torch.int64, device=device)


def _compact(parts: torch.Tensor, width: int, fill: int, right: bool) -> torch.Tensor:
    """Squeeze the holes out of ``parts [N, L]``: its tokens in order, in a ``[N, width]`` row
    padded with ``fill`` on the left (``right=True``: the tokens end at the last column) or
    on the right."""
    keep = parts != _HOLE
    # right: the kept tokens at or after j decide j's place from the end
    position = width - keep.flip(1).cumsum(1).flip(1) if right else keep.cumsum(1) - 1
    out = torch.full((parts.shape[0], width + 1), fill, dtype=parts.dtype, device=parts.device)
    out.scatter_(1, torch.where(keep, position, width), torch.where(keep, parts, fill))
    return out[:, :width]


class _Writer:
    """Builds prompts and expert replies as token tensors, ``N`` at a time."""

    def __init__(self, num_slots: int, device: torch.device) -> None:
        k = self.k = num_slots
        dev = self.device = device
        self.values = [torch.tensor([TOKEN[v] for v in SLOTS[s][1]], device=dev) for s in range(k)]
        self.num_values = torch.tensor([len(SLOTS[s][1]) for s in range(k)], device=dev)
        width = max(phrase_length(s) for s in range(MAX_SLOTS))
        value_at = []
        rows = []
        for s in range(k):
            before, after = PHRASES[s]
            words = [TOKEN[w] for w in before] + [0] + [TOKEN[w] for w in after]
            rows.append(words + [_HOLE] * (width - len(words)))
            value_at.append(len(before))
        self.phrase = torch.tensor(rows, dtype=torch.int64, device=dev)  # [K, W], value slot holds 0
        self.value_at = torch.tensor(value_at, device=dev)  # [K]
        self.user_openers = _segments(OPENERS_USER, dev)
        self.user_requests = _segments(REQUESTS_USER, dev)
        self.sys_openers = _segments(OPENERS_SYS, dev)
        self.sys_closings = _segments(CLOSINGS_SYS, dev)
        self.repeat = torch.tensor([TOKEN[w] for w in REPEAT_SYS], device=dev)
        self.slot_ids = torch.arange(k, device=dev)

    def goal(self, key: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` value indices of the user's goal, from episode keys ``[N]``."""
        return rng.randint(self.num_values, key[:, None], 1, self.slot_ids)

    def goal_tokens(self, goal: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` token ids of value indices ``goal``."""
        return torch.stack([self.values[s][goal[:, s]] for s in range(self.k)], dim=1)

    def order(self, key: torch.Tensor, word: int) -> torch.Tensor:
        """``[N, K]`` a random permutation of the slots per row."""
        return rng.bits(key[:, None], word, self.slot_ids).argsort(dim=1)

    def phrases(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``[N, K·W]``: the slots' phrases in ``order``, stating value tokens ``tokens [N, K]``."""
        phrase = self.phrase[order]  # [N, K, W]
        at = self.value_at[order]  # [N, K]
        value = tokens.gather(1, order)  # [N, K]
        phrase = phrase.scatter(2, at[:, :, None], value[:, :, None])
        return phrase.flatten(1)

    def prompt(self, key: torch.Tensor, goal: torch.Tensor, width: int) -> torch.Tensor:
        """``[N, width]`` user turns for goals ``goal``, left-padded, ending with ``<sys>``."""
        n = key.shape[0]
        opener = self.user_openers[rng.randint(len(OPENERS_USER), key, 2)]
        request = self.user_requests[rng.randint(len(REQUESTS_USER), key, 3)]
        phrases = self.phrases(self.goal_tokens(goal), self.order(key, 4))
        tail = torch.tensor([TOKEN["."], SYS_ID], device=self.device).expand(n, 2)
        head = torch.full((n, 1), USER_ID, device=self.device)
        return _compact(torch.cat([head, opener, request, phrases, tail], dim=1), width, PAD_ID, right=True)

    def expert_reply(
        self, key: torch.Tensor, goal: torch.Tensor, error_rate: float, ramble: float, repeat: float, width: int
    ) -> torch.Tensor:
        """``[N, width]`` the expert's replies (ending with ``<end>``, right-padded); see the module docstring."""
        n, k, dev = key.shape[0], self.k, self.device
        misheard = rng.uniform(key[:, None], 10, self.slot_ids) < error_rate
        shift = 1 + rng.bits(key[:, None], 11, self.slot_ids) % (self.num_values - 1).clamp(min=1)
        heard = torch.where(misheard & (self.num_values > 1), (goal + shift) % self.num_values, goal)
        tokens = self.goal_tokens(heard)
        opener = self.sys_openers[rng.randint(len(OPENERS_SYS), key, 12)]
        phrases = self.phrases(tokens, self.order(key, 13))
        dot = torch.full((n, 1), TOKEN["."], device=dev)
        again = rng.randint(k, key, 14)
        rephrase = self.phrases(tokens, again[:, None]).view(n, -1)  # one slot's phrase again
        restate = torch.cat([self.repeat.expand(n, -1), rephrase], dim=1)
        restate = torch.where((rng.uniform(key, 15) < repeat)[:, None], restate, _HOLE)
        closing = self.sys_closings[rng.randint(len(CLOSINGS_SYS), key, 16)]
        closing = torch.where((rng.uniform(key, 17) < ramble)[:, None], closing, _HOLE)
        end = torch.full((n, 1), END_ID, device=dev)
        parts = torch.cat([opener, phrases, restate, dot, closing, end], dim=1)
        return _compact(parts, width, PAD_ID, right=False)


# --------------------------------------------------------------------------- the env


def check_lm_params(
    num_slots: int,
    max_reply_tokens: int,
    length_budget: int | None,
    error_rate: float,
    ramble_rate: float,
    repeat_rate: float,
) -> None:
    """Raise ValueError naming the parameter, its value and what is allowed."""
    if not isinstance(num_slots, int) or not 1 <= num_slots <= MAX_SLOTS:
        raise ValueError(f"num_slots={num_slots}: must be an integer from 1 to {MAX_SLOTS}")
    longest = longest_expert_reply(num_slots)
    if not isinstance(max_reply_tokens, int) or max_reply_tokens < longest:
        raise ValueError(
            f"max_reply_tokens={max_reply_tokens}: must be >= {longest}, the expert's longest reply "
            f"with num_slots={num_slots}"
        )
    if length_budget is not None and not 1 <= length_budget <= max_reply_tokens:
        raise ValueError(
            f"length_budget={length_budget}: must be null or from 1 to max_reply_tokens={max_reply_tokens}"
        )
    for name, p in (("error_rate", error_rate), ("ramble_rate", ramble_rate), ("repeat_rate", repeat_rate)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}={p}: must be a probability in [0, 1]")


def longest_expert_reply(num_slots: int) -> int:
    """Tokens of the expert's longest reply, ``<end>`` included."""
    phrases = sum(phrase_length(k) for k in range(num_slots))
    restate = len(REPEAT_SYS) + max(phrase_length(k) for k in range(num_slots))
    return max(map(len, OPENERS_SYS)) + phrases + restate + 1 + max(map(len, CLOSINGS_SYS)) + 1


class DialogueLMVectorEnv(GroupedStarts, BatchedEnv):
    """``num_envs`` replies written together; see the module docstring.

    Args:
        num_envs: N.
        num_slots: K, the slots of each request (1..8).
        max_reply_tokens: R, the longest reply; a reply cut there is judged as unfinished.
        length_budget: the judge's length budget (null: :func:`default_length_budget`).
        error_rate: how often the expert mishears a value (its demonstrations only).
        ramble_rate: how often the expert adds a pleasantry.
        repeat_rate: how often the expert restates a slot.
        max_episode_steps: ignored beyond R.
        device, seeds, render_mode: see :class:`~pglab.envs.batched.BatchedEnv`
            (``ansi``: each env's prompt and reply so far).
    """

    metadata: ClassVar[dict[str, Any]] = {**BatchedEnv.metadata, "render_modes": ["ansi"]}
    supports_traces: ClassVar[bool] = True
    capabilities: ClassVar[EnvCapabilities] = EnvCapabilities(
        token_observations=True,
        shared_starts=True,
        demonstrations=True,
        episode_stats=("correct", "wrong", "repeats", "overlong", "unfinished", "reply_length"),
    )
    rules: ClassVar[JudgeRules] = JudgeRules()

    def __init__(
        self,
        num_envs: int = 1,
        num_slots: int = 3,
        max_reply_tokens: int = 24,
        length_budget: int | None = None,
        error_rate: float = 0.2,
        ramble_rate: float = 0.3,
        repeat_rate: float = 0.2,
        max_episode_steps: int | None = None,
        device: torch.device | str = "cpu",
        seeds: int | list[int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_lm_params(num_slots, max_reply_tokens, length_budget, error_rate, ramble_rate, repeat_rate)
        limit = max_reply_tokens if max_episode_steps is None else min(max_reply_tokens, max_episode_steps)
        super().__init__(num_envs, limit, device, seeds, render_mode)
        self.num_slots = num_slots
        self.max_reply_tokens = max_reply_tokens
        self.length_budget = default_length_budget(num_slots) if length_budget is None else length_budget
        self.error_rate, self.ramble_rate, self.repeat_rate = float(error_rate), float(ramble_rate), float(repeat_rate)
        self.prompt_width = prompt_width(num_slots)
        self.vocab_size = len(VOCAB)
        self.max_score = num_slots * self.rules.correct_reward
        self.writer = _Writer(num_slots, self.device)
        n, p, r, dev = num_envs, self.prompt_width, max_reply_tokens, self.device
        self._init_spaces(TokenSequence(self.vocab_size, p, r), gym.spaces.Discrete(self.vocab_size))
        self.prompt = torch.full((n, p), PAD_ID, dtype=torch.int64, device=dev)
        self.reply = torch.full((n, r), PAD_ID, dtype=torch.int64, device=dev)
        self.goal = torch.zeros(n, num_slots, dtype=torch.int64, device=dev)  # value token ids
        self._verdict: dict[str, torch.Tensor] = {}
        if render_mode == "ansi":
            self.trace_envs = num_envs

    @staticmethod
    def _check_params(args: dict[str, Any]) -> None:
        names = ("num_slots", "max_reply_tokens", "length_budget", "error_rate", "ramble_rate", "repeat_rate")
        check_lm_params(*(args[k] for k in names))

    @staticmethod
    def time_limit(max_reply_tokens: int = 24, **_: Any) -> int:
        """A reply never has more than ``max_reply_tokens`` tokens."""
        return max_reply_tokens

    # ----------------------------------------------------------------- episodes

    def _episode_keys(self, idx: torch.Tensor) -> torch.Tensor:
        # The group's first env decides the prompt, by its seed and its episode count: the
        # members' own counts drift apart when some restart more often than others (an env
        # whose reply ended early keeps writing, and restarting, until the slowest is done).
        leader = self.leaders(idx)  # the group's first env decides the episode
        return rng.bits(self.seeds[leader], self.episode[leader], _LM)

    def _start(self, idx: torch.Tensor) -> None:
        key = self._episode_keys(idx)
        goal = self.writer.goal(key)
        self.goal[idx] = self.writer.goal_tokens(goal)
        self.prompt[idx] = self.writer.prompt(key, goal, self.prompt_width)
        self.reply[idx] = PAD_ID

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.t.clamp(max=self.max_reply_tokens - 1)
        self.reply.scatter_(1, pos[:, None], actions[:, None])
        written = self.t + 1
        ended = (actions == END_ID) | (written >= self._limit())  # the limit: max_reply_tokens or less
        self._verdict = judge(self.reply, self.goal, self.length_budget, self.rules, written=written)
        reward = torch.where(ended, self._verdict["score"], 0.0)
        return reward.float(), ended

    def _observe(self) -> torch.Tensor:
        return torch.cat([self.prompt, self.reply, self.t[:, None]], dim=1)

    def _outcome(self, done: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = self._verdict
        return v["success"], {name: v[name] for name in self.capabilities.episode_stats}

    # ----------------------------------------------------------------- demonstrations

    def demonstrations(self, n: int, index: int) -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``n`` expert episodes, in a REINFORCE buffer's layout.

        Prompts come from a stream of their own (keyed by env 0's seed, the batch index and
        the row), so SFT data never repeats the training or evaluation prompts' keys.

        Returns:
            ``obs`` long ``[R, n, P+R+1]`` (the observation before each reply token),
            ``actions`` long ``[R, n]`` (the expert's tokens), ``valid`` bool ``[R, n]``
            (the token belongs to the reply, ``<end>`` included).
        """
        if not self._seeded:  # before the first reset: the construction seeds (reset applies them again)
            self.seed_envs(self._initial_seeds)
        with torch.no_grad():
            dev, r = self.device, self.max_reply_tokens
            rows = torch.arange(n, device=dev)
            key = rng.bits(self.seeds[:1].expand(n), index, rows, _SFT)
            goal = self.writer.goal(key)
            prompt = self.writer.prompt(key, goal, self.prompt_width)
            reply = self.writer.expert_reply(key, goal, self.error_rate, self.ramble_rate, self.repeat_rate, r)
            length = (reply == END_ID).long().argmax(dim=1) + 1  # tokens with <end>
            steps = torch.arange(r, device=dev)
            valid = steps[:, None] < length[None, :]  # [R, n]
            written = steps[None, None, :] < steps[:, None, None]  # [R(step), 1, R(position)]
            replies = torch.where(written, reply[None], PAD_ID)  # [R, n, R]
            obs = torch.cat(
                [prompt.expand(r, n, -1), replies, steps[:, None, None].expand(r, n, 1)],
                dim=2,
            )
            return {"obs": obs, "actions": reply.t().contiguous(), "valid": valid}

    # ----------------------------------------------------------------- text

    def trace_begin(self, i: int) -> str:
        prompt = self.prompt[i]
        return "user: " + decode(prompt[(prompt != PAD_ID) & (prompt != USER_ID) & (prompt != SYS_ID)])

    def trace_end(self, i: int, success: bool, episode_return: float) -> str:
        t = int(self.t[i])
        v = {k: float(x[i]) for k, x in self._verdict.items()}
        return (
            f"system: {decode(self.reply[i, :t])}\n"
            f"judge: {episode_return:.2f} of {self.max_score:g} (correct {v['correct']:.0f}/{self.num_slots}, "
            f"wrong {v['wrong']:.0f}, repeats {v['repeats']:.0f}, over budget {v['overlong']:.0f}"
            f"{', unfinished' if v['unfinished'] else ''}){' success' if success else ''}"
        )

    def render_env(self, i: int) -> str:
        """Env i's prompt and its reply so far (``ansi``)."""
        prompt = self.prompt[i]
        user = decode(prompt[prompt != PAD_ID])
        return f"{user} {decode(self.reply[i, : int(self.t[i])])}".strip()


class DialogueLMEnv(SingleEnv):
    """``gymnasium.make("pglab/DialogueLM-v0", num_slots=3, ...)``: one reply at a time."""

    batched_class = DialogueLMVectorEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
