"""Supervised fine-tuning (SFT): fit a policy to expert demonstrations before RL.

The language-model recipe: a model first imitates demonstrations (here the dialogue
expert's replies, :meth:`pglab.envs.dialogue_lm.DialogueLMVectorEnv.demonstrations`),
then policy gradient improves it on a reward, with a KL penalty that keeps it near the
imitation model (the *reference*). This module is the first part: ``steps`` Adam steps
on the mean negative log-likelihood of the expert's actions, ``batch_size``
demonstrations (whole episodes) per step, each step a fresh batch (the expert writes as
many as are asked for, so there is no epoch and no overfitting to a fixed set).

A sequence policy scores a batch of episodes in one causal pass
(:func:`~pglab.algos.common.episode_terms`), the same code path the RL losses use.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from pglab.algos.common import LogFn, NonFiniteError, episode_terms, grad_norm_and_clip
from pglab.config import SFTConfig
from pglab.nets import Policy

HELD_OUT = 1 << 30  # batch indices from here on are never trained on
Demonstrations = Callable[[int, int], dict[str, torch.Tensor]]


def supervised_finetune(
    policy: Policy,
    demonstrations: Demonstrations,
    cfg: SFTConfig,
    steps: int,
    log: LogFn,
    max_grad_norm: float | None = 1.0,
) -> dict[str, float]:
    """Fit ``policy`` to demonstrations; returns the last logged metrics.

    Args:
        policy: the policy to train (in place).
        demonstrations: ``(n, index) -> {"obs": [T, n, ...], "actions": [T, n], "valid": [T, n]}``,
            batch ``index`` of n expert episodes (deterministic in the index).
        cfg: batch size, learning rate, logging interval.
        steps: gradient steps.
        log: receives each metrics line: ``sft/step``, ``sft/loss`` (mean NLL per token over
            the steps since the last line), ``sft/token_accuracy`` (how often the policy's
            most likely action is the expert's, on a fresh batch), ``sft/tokens_per_s``
            (expert tokens trained on per second).
        max_grad_norm: gradient-norm clip.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, foreach=True)
    loss_sum = torch.zeros(())
    tokens = 0
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step in range(1, steps + 1):
        batch = demonstrations(cfg.batch_size, step - 1)
        valid = batch["valid"]
        terms = episode_terms(policy, batch["obs"], batch["actions"], valid)
        loss = -terms.logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm_and_clip(params, max_grad_norm)
        optimizer.step()
        loss_sum += loss.detach().cpu() * terms.logp.numel()
        tokens += terms.logp.numel()
        if step % cfg.log_every == 0 or step == steps:
            elapsed = time.perf_counter() - t0
            held_out = demonstrations(cfg.batch_size, HELD_OUT + step)
            last = {
                "sft/step": float(step),
                "sft/loss": float(loss_sum) / tokens,
                "sft/token_accuracy": float(_argmax_hits(policy, held_out)) / int(held_out["valid"].sum()),
                "sft/tokens_per_s": tokens / max(elapsed, 1e-9),
            }
            if not all(map(_finite, last.values())):
                raise NonFiniteError(f"SFT loss became non-finite at step {step} ({last['sft/loss']})")
            log(last)
            loss_sum.zero_()
            tokens = 0
            t0 = time.perf_counter()
    return last


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


@torch.no_grad()
def _argmax_hits(policy: Policy, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """How many valid steps' expert actions are the policy's most likely ones."""
    obs, actions, valid = batch["obs"], batch["actions"], batch["valid"]
    if policy.sequence:  # one causal pass over the episodes
        best = policy.episode_log_probs_all(obs, actions, valid).argmax(dim=-1)  # [B]
        return (best == actions[valid]).sum()
    return (policy.mode(obs[valid]) == actions[valid]).sum()
