"""What an environment can do beyond the step contract, declared by the env class.

Algorithms and the run never test an env's name: they read its :class:`EnvCapabilities`
(resolved once per run into :class:`~pglab.envs.registry.EnvSpec`) and call the matching
Protocol's methods. A leaf module: it imports nothing of pglab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class EnvCapabilities:
    """Capabilities some algorithms and stages need.

    Attributes:
        token_observations: observations are token ids (a transformer policy reads them;
            they must never be normalised, and SB3's MLP policies cannot learn them).
        shared_starts: envs can start in groups from the same state (k samples per
            prompt, :class:`SharesStarts`).
        demonstrations: the env writes expert episodes for an SFT stage
            (:class:`HasDemonstrations`).
        text_tokens: the token ids are a pretrained model's tokenizer's (``env.tokenizer``
            names the model): only that model's policy can read and write them.
        episode_stats: the per-episode measures the env reports in
            ``info["episode_stats"]`` (the maze's ``optimality``), which evaluation
            averages into ``eval/<name>``; what an ``env.solved`` criterion may name besides
            the return and the success rate.
    """

    token_observations: bool = False
    shared_starts: bool = False
    demonstrations: bool = False
    text_tokens: bool = False
    episode_stats: tuple[str, ...] = ()


class SharesStarts(Protocol):
    """An env whose envs ``[g·k, (g+1)·k)`` can share each episode's start state."""

    def set_group_size(self, k: int) -> None: ...


class HasDemonstrations(Protocol):
    """An env with an expert: ``demonstrations(n, index)`` is batch ``index`` of ``n`` expert
    episodes, ``{"obs": [T, n, ...], "actions": [T, n], "valid": [T, n]}``."""

    def demonstrations(self, n: int, index: int) -> dict[str, torch.Tensor]: ...
