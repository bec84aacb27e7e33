"""The language-model machinery of pglab's algorithms: a frozen reference policy, the SFT
stage that makes it, and the config checks of KL penalties and groups.

The recipe: a policy first imitates expert demonstrations (:mod:`pglab.algos.sft`), a
frozen copy of it becomes the *reference*, and policy gradient then improves the policy on
a reward with a KL penalty to the reference (``algo.kl_coef``; the losses in
:mod:`pglab.algos.common` compute the exact KL when a reference is given). Groups
(``algo.group_size`` k) make k envs start every episode from the same state, so that k
replies to one prompt can be compared with each other (RLOO, GRPO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from pglab.algos.common import ActionTerms, LogFn
from pglab.algos.sft import supervised_finetune
from pglab.config import ConfigError, KLEstimator
from pglab.envs.capabilities import HasDemonstrations
from pglab.nets import Policy

if TYPE_CHECKING:
    from pglab.config import Config, SFTConfig
    from pglab.envs import EnvSpec


class KLReference:
    """What pglab's algorithms share about the reference policy (the SFT model): the SFT
    stage that makes it, freezing it, and carrying it through checkpoints. A mixin of an
    algorithm with a ``policy`` and a config with ``max_grad_norm``."""

    supports_sft: ClassVar[bool] = True
    policy: Policy
    cfg: Any
    reference: Policy | None = None  # None until set_reference: no KL term, no train/kl

    def finetune(self, expert: HasDemonstrations, cfg: SFTConfig, steps: int, log: LogFn) -> dict[str, float]:
        """Fit the policy to the expert's demonstrations (``steps`` Adam steps), then freeze
        it as the reference; returns the last logged ``sft/*`` metrics."""
        last = supervised_finetune(
            self.policy, expert.demonstrations, cfg, steps, log, max_grad_norm=self.cfg.max_grad_norm
        )
        self.set_reference()
        return last

    def set_reference(self) -> None:
        """Freeze the current policy as the reference (after the SFT stage; a pretrained
        policy's initial model), as the policy makes its reference (:meth:`Policy.reference_copy`)."""
        self.reference = self.policy.reference_copy()

    def reference_state(self) -> dict[str, Any]:
        """``{"reference": its state dict}`` for a checkpoint, or ``{}`` without a reference."""
        return {} if self.reference is None else {"reference": self.reference.state_dict()}

    def load_reference(self, state: dict[str, Any]) -> None:
        """Restore the reference from a checkpoint's ``state`` if it holds one."""
        if "reference" in state:
            self.set_reference()
            assert self.reference is not None
            self.reference.load_state_dict(state["reference"])


def check_kl_config(cfg: Config) -> None:
    """A KL penalty needs a reference policy: the SFT stage's model, or a pretrained
    policy's initial model."""
    if cfg.algo.kl_coef > 0 and cfg.sft_steps == 0 and not cfg.algo.policy.pretrained:
        raise ConfigError(
            f"algo.kl_coef={cfg.algo.kl_coef:g}: the KL penalty needs a reference policy, which the SFT stage "
            "makes; set sft.steps > 0 (on an env with demonstrations: dialogue_lm), use a pretrained policy "
            "(its initial model is the reference) or algo.kl_coef=0"
        )


def check_group_config(cfg: Config, env: EnvSpec, group: int) -> None:
    """``algo.group_size`` needs an env that can start a group's envs from the same state,
    and must divide ``env.num_envs``."""
    if not env.capabilities.shared_starts:
        raise ConfigError(
            f"algo.group_size={group}: env={cfg.env.name} cannot start several envs from the same state "
            "(dialogue_lm can: k samples per prompt); leave algo.group_size null"
        )
    if cfg.env.num_envs % group:
        raise ConfigError(
            f"algo.group_size={group}: must divide env.num_envs={cfg.env.num_envs} (the envs form groups of k)"
        )


def group_advantages(episode_returns: torch.Tensor, group_size: int | None, baseline: str) -> torch.Tensor:
    """``[N]`` advantage of each whole episode against its group: groups are envs
    ``[g·k, (g+1)·k)``, which started from the same state (k = ``group_size``; the whole
    batch when None).

    * ``mean``: ``R_i - mean(R_group)``;
    * ``leave_one_out`` (RLOO, Ahmadian et al. 2024): ``R_i - mean of the k-1 others``
      ``= k/(k-1) · (R_i - mean(R_group))``;
    * ``group_norm`` (GRPO, Shao et al. 2024): ``(R_i - mean(R_group)) / (std(R_group) + 1e-6)``,
      the sample standard deviation (``k - 1`` in the denominator).

    Every step of episode i gets this advantage (the reply is scored as a whole).

    Args:
        episode_returns: ``[N]`` each env's episode return.
        group_size: k (must divide N), or None.
        baseline: ``mean``, ``leave_one_out`` or ``group_norm``.
    """
    n = episode_returns.shape[0]
    k = group_size or n
    r = episode_returns.view(n // k, k)
    centred = r - r.mean(dim=1, keepdim=True)
    if baseline == "leave_one_out":
        adv = centred * (k / (k - 1))
    elif baseline == "group_norm":
        adv = centred / (r.std(dim=1, keepdim=True) + 1e-6)
    else:
        adv = centred
    return adv.reshape(n)


def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-step k3 estimates of KL(π ‖ π_ref) from the sampled actions' log-probabilities
    (each ``[B]``): ``r − log r − 1`` with ``r = π_ref(a|s) / π(a|s)``. Non-negative, with
    the KL as its expectation under π (Schulman, "Approximating KL divergence"), and
    differentiable through ``logp``: GRPO's penalty inside the loss."""
    log_r = logp_ref - logp
    return log_r.exp() - log_r - 1.0


def k3_penalty(
    logp: torch.Tensor, logp_ref: torch.Tensor | None, kl_coef: float, estimator: KLEstimator
) -> torch.Tensor | None:
    """The mean k3 estimate over the ``[B]`` steps, which the loss adds β times, when the
    estimator is ``k3`` and ``kl_coef = β > 0`` with a reference; None otherwise."""
    if estimator is not KLEstimator.k3 or kl_coef <= 0 or logp_ref is None:
        return None
    return k3_kl(logp, logp_ref).mean()


def episode_kl_penalty(
    rewards: torch.Tensor, valid: torch.Tensor, terms: ActionTerms, kl_coef: float, estimator: KLEstimator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Whole episodes' KL to the reference: ``train/kl`` (the mean over episodes of their
    summed exact KL) and, with the ``k1`` estimator and ``kl_coef = β > 0``, the rewards
    less β·(log π − log π_ref) on every valid step; unchanged rewards and no metric without
    a reference (``k3`` puts the penalty into the loss: :func:`k3_penalty`).

    Args:
        rewards: ``[T, N]`` the env's rewards.
        valid: ``[T, N]`` which steps belong to the episodes.
        terms: the valid steps' :class:`ActionTerms` (with the reference's, when there is one).
        kl_coef: β.
        estimator: ``algo.kl_estimator``.
    """
    if terms.kl is None or terms.logp_ref is None:
        return rewards, {}
    kl = torch.zeros_like(rewards)
    kl[valid] = terms.kl
    parts = {"train/kl": kl.sum(dim=0).mean()}
    if kl_coef > 0 and estimator is KLEstimator.k1:
        log_ratio = torch.zeros_like(rewards)
        log_ratio[valid] = terms.logp.detach() - terms.logp_ref
        rewards = rewards - kl_coef * log_ratio
    return rewards, parts
