"""REINFORCE's episodes for several seeds, sampled as one batched computation.

REINFORCE's unit of work is a batch of whole episodes: every env is reset, and the batch
ends when its slowest episode does. A seed's next batch starts from its envs' episode
counts, so each seed keeps a vector env of its own, stepped exactly as long as its run
alone steps it (one env for all seeds would step a seed's envs on while the others finish,
and restart them elsewhere). What the seeds share is the policy: each step, one batched
forward of every collecting seed's policy (:func:`~pglab.algos.seed_stack.stacked_policy_out`,
over weights stacked once per update) and each seed's actions drawn from its own
generator. Each seed's update is its agent's own (:meth:`Reinforce.learn_from`: the same
loss, baseline, clips and Adam step as its run alone, on the same episodes), so every
seed's metrics equal its run alone's where the batched forward gives the same bits (see
:mod:`pglab.algos.seed_stack`).

The seeds count different env steps (only the steps of their episodes), so each keeps its
own evaluation schedule and runs its evaluations itself. No groups (``algo.group_size``)
and no KL reference.

Shapes: S seeds, N = ``env.num_envs`` per seed, D = observation size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import torch

from pglab.algos.common import NonFiniteError, check_episode_steps, record_episode_step
from pglab.algos.reinforce import Reinforce
from pglab.algos.seed_stack import (
    SeedOnUpdate,
    stacked_normalize,
    stacked_obs_consts,
    stacked_policy_out,
    stacked_sample,
)
from pglab.config import ReinforceConfig
from pglab.envs.make import make_vec_env
from pglab.nets.mlp import CategoricalPolicy, GaussianPolicy

if TYPE_CHECKING:
    from pglab.envs import EnvSpec


class SeedEnvs(list):
    """The seeds' own vector envs, seed s's at index s."""

    def close(self) -> None:
        for env in self:
            env.close()


class SeedStackReinforce:
    """S REINFORCE agents whose episodes are sampled in lockstep; see the module docstring.

    Args:
        agents: the seeds' agents, built (and restored) as their runs alone build them.
        generators: per seed, the torch generator its actions are sampled from.
    """

    algo: ClassVar[type[Reinforce]] = Reinforce
    shares_env_steps: ClassVar[bool] = False  # each seed counts its own episodes' steps

    @classmethod
    def config_refusal(cls, cfg: ReinforceConfig) -> str | None:
        """Why agents of ``cfg`` cannot train in this stack, None if they can."""
        if cfg.group_size is not None:
            return "algo.group_size (envs sharing their starts) does not stack"
        if cfg.kl_coef > 0:
            return "a KL reference does not stack"
        return None

    @staticmethod
    def make_env(spec: EnvSpec, num_envs: int, run_seeds: list[int], device: torch.device) -> SeedEnvs:
        """Each seed's training envs, as its run alone makes them."""
        return SeedEnvs(make_vec_env(spec, num_envs, seed=seed, device=device) for seed in run_seeds)

    def __init__(self, agents: list[Reinforce], generators: list[torch.Generator]) -> None:
        for agent in agents:
            why = self.config_refusal(agent.cfg)
            if type(agent) is not Reinforce or not isinstance(agent.policy, CategoricalPolicy | GaussianPolicy):
                why = f"{type(agent).__name__} is not Reinforce with an MLP policy"
            if why or agent.reference is not None:
                raise ValueError(f"{type(self).__name__}: {why or 'a KL reference does not stack'}")
        self.agents, self.generators = agents, generators
        self.S = len(agents)
        self.ids = list(range(self.S))
        self.cfg = agents[0].cfg
        self.gaussian = isinstance(agents[0].policy, GaussianPolicy)
        self.live = [True] * self.S
        self.updates = 0
        self._refresh()

    def views(self) -> Iterator[Reinforce]:
        """What each seed's training loop holds: its own agent (its weights are its own)."""
        yield from self.agents

    def _refresh(self) -> None:
        """The policies' weights and normaliser constants as they are now, stacked."""
        names = [name for name, _ in self.agents[0].policy.named_parameters()]
        self._weights = {
            f"policy.{n}": torch.stack([a.policy.get_parameter(n).detach() for a in self.agents]) for n in names
        }
        self._obs_consts = stacked_obs_consts([a.obs_norm for a in self.agents])

    def learn(self, envs: SeedEnvs, total_steps: int, on_update: SeedOnUpdate) -> None:
        """Train every seed until its ``env_steps >= total_steps`` or none is live; after each
        batch of episodes ``on_update(s, update)`` for every seed that collected one."""
        bufs = [agent.buffers(env) for agent, env in zip(self.agents, envs, strict=True)]
        while True:
            for s, agent in enumerate(self.agents):
                self.live[s] = self.live[s] and agent.env_steps < total_steps
            if not any(self.live):
                return
            lengths, successes = self.collect(envs, bufs)
            self.updates += 1
            for s, agent in enumerate(self.agents):
                if lengths[s]:
                    try:
                        update = agent.learn_from(bufs[s], lengths[s], successes[s])
                    except NonFiniteError as err:
                        on_update(s, err)
                        self.live[s] = False
                        continue
                    self.live[s] = on_update(s, update)
            self._refresh()

    @torch.inference_mode()
    def collect(self, envs: SeedEnvs, bufs: list[dict[str, torch.Tensor]]) -> tuple[list[int], list[bool]]:
        """One batch of whole episodes for every live seed (:func:`collect_episodes`, in
        lockstep): per seed T (its longest episode; 0 for a seed that did not collect) and
        whether its env reports success."""
        S, max_steps = self.S, self.agents[0].max_episode_steps
        collecting = list(self.live)
        lengths, successes = [0] * S, [False] * S
        obs: list[torch.Tensor] = []  # per seed, the observations its next step starts from
        active: list[torch.Tensor] = []  # per seed, which of its envs are still in their episode
        for s, env in enumerate(envs):
            shape = (env.num_envs, *env.single_observation_space.shape)
            device = bufs[s]["rewards"].device
            obs.append(env.reset()[0] if collecting[s] else torch.zeros(shape, device=device))  # a seed at rest
            active.append(torch.ones(env.num_envs, dtype=torch.bool, device=device))
        log_std = self._weights["policy.log_std"] if self.gaussian else None
        t = 0
        while any(collecting):
            check_episode_steps(t, max_steps)
            out = stacked_policy_out(
                self._weights, "policy", self.agents[0].policy.body, self.gaussian,
                stacked_normalize(self._obs_consts, self.cfg.clip_obs, torch.stack(obs)),
            )  # fmt: skip
            on = [s for s in range(S) if collecting[s]]  # only they draw: a seed at rest keeps its stream
            noise_scale = None if log_std is None else log_std[on]
            actions = stacked_sample(out[on], noise_scale, [self.generators[s] for s in on])
            for k, s in enumerate(on):
                next_obs, reward, terminated, truncated, info = envs[s].step(actions[k])
                outcome = (reward, terminated, truncated, info)
                with_final_obs = self.agents[s].value is not None
                successes[s] |= record_episode_step(bufs[s], t, obs[s], actions[k], active[s], outcome, with_final_obs)
                obs[s] = next_obs
            t += 1
            for s in on:
                if not bool(active[s].any()):
                    collecting[s], lengths[s] = False, t
        return lengths, successes
