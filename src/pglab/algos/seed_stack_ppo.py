"""PPO's epochs for a stack of seeds: :class:`~pglab.algos.seed_stack.SeedStackA2C`'s
rollouts, :class:`~pglab.algos.ppo.PPO`'s update.

Each update freezes every seed's log-probabilities, values and GAE advantages of the
rollout, then takes ``n_epochs`` passes of minibatch steps: each seed draws its own
permutation from its own generator (as its run alone draws it from the global one), and
step i of an epoch takes every seed's minibatch i as one ``[S, B]`` batch, one batched
forward and backward, one optimiser step of the stacks. The losses, their means and the
metrics are :meth:`PPO.minibatch_loss`'s, per seed.

A ``target_kl`` ends each seed's epochs at its own step: that seed takes no further
step of the update (its slices get no gradient, so its weights and Adam's state and step
count, which the optimiser keeps per seed, stay as they are). Stacks the GAE baseline
(the group baselines collect whole episodes, a loop of their own).

Shapes as :mod:`pglab.algos.seed_stack`; B = ``batch_size``.
"""

from __future__ import annotations

import math

import torch

from pglab.algos.common import NonFiniteError, inject_nan
from pglab.algos.ppo import PPO, clipped_surrogate, explained_variance, step_means, value_loss
from pglab.algos.seed_stack import SeedResult, SeedStackA2C
from pglab.config import A2CConfig, PPOBaseline, PPOConfig


class SeedStackPPO(SeedStackA2C):
    """S PPO agents (GAE baseline) trained in lockstep; see the module docstring."""

    algo = PPO

    @classmethod
    def config_refusal(cls, cfg: A2CConfig) -> str | None:
        if isinstance(cfg, PPOConfig) and cfg.baseline != PPOBaseline.gae:
            return f"algo.baseline={cfg.baseline.value} does not stack (algo.baseline=gae does)"
        return super().config_refusal(cfg)

    def update(self, buf: dict[str, torch.Tensor]) -> list[SeedResult]:
        """The epochs over one collected rollout for every live seed, then the observation
        statistics (as :meth:`PPO.update`)."""
        S = self.S
        obs, actions = self._per_seed(buf["obs"]), self._per_seed(buf["actions"])
        with torch.no_grad():
            logp_old, _ = self._log_prob_entropy(obs, actions)
            values_old = self._values(obs)
            adv = self.advantages(buf, values_old)
            returns = adv + values_old
            explained = [explained_variance(values_old[s], returns[s]) for s in range(S)]
        frozen = (logp_old, adv, returns, values_old)
        steps: list[list[dict[str, float]]] = [[] for _ in range(S)]
        errors: dict[int, NonFiniteError] = {}
        was_live = list(self.live)
        stepping = list(self.live)  # a seed leaves it when target_kl stops its epochs (or its loss fails)
        epochs = [float(self.cfg.n_epochs)] * S
        for epoch in range(self.cfg.n_epochs):
            self._epoch(epoch, obs, actions, frozen, steps, errors, stepping, epochs)
        errors |= self.parameter_errors()  # once after the last step, as a run alone checks them
        results: list[SeedResult] = []
        for s in range(S):
            if not was_live[s] or s in errors:
                results.append(errors.get(s))
                continue
            metrics = step_means(steps[s]) | {"train/epochs": epochs[s]}
            ev = float(explained[s])
            results.append(metrics if math.isnan(ev) else metrics | {"train/explained_variance": ev})
        with torch.no_grad():
            self._update_obs_stats(self._per_seed(buf["final_obs"]))
        return results

    def _epoch(
        self,
        epoch: int,
        obs: torch.Tensor,
        actions: torch.Tensor,
        frozen: tuple[torch.Tensor, ...],
        steps: list[list[dict[str, float]]],
        errors: dict[int, NonFiniteError],
        stepping: list[bool],
        epochs: list[float],
    ) -> None:
        """One pass of minibatch steps: each seed's own permutation, step i on every stepping
        seed's minibatch i. A seed whose loss turns non-finite gets its error; one whose
        approximate KL passes ``1.5 · target_kl`` before a step ends its epochs there, that
        step measured and not taken (:meth:`PPO._epochs`)."""
        n = obs.shape[1]
        # a seed whose epochs ended draws no more (its run alone stops drawing), and takes no step
        perms = [
            torch.randperm(n, generator=g, device=obs.device) if on else torch.arange(n, device=obs.device)
            for g, on in zip(self.generators, stepping, strict=True)
        ]
        rows = torch.arange(self.S, device=obs.device).unsqueeze(1)
        batches = torch.stack(perms).split(self.cfg.batch_size, dim=1)  # [S, B] each
        for i, sel in enumerate(batches):
            if not any(stepping):
                return
            logp, entropy = self._log_prob_entropy(obs[rows, sel], actions[rows, sel])
            values = self._values(obs[rows, sel])
            taken = [x.gather(1, sel) for x in frozen]  # logp_old, adv, returns, values_old: [S, B]
            terms = [
                self._minibatch_loss(s, logp[s], entropy[s], values[s], [x[s] for x in taken]) for s in range(self.S)
            ]
            self._stop_at_target_kl([p for _, p in terms], steps, stepping, epochs, epoch + i / len(batches))
            if not any(stepping):
                return
            for s, result in enumerate(self.step([t for t, _ in terms], [p for _, p in terms], stepping)):
                if isinstance(result, NonFiniteError):
                    errors[s], stepping[s] = result, False
                elif result is not None:
                    steps[s].append(result)

    def _stop_at_target_kl(
        self,
        parts: list[dict[str, torch.Tensor]],
        steps: list[list[dict[str, float]]],
        stepping: list[bool],
        epochs: list[float],
        at: float,
    ) -> None:
        """With ``target_kl``: the stepping seeds whose minibatch KL passes ``1.5 · target_kl``
        stop here (one device sync), their parts recorded as a measured step."""
        target = self.cfg.target_kl
        if target is None:
            return
        kls = torch.stack([p["train/approx_kl"] for p in parts]).tolist()
        for s, kl in enumerate(kls):
            if stepping[s] and kl > 1.5 * target:
                steps[s].append({k: float(v.detach()) for k, v in parts[s].items()})
                stepping[s], epochs[s] = False, at

    def _minibatch_loss(
        self, s: int, logp: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor, frozen: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Seed s's :meth:`PPO.minibatch_loss` from its ``[B]`` terms and frozen values."""
        cfg = self.cfg
        logp_old, adv, returns, values_old = frozen
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        surrogate = clipped_surrogate(logp, logp_old, adv, cfg.clip_range)
        ent = entropy.mean()
        loss = surrogate.loss - cfg.ent_coef * ent
        parts = {"loss/policy": surrogate.loss, "loss/entropy": -ent}
        parts["loss/value"] = value_loss(values, values_old, returns, cfg.clip_range_vf)
        loss = loss + cfg.vf_coef * parts["loss/value"]
        parts |= {"train/approx_kl": surrogate.approx_kl, "train/clip_fraction": surrogate.clip_fraction}
        return inject_nan(loss, self.env_steps, self.agents[s].nan_at_step), parts
