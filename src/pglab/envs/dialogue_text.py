"""The booking task in words, for a pretrained language model: ``pglab/DialogueText-v0``.

Each episode a user asks for a restaurant in ordinary English
(:func:`~pglab.envs.booking_text.make_request`); the request is the user message of a
chat, formatted by the policy's own tokenizer and its chat template (with
``system_prompt`` as the system message where given), so any causal LM with a chat
template can take the task. The policy writes the reply token by token (action = the
next token's id, in the tokenizer's vocabulary) until it writes the tokenizer's
end-of-sequence token (a chat model's end of turn) or reaches ``max_reply_tokens``; then
the reply is decoded and the text judge scores it, once, at the last step
(:func:`~pglab.envs.booking_text.judge_text`: the token-level task's rules over words;
a reply cut at the limit is unfinished)::

    user:   Hi! Could you book me a table: Italian food, in the north and in the cheap price range?
    system: Sure, I booked a table for cheap Italian food in the north.      -> 3.0, a success

Observation (int64 ``[P + R + 1]``, :class:`~pglab.envs.spaces.TokenSequence`): the chat
prompt's token ids, left-padded with ``pad_id`` to ``P``, the reply so far, right-padded
to ``R = max_reply_tokens``, and the number of reply tokens written. ``pad_id`` is a token
no prompt holds (the tokenizer's padding or unknown token, else another special token;
never its end of sequence), so
a policy masks the padding by its id. ``P`` is measured when the env is built: the longest
of 512 requests' prompts and 16 tokens to spare (a longer prompt stops the run, naming
it).

As in ``dialogue_lm``, every request is keyed by (env seed, episode index), and with
:meth:`set_group_size` ``k`` envs ``[g·k, (g+1)·k)`` share each episode's request, for k
replies per prompt (RLOO, GRPO).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import torch

from pglab.config import first_line
from pglab.envs import rng
from pglab.envs.batched import BatchedEnv, GroupedStarts, SingleEnv
from pglab.envs.booking_text import BookingRequest, Verdict, default_word_budget, judge_text, make_request
from pglab.envs.capabilities import EnvCapabilities
from pglab.envs.dialogue import MAX_SLOTS
from pglab.envs.dialogue_lm import JudgeRules
from pglab.envs.spaces import TokenSequence
from pglab.models import FetchError, MissingExtra, load_tokenizer, resolve

_TEXT = 0x54455854  # purpose constant of the counter-based RNG
PROMPT_SAMPLES, PROMPT_SPARE = 512, 16  # how P is measured
SYSTEM_PROMPT = (  # conf/env/dialogue_text.yaml's, for gymnasium.make
    "You are a restaurant booking assistant. Confirm the booking in one short sentence that states what the user "
    "asked for."
)
STATS = ("correct", "wrong", "repeats", "overlong", "unfinished", "reply_length")


def check_text_params(tokenizer: str | None, num_slots: int, max_reply_tokens: int, word_budget: int | None) -> None:
    """Raise ValueError naming the parameter, its value and what is allowed."""
    if not tokenizer:
        raise ValueError(
            "tokenizer=None: the text task writes with a pretrained policy's tokenizer; choose one "
            "(policy=smollm2_135m, or policy=pretrained algo.policy.model=...)"
        )
    tokenizer_of(tokenizer)
    if not isinstance(num_slots, int) or not 1 <= num_slots <= MAX_SLOTS:
        raise ValueError(f"num_slots={num_slots}: must be an integer from 1 to {MAX_SLOTS}")
    if not isinstance(max_reply_tokens, int) or max_reply_tokens < 1:
        raise ValueError(f"max_reply_tokens={max_reply_tokens}: must be an integer >= 1")
    if word_budget is not None and word_budget < 1:
        raise ValueError(f"word_budget={word_budget}: must be null or >= 1")


def tokenizer_of(model: str) -> Any:
    """The tokenizer of ``model`` (loaded once per process), checked: it has a chat template
    and an end-of-sequence token; else a ValueError naming ``tokenizer`` and why."""
    try:
        resolve(model)
        tokenizer = load_tokenizer(model)
    except (FetchError, MissingExtra) as err:
        raise ValueError(f"tokenizer={model!r}: {err}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"tokenizer={model!r}: cannot load its tokenizer: {first_line(err)}") from None
    if not tokenizer.chat_template:
        raise ValueError(f"tokenizer={model!r}: has no chat template to put the request in (use a chat model)")
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer={model!r}: has no end-of-sequence token to end a reply with")
    return tokenizer


def one_line(text: str) -> str:
    """``text`` on one line, its line breaks written ``\\n`` (a sample's text has one line
    per speaker)."""
    return text.replace("\r", "").replace("\n", "\\n")


def pad_token(tokenizer: Any, prompts: list[list[int]], model: str) -> int:
    """A token id none of ``prompts`` holds: the padding token, else the unknown token, else
    another special token (never the end of sequence: a chat template writes that one)."""
    used = {i for ids in prompts for i in ids} | {tokenizer.eos_token_id}
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, *tokenizer.all_special_ids):
        if candidate is not None and candidate not in used:
            return int(candidate)
    raise ValueError(f"tokenizer={model!r}: every special token occurs in a prompt; give it a padding token")


class DialogueTextVectorEnv(GroupedStarts, BatchedEnv):
    """``num_envs`` replies in words written together; see the module docstring.

    Args:
        num_envs: N.
        tokenizer: the policy's model (``algo.policy.model``: a name pglab fetches, a
            folder, a GGUF file or a hub id); its tokenizer writes the prompts and reads
            the replies.
        num_slots: K, the slots of each request (1..8).
        max_reply_tokens: R, the longest reply in tokens; a reply cut there is unfinished.
        word_budget: the judge's length budget in words (null: :func:`default_word_budget`).
        system_prompt: the chat's system message (null: the chat template's own default).
        max_episode_steps: ignored beyond R.
        device, seeds, render_mode: see :class:`~pglab.envs.batched.BatchedEnv` (``ansi``:
            each env's request and reply so far).
    """

    metadata: ClassVar[dict[str, Any]] = {**BatchedEnv.metadata, "render_modes": ["ansi"]}
    supports_traces: ClassVar[bool] = True
    capabilities: ClassVar[EnvCapabilities] = EnvCapabilities(
        token_observations=True, shared_starts=True, text_tokens=True, episode_stats=STATS
    )
    rules: ClassVar[JudgeRules] = JudgeRules()

    def __init__(
        self,
        num_envs: int = 1,
        tokenizer: str | None = None,
        num_slots: int = 3,
        max_reply_tokens: int = 32,
        word_budget: int | None = None,
        system_prompt: str | None = SYSTEM_PROMPT,
        max_episode_steps: int | None = None,
        device: torch.device | str = "cpu",
        seeds: int | list[int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_text_params(tokenizer, num_slots, max_reply_tokens, word_budget)
        assert tokenizer is not None
        limit = max_reply_tokens if max_episode_steps is None else min(max_reply_tokens, max_episode_steps)
        super().__init__(num_envs, limit, device, seeds, render_mode)
        self.tokenizer = tokenizer_of(tokenizer)
        self.num_slots, self.max_reply_tokens, self.system_prompt = num_slots, max_reply_tokens, system_prompt
        self.word_budget = default_word_budget(num_slots) if word_budget is None else word_budget
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.vocab_size = len(self.tokenizer)
        self.max_score = num_slots * self.rules.correct_reward
        prompts = [self.chat(make_request(s, num_slots)) for s in range(PROMPT_SAMPLES)]
        self.prompt_width = max(map(len, prompts)) + PROMPT_SPARE
        self.pad_id = pad_token(self.tokenizer, prompts, tokenizer)
        n, p, r, dev = num_envs, self.prompt_width, max_reply_tokens, self.device
        space = TokenSequence(self.vocab_size, p, r, pad_id=self.pad_id)
        self._init_spaces(space, gym.spaces.Discrete(self.vocab_size))
        self.prompt = torch.full((n, p), self.pad_id, dtype=torch.int64, device=dev)
        self.reply = torch.full((n, r), self.pad_id, dtype=torch.int64, device=dev)
        self.requests: list[BookingRequest] = [make_request(0, num_slots)] * n
        self.verdicts: dict[int, Verdict] = {}
        if render_mode == "ansi":
            self.trace_envs = num_envs

    @staticmethod
    def _check_params(args: dict[str, Any]) -> None:
        check_text_params(args["tokenizer"], args["num_slots"], args["max_reply_tokens"], args["word_budget"])

    @staticmethod
    def time_limit(max_reply_tokens: int = 32, **_: Any) -> int:
        """A reply never has more than ``max_reply_tokens`` tokens."""
        return max_reply_tokens

    def chat(self, request: BookingRequest) -> list[int]:
        """The prompt's token ids: the chat template over the system message and the
        request, ending where the assistant's reply begins."""
        messages = [{"role": "user", "content": request.message}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return [int(i) for i in ids]

    # ----------------------------------------------------------------- episodes

    def _start(self, idx: torch.Tensor) -> None:
        leader = self.leaders(idx)  # the group's first env decides the episode
        keys = rng.bits(self.seeds[leader], self.episode[leader], _TEXT).tolist()
        for i, key in zip(idx.tolist(), keys, strict=True):
            request = make_request(key, self.num_slots)
            ids = self.chat(request)
            if len(ids) > self.prompt_width or self.pad_id in ids:
                raise RuntimeError(
                    f"a prompt of {len(ids)} tokens does not fit the env's {self.prompt_width} "
                    f"(or holds the padding token {self.pad_id}): {request.message!r}"
                )
            self.requests[i] = request
            self.prompt[i] = self.pad_id
            self.prompt[i, self.prompt_width - len(ids) :] = torch.tensor(ids, dtype=torch.int64)
        self.reply[idx] = self.pad_id

    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.t.clamp(max=self.max_reply_tokens - 1)
        self.reply.scatter_(1, pos[:, None], actions[:, None])
        written = self.t + 1
        finished = actions == self.eos_id
        ended = finished | (written >= self._limit())
        reward = torch.zeros(self.num_envs, device=self.device)
        self.verdicts = {}
        for i in torch.nonzero(ended).flatten().tolist():
            verdict = self.judge(i, int(written[i]), bool(finished[i]))
            self.verdicts[i] = verdict
            reward[i] = verdict.score
        return reward, ended

    def reply_text(self, i: int, written: int, finished: bool) -> str:
        """Env i's reply decoded (without its end-of-sequence token)."""
        tokens = self.reply[i, : written - 1 if finished else written].tolist()
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def judge(self, i: int, written: int, finished: bool) -> Verdict:
        """The text judge's verdict on env i's reply of ``written`` tokens."""
        return judge_text(
            self.reply_text(i, written, finished), self.requests[i], finished, self.word_budget, self.rules
        )

    def _observe(self) -> torch.Tensor:
        return torch.cat([self.prompt, self.reply, self.t[:, None]], dim=1)

    def _outcome(self, done: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n, dev = self.num_envs, self.device
        success = torch.zeros(n, dtype=torch.bool, device=dev)
        stats = {name: torch.zeros(n, device=dev) for name in STATS}
        for i, v in self.verdicts.items():
            success[i] = v.success
            for name, value in zip(
                STATS, (v.correct, v.wrong, v.repeats, v.overlong, v.unfinished, v.length), strict=True
            ):
                stats[name][i] = float(value)
        return success, stats

    # ----------------------------------------------------------------- text

    def trace_begin(self, i: int) -> str:
        return "user: " + self.requests[i].message

    def trace_end(self, i: int, success: bool, episode_return: float) -> str:
        v = self.verdicts[i]
        t = int(self.t[i])
        return (
            f"system: {one_line(self.reply_text(i, t, not v.unfinished))}\n"
            f"judge: {episode_return:.2f} of {self.max_score:g} (correct {v.correct}/{self.num_slots}, "
            f"wrong {v.wrong}, repeats {v.repeats}, over budget {v.overlong}"
            f"{', unfinished' if v.unfinished else ''}){' success' if success else ''}"
        )

    def render_env(self, i: int) -> str:
        """Env i's request and its reply so far (``ansi``)."""
        t = int(self.t[i])
        return f"user: {self.requests[i].message}\nsystem: {self.tokenizer.decode(self.reply[i, :t].tolist())}"


class DialogueTextEnv(SingleEnv):
    """``gymnasium.make("pglab/DialogueText-v0", tokenizer=..., ...)``: one reply at a time."""

    batched_class = DialogueTextVectorEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
