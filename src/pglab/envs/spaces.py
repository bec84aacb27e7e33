"""Observation spaces that tell a network how to read an observation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class TokenSequence(gym.spaces.Box):
    """Token ids of a prompt and a reply, and the reply's length: int64 ``[P + R + 1]``.

    Indices ``[0, P)`` hold the prompt, left-padded (it ends at ``P - 1``); ``[P, P + R)``
    the reply so far, right-padded; the last element how many reply tokens are written.
    A Box to gymnasium, SB3 and ``check_env``; to pglab's networks the sign to build a
    causal transformer (see :mod:`pglab.nets`).

    Args:
        vocab_size: V, token ids are in ``[0, V)``.
        prompt_width: P.
        reply_width: R.
        pad_id: the token left of a short prompt (never one of a prompt's own tokens).
        seed: the space's RNG seed.
    """

    def __init__(self, vocab_size: int, prompt_width: int, reply_width: int, pad_id: int = 0, seed: Any = None) -> None:
        self.vocab_size = int(vocab_size)
        self.prompt_width = int(prompt_width)
        self.reply_width = int(reply_width)
        self.pad_id = int(pad_id)
        high = max(self.vocab_size - 1, self.reply_width)
        super().__init__(0, high, (self.prompt_width + self.reply_width + 1,), dtype=np.int64, seed=seed)

    def __repr__(self) -> str:
        sizes = f"vocab_size={self.vocab_size}, prompt_width={self.prompt_width}, reply_width={self.reply_width}"
        return f"TokenSequence({sizes}, pad_id={self.pad_id})"

    def _key(self) -> tuple[int, int, int, int]:
        return self.vocab_size, self.prompt_width, self.reply_width, self.pad_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenSequence) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())
