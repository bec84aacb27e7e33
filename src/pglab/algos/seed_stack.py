"""Several seeds of one A2C setting trained as one batched computation.

S agents that differ only in their seed (each built exactly as its run alone builds it:
its seed's initial weights, optimiser and normaliser state, checkpoint restored) are
trained together: their parameters stacked along a leading seed axis (``[S, ...]``), one
optimiser over the stacks (RMSprop and Adam are elementwise, so a stack's state is the S
agents' states side by side), one vector env of ``S·N`` envs (seed s's envs are columns
``[s·N, (s+1)·N)``, with the seeds its run alone would give them: pglab's envs draw their
randomness per sub-env, :mod:`pglab.envs.rng`) and one batched matmul per layer
(``torch.baddbmm`` over ``[S, B, D]``) where each run alone does one ``addmm``.

What stays per seed: the action-sampling RNG stream (a ``torch.Generator`` each, holding
the state the global generator would hold in the run alone), the observation and return
normalisers' statistics, the gradient-norm clip, the loss's means, the metrics and
everything the training loop does between updates. Each agent's own modules keep working
for its evaluations and checkpoints: their parameters are views of their slice of the
stacks, and :class:`SeedView` hands the loop a checkpoint in the run alone's format (an
interrupted job resumes alone or in a group alike).

**Equality with the run alone.** Elementwise work and the per-seed reductions are the same
kernels on the same values, so the same bits. The batched matmuls are where bits could
differ: on this machine's CPU ``baddbmm`` gives each slice the bits of ``addmm`` at the
shapes pglab's MLPs use (64-wide hidden layers, batches of 16 rows or more), except
single-output layers, which ``addmm`` runs as a matrix-vector product with another
summation order; the critic's head therefore runs per seed. Critic passes over a
rollout's few ended episodes (a different row count per seed) run per seed too. On
another BLAS a batched matmul may sum in another order: metrics then agree to float32
rounding (about 1e-6 relative) until a sampled action flips.

Shapes: S seeds, T = ``n_steps``, N = ``env.num_envs`` per seed, D = observation size,
A = actions (Discrete) or action size (Box), H = a hidden width.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from pglab.algos.a2c import A2C
from pglab.algos.common import Agent, NonFiniteError, ObsNormalizer, OnUpdate, Update, gae, inject_nan
from pglab.config import A2CConfig
from pglab.envs.make import make_seed_stack_env
from pglab.nets.mlp import HALF_LOG_2PI, CategoricalPolicy, GaussianPolicy, ValueNet

if TYPE_CHECKING:
    from pglab.envs import EnvSpec, VectorEnv

SeedResult = dict[str, float] | NonFiniteError | None  # a seed's metrics, the error that ended it, or ended before
# (seed index, its update or the error that ended its step) -> go on training it
SeedOnUpdate = Callable[[int, "Update | NonFiniteError"], bool]


class SeedStack(Protocol):
    """What :mod:`pglab.seed_group` drives: several seeds' agents trained in lockstep.

    Attributes:
        ids: the seeds still stacked, by their index among the agents it was built with.
        updates: the updates taken (every stacked seed takes each one).
        shares_env_steps: every seed counts the same env steps (so their evaluations fall
            due together and can run as one).
    """

    ids: list[int]
    updates: int
    shares_env_steps: ClassVar[bool]

    def views(self) -> Iterator[Agent]:
        """Per seed, the agent its training loop holds (evaluations, checkpoints)."""
        ...

    def learn(self, env: Any, total_steps: int, on_update: SeedOnUpdate) -> None: ...


class SeedStackClass(Protocol):
    """A seed stack's class: built from the seeds' agents and their generators."""

    algo: type
    shares_env_steps: bool

    def __call__(self, agents: list[Any], generators: list[torch.Generator]) -> SeedStack: ...

    def config_refusal(self, cfg: Any) -> str | None:
        """Why agents of this algorithm config cannot stack, None if they can."""
        ...

    def make_env(self, spec: EnvSpec, num_envs: int, run_seeds: list[int], device: torch.device) -> Any:
        """The seeds' training envs, in the form :meth:`SeedStack.learn` takes them."""
        ...


def stack_parameters(modules: list[nn.Module]) -> dict[str, nn.Parameter]:
    """One ``[S, *shape]`` parameter per parameter name of ``modules`` (in ``named_parameters``
    order, the order each module's optimiser state is indexed by); module s's parameter becomes
    a view of slice s (so its forward passes, evaluations and ``state_dict`` see the trained
    values without a copy)."""
    stacked: dict[str, nn.Parameter] = {}
    for name, _ in modules[0].named_parameters():
        param = nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in modules]))
        owner, _, leaf = name.rpartition(".")
        for s, module in enumerate(modules):
            setattr(module.get_submodule(owner), leaf, nn.Parameter(param.data[s], requires_grad=False))
        stacked[name] = param
    return stacked


def joint_optimizer_state(optimizers: list[torch.optim.Optimizer]) -> dict[str, Any]:
    """The seeds' optimiser ``state_dict``s as the state of one optimiser over all their
    parameters, seed-major (seed s's parameter j is index ``s·P + j``)."""
    return join_optimizer_states([o.state_dict() for o in optimizers])


def join_optimizer_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Optimiser ``state_dict``s of one layout (P parameters, one group) joined seed-major."""
    count = len(states[0]["param_groups"][0]["params"])
    joint = {s * count + int(j): entry for s, st in enumerate(states) for j, entry in st["state"].items()}
    group = dict(states[0]["param_groups"][0]) | {"params": list(range(count * len(states)))}
    return {"state": joint, "param_groups": [group]}


def seed_optimizer_state(joint: dict[str, Any], s: int, count: int) -> dict[str, Any]:
    """Seed s's part of :func:`joint_optimizer_state`'s layout, in the format of its run alone."""
    state = {
        j: {k: v.clone() for k, v in joint["state"][s * count + j].items()}
        for j in range(count)
        if s * count + j in joint["state"]
    }
    group = dict(joint["param_groups"][0]) | {"params": list(range(count))}
    return {"state": state, "param_groups": [group]}


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose backward hands on its gradient contiguous. A run alone's categorical
    head (``addmm(b, W, features.t())``) gets a contiguous gradient for its features, and the
    hidden layers' bias gradients (sums over the batch) take their bits from that layout;
    ``baddbmm``'s backward would hand on a transposed one."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x[S, B, in] -> [S, B, out]`` with ``weight[S, out, in]``, ``bias[S, out]``: one
    ``baddbmm``; a single-output layer per seed (the module docstring says why)."""
    if weight.shape[1] == 1:
        return torch.stack([F.linear(x[s], weight[s], bias[s]) for s in range(x.shape[0])])
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def stacked_body(params: dict[str, torch.Tensor], prefix: str, body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Every seed's hidden layers, ``x[S, B, D] -> [S, B, H]``: ``body``'s layers with the
    stacked weights ``params[f"{prefix}.{i}.weight"]`` (``[S, out, in]``) and biases."""
    for i, layer in enumerate(body):
        if isinstance(layer, nn.Linear):
            x = _linear(x, params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"])
        else:
            x = layer(x)  # an elementwise activation
    return x


def stacked_policy_out(
    params: dict[str, torch.Tensor], prefix: str, body: nn.Sequential, gaussian: bool, obs: torch.Tensor
) -> torch.Tensor:
    """Every seed's policy head on ``obs[S, B, D]``: categorical logits transposed, ``[S, A, B]``
    (as :meth:`CategoricalPolicy.logits_t`), or Gaussian means ``[S, B, A]``."""
    features = stacked_body(params, f"{prefix}.body", body, obs)
    weight, bias = params[f"{prefix}.head.weight"], params[f"{prefix}.head.bias"]
    if gaussian:
        return _linear(features, weight, bias)
    features = _ContiguousGrad.apply(features) if torch.is_grad_enabled() else features
    return torch.baddbmm(bias.unsqueeze(2), weight, features.transpose(1, 2))


def stacked_sample(out: torch.Tensor, log_std: torch.Tensor | None, generators: list[torch.Generator]) -> torch.Tensor:
    """Actions from :func:`stacked_policy_out`'s ``out`` (``log_std[S, A]`` for a Gaussian
    policy, None for a categorical one), each seed's noise from its own generator as
    :meth:`CategoricalPolicy.sample` and :meth:`GaussianPolicy.sample` draw it: ``[S, N]``
    or ``[S, N, A]``."""
    if log_std is not None:
        noise = torch.stack([torch.randn(out.shape[1:], generator=g, device=out.device) for g in generators])
        return out + log_std.exp().unsqueeze(1) * noise
    cdf = torch.softmax(out, dim=1).cumsum(dim=1)  # [S, A, N]
    n = cdf.shape[2]
    u = torch.stack([torch.rand(n, generator=g, device=cdf.device, dtype=cdf.dtype) for g in generators])
    return (u.unsqueeze(1) > cdf[:, :-1]).sum(dim=1)


def stacked_obs_consts(norms: list[ObsNormalizer | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each seed's normaliser constants stacked, ``[S, 1, D]`` (None without normalisation)."""
    consts = [n.constants() for n in norms if n is not None]
    if not consts:
        return None
    return torch.stack([m for m, _ in consts]).unsqueeze(1), torch.stack([i for _, i in consts]).unsqueeze(1)


def stacked_normalize(consts: tuple[torch.Tensor, torch.Tensor] | None, clip: float, obs: torch.Tensor) -> torch.Tensor:
    """``obs[S, B, D]`` as each seed's networks see them (:class:`ObsNormalizer`'s arithmetic)."""
    if consts is None:
        return obs
    mean, inv_std = consts
    return ((obs - mean) * inv_std).clamp_(-clip, clip)


class SeedStackA2C:
    """S A2C agents (:func:`stackable`) trained in lockstep; see the module docstring.

    Args:
        agents: the seeds' agents, built and (on resume) restored as their runs alone do,
            all at the same ``env_steps``.
        generators: per seed, the torch generator its actions are sampled from (holding
            the global generator's state in its run alone at this point).
    """

    algo: ClassVar[type[A2C]] = A2C  # the algorithm whose agents this stack trains (not a subclass)
    shares_env_steps: ClassVar[bool] = True  # the seeds count the same env steps (joint evaluations)

    @staticmethod
    def make_env(spec: EnvSpec, num_envs: int, run_seeds: list[int], device: torch.device) -> VectorEnv:
        """The seeds' training envs: one vector env of all of them (:func:`make_seed_stack_env`)."""
        return make_seed_stack_env(spec, num_envs, run_seeds, device)

    @classmethod
    def config_refusal(cls, cfg: A2CConfig) -> str | None:
        """Why agents of ``cfg`` cannot train in this stack, None if they can (with MLP
        networks: token observations are refused before, where the env is known)."""
        if cfg.shared_network:
            return "algo.shared_network=true does not stack"
        if cfg.kl_coef > 0:
            return "a KL reference does not stack"
        return None

    @classmethod
    def _check_agent(cls, agent: A2C) -> None:
        """``agent`` is one of :attr:`algo` (not a subclass) with separate MLP actor and critic
        and no KL reference, as :meth:`config_refusal` lets through."""
        why = cls.config_refusal(agent.cfg)
        if type(agent) is not cls.algo:
            why = f"{type(agent).__name__} is not {cls.algo.__name__}"
        elif not isinstance(agent.policy, CategoricalPolicy | GaussianPolicy) or not isinstance(agent.value, ValueNet):
            why = "only MLP policies and critics stack"
        elif agent.reference is not None:
            why = "a KL reference does not stack"
        if why:
            raise ValueError(f"{cls.__name__}: {why}")

    def __init__(self, agents: list[A2C], generators: list[torch.Generator]) -> None:
        for agent in agents:
            self._check_agent(agent)
        if len({a.env_steps for a in agents}) != 1:
            raise ValueError("the agents of a seed stack must be at the same env step")
        if any(len(a.optimizer.param_groups) != 1 for a in agents):
            raise ValueError("a seed stack's optimiser has one parameter group")
        self.cfg = agents[0].cfg
        self.env_steps = agents[0].env_steps
        self.gaussian = isinstance(agents[0].policy, GaussianPolicy)
        self.ids = list(range(len(agents)))  # each seed's index as the stack was built (what on_update gets)
        self.updates = 0  # updates taken
        self.built_with = len(agents)
        self._success_reported = False  # the env reports each episode's success
        self._train_s = 0.0  # the last update's collect and step, in seconds
        self._build(agents, generators, joint_optimizer_state([a.optimizer for a in agents]))

    def _build(self, agents: list[A2C], generators: list[torch.Generator], optimizer_state: dict[str, Any]) -> None:
        """Stack ``agents`` (their current weights) with the joint ``optimizer_state``."""
        self.agents, self.generators = agents, generators
        self.S = len(agents)
        self.params = stack_parameters([a.nets for a in agents])
        # One optimiser over every seed's slices (views of the stacks), seed-major: one kernel
        # call per step, each seed's state (and step count) its own, and each slice stepped
        # as its run alone steps it (a fused kernel rounds a tensor's tail elements its own way).
        self.slices = [list(a.nets.parameters()) for a in agents]
        first = agents[0].optimizer
        self.optimizer = type(first)([p for seed in self.slices for p in seed], **first.defaults)
        self.optimizer.load_state_dict(optimizer_state)
        self.live = [True] * self.S  # a seed whose job ended (failed, stopped) no longer trains
        self.params_device = self.slices[0][0].device
        self._refresh_obs_consts()

    def shrink(self) -> None:
        """Drop the seeds that no longer train: the others are stacked again as they are
        (weights, optimiser state, statistics), so an ended seed's networks, losses and
        optimiser state cost nothing from here on. Its envs keep their columns of the vector
        env, which :meth:`collect` steps with action 0 and ignores."""
        keep = [s for s, alive in enumerate(self.live) if alive]
        if len(keep) == self.S or not keep:
            return
        joint, count = self.optimizer.state_dict(), len(self.slices[0])
        states = join_optimizer_states([seed_optimizer_state(joint, s, count) for s in keep])
        self.ids = [self.ids[s] for s in keep]
        self._build([self.agents[s] for s in keep], [self.generators[s] for s in keep], states)

    # ------------------------------------------------------------------ networks

    def _policy_out(self, obs: torch.Tensor) -> torch.Tensor:
        """:func:`stacked_policy_out` of every stacked seed."""
        return stacked_policy_out(self.params, "policy", self.agents[0].policy.body, self.gaussian, obs)

    def _values(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(obs[S, B, D]) -> [S, B]``."""
        features = stacked_body(self.params, "value.body", self.agents[0].value.body, obs)
        return _linear(features, self.params["value.head.weight"], self.params["value.head.bias"]).squeeze(-1)

    def _seed_values(self, s: int, obs: torch.Tensor) -> torch.Tensor:
        """Seed s's critic alone on ``obs[B, D] -> [B]`` (the run alone's kernels, any B)."""
        value = self.agents[s].value
        assert value is not None
        return value(obs)  # its parameters are views of slice s

    def _sample(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions for ``obs[S, N, D]`` (:func:`stacked_sample`)."""
        log_std = self.params["policy.log_std"] if self.gaussian else None
        return stacked_sample(self._policy_out(obs), log_std, self.generators)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """Every seed's deterministic action (:meth:`A2C.act`'s) for raw ``obs[S·n, D]``, seed
        s's rows ``[s·n, (s+1)·n)``: ``[S·n]`` (argmax) or ``[S·n, A]`` (the Gaussian mean).
        The head runs in the orientation of a run alone's ``logits`` (``x @ Wᵀ``), so an
        argmax sees the same bits."""
        nobs = self._normalize(obs.view(self.S, -1, *obs.shape[1:]))
        features = stacked_body(self.params, "policy.body", self.agents[0].policy.body, nobs)
        out = _linear(features, self.params["policy.head.weight"], self.params["policy.head.bias"])
        return (out if self.gaussian else out.argmax(dim=-1)).flatten(0, 1)

    def _log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log π(a|s), entropy)``, each ``[S, B]``, for ``obs[S, B, D]`` and ``actions[S, B(, A)]``."""
        out = self._policy_out(obs)
        if self.gaussian:
            log_std = self.params["policy.log_std"]  # [S, A]
            z = (actions - out) * torch.exp(-log_std).unsqueeze(1)
            logp = (-0.5 * z * z - log_std.unsqueeze(1) - HALF_LOG_2PI).sum(dim=-1)
            entropy = (0.5 + HALF_LOG_2PI + log_std).sum(dim=-1, keepdim=True).expand_as(logp)
            return logp, entropy
        logp = torch.log_softmax(out, dim=1)  # [S, A, B]
        entropy = -(logp.exp() * logp).sum(dim=1)
        return logp.gather(1, actions.long().unsqueeze(1)).squeeze(1), entropy

    # ------------------------------------------------------------------ normalisation

    def _refresh_obs_consts(self) -> None:
        self._obs_consts = stacked_obs_consts([a.obs_norm for a in self.agents])

    def _normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return stacked_normalize(self._obs_consts, self.cfg.clip_obs, obs)

    def _update_obs_stats(self, obs: torch.Tensor) -> None:
        """Fold each seed's raw observations ``obs[S, B, D]`` into its statistics."""
        for s, agent in enumerate(self.agents):
            agent.update_obs_stats(obs[s])
        self._refresh_obs_consts()

    # ------------------------------------------------------------------ rollouts

    def _per_seed(self, x: torch.Tensor) -> torch.Tensor:
        """``x[T, S·N, ...]`` (the rollout buffer's layout) as ``[S, T·N, ...]``: each seed's
        steps in its run alone's ``flatten(0, 1)`` order."""
        T, n = x.shape[0], x.shape[1] // self.S
        return x.view(T, self.S, n, *x.shape[2:]).transpose(0, 1).reshape(self.S, T * n, *x.shape[2:])

    def _per_step(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """``x[S, T·N]`` back to the buffer's ``[T, S·N]`` layout."""
        return x.view(self.S, T, -1).transpose(0, 1).reshape(T, -1)

    @torch.inference_mode()
    def collect(self, env: Any, obs: torch.Tensor, buf: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`A2C.collect` for every seed at once: ``n_steps`` steps of the ``S·N`` envs into
        ``buf`` (``[T, S·N, ...]``); returns the raw observation to continue from."""
        columns = self._columns(env)
        for t in range(self.cfg.n_steps):
            ours = obs if columns is None else obs[columns]
            nobs = self._normalize(ours.view(self.S, -1, *ours.shape[1:]))
            action = self._sample(nobs).flatten(0, 1)
            if columns is not None:  # the ended seeds' envs step on with action 0, ignored
                full = torch.zeros((env.num_envs, *action.shape[1:]), dtype=action.dtype, device=action.device)
                action = full.index_copy_(0, columns, action)
            obs, reward, terminated, truncated, info = env.step(action)
            step = (action, reward, terminated, truncated, info["final_obs"], info["episode_return"])
            step += (info["episode_length"], info.get("success"))
            if columns is not None:
                step = tuple(None if x is None else x[columns] for x in step)
            action, reward, terminated, truncated, final_obs, episode_return, episode_length, success = step
            buf["obs"][t] = nobs.flatten(0, 1)
            buf["actions"][t] = action
            buf["rewards"][t] = reward
            buf["terminated"][t] = terminated
            torch.logical_or(terminated, truncated, out=buf["dones"][t])
            buf["final_obs"][t] = final_obs
            buf["episode_return"][t] = episode_return
            buf["episode_length"][t] = episode_length
            if success is not None:
                buf["success"][t] = success
                self._success_reported = True
        return obs

    def _columns(self, env: Any) -> torch.Tensor | None:
        """The vector env's columns of the seeds still stacked, None while all are."""
        if len(self.ids) == self.built_with:
            return None
        n = env.num_envs // self.built_with
        return torch.cat([torch.arange(i * n, (i + 1) * n, device=self.params_device) for i in self.ids])

    def _next_values(self, values: torch.Tensor, buf: dict[str, torch.Tensor]) -> torch.Tensor:
        """``V(s'_t)`` as :meth:`A2C.rollout_values` computes it, ``[T, S·N]``, from the
        rollout's values ``[T, S·N]``: shifted, with the last step's and the ended
        episodes' final observations scored by each seed's critic."""
        T, S = values.shape[0], self.S
        final = buf["final_obs"]
        with torch.no_grad():
            next_values = torch.empty_like(values)
            next_values[:-1] = values[1:]
            last = self._normalize(final[-1].view(S, -1, *final.shape[2:]))
            next_values[-1] = self._values(last).flatten()
            ended_by_seed = self._per_seed(buf["dones"][:-1])  # [S, (T-1)·N]
            ended = torch.nonzero(ended_by_seed.flatten()).flatten()  # one device sync per update
            if ended.numel():
                per_seed = ended_by_seed.shape[1]
                seed_of = ended // per_seed
                counts = torch.bincount(seed_of, minlength=S).tolist()
                rows = self._per_seed(final[:-1]).flatten(0, 1)[ended]
                shifted = self._per_seed(next_values[:-1]).flatten()
                for s, (idx, x) in enumerate(zip(ended.split(counts), rows.split(counts), strict=True)):
                    if idx.numel():
                        shifted[idx] = self._seed_values(s, self.agents[s].normalize(x))
                next_values[:-1] = self._per_step(shifted.view(S, -1), T - 1)
        return next_values

    # ------------------------------------------------------------------ learning

    def _seed_loss(
        self, s: int, logp: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor, adv: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Seed s's loss from its ``[T·N]`` terms, as :meth:`A2C.loss` forms it."""
        cfg = self.cfg
        targets = adv + values.detach()
        if cfg.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ent = entropy.mean()
        policy_loss = -(logp * adv).mean()
        value_loss = F.mse_loss(values, targets)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
        loss = inject_nan(loss, self.env_steps, self.agents[s].nan_at_step)
        return loss, {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": -ent}

    def _clip(self) -> torch.Tensor:
        """Each seed's global gradient norm ``[S]`` (before clipping), its gradients clipped
        as :func:`~pglab.algos.common.grad_norm_and_clip` clips a run alone's."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack(
            [torch.linalg.vector_norm(torch.stack(torch._foreach_norm([g[s] for g in grads]))) for s in range(self.S)]
        )
        if self.cfg.max_grad_norm is not None:
            factor = torch.clamp(self.cfg.max_grad_norm / (norms + 1e-6), max=1.0)
            for g in grads:
                g.mul_(factor.view(-1, *([1] * (g.dim() - 1))))
        return norms

    def advantages(self, buf: dict[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        """GAE ``[S, T·N]`` of each seed's part of the rollout, from the rollout's values
        ``[S, T·N]`` (detached): each seed's rewards scaled with its own return statistics, as
        :meth:`A2C.loss` does it. Call once per rollout (it updates those statistics)."""
        cfg, S = self.cfg, self.S
        T = buf["rewards"].shape[0]
        step_values = self._per_step(values, T)
        next_values = self._next_values(step_values, buf)
        n = buf["rewards"].shape[1] // S
        cols = [slice(s * n, (s + 1) * n) for s in range(S)]
        rewards, dones = buf["rewards"], buf["dones"]
        scaled = [a.scale_rewards(rewards[:, c], dones[:, c]) for a, c in zip(self.agents, cols, strict=True)]
        rewards = torch.cat(scaled, dim=1)
        adv = gae(rewards, step_values, next_values, buf["terminated"], dones, cfg.gamma, cfg.gae_lambda)
        return self._per_seed(adv)

    def update(self, buf: dict[str, torch.Tensor]) -> list[SeedResult]:
        """One gradient step of every live seed on its part of ``buf``; then the observation
        statistics take in the rollout. Returns per seed its metrics, the error that ends it
        (its weights are then left as they were), or None for a seed that had ended before."""
        obs = self._per_seed(buf["obs"])
        logp, entropy = self._log_prob_entropy(obs, self._per_seed(buf["actions"]))
        values = self._values(obs)  # [S, T·N], with the critic's gradient
        adv = self.advantages(buf, values.detach())
        terms = [self._seed_loss(s, logp[s], entropy[s], values[s], adv[s]) for s in range(self.S)]
        results = self.step([loss for loss, _ in terms], [p for _, p in terms])
        for s, err in self.parameter_errors().items():
            results[s] = err
        with torch.no_grad():
            self._update_obs_stats(self._per_seed(buf["final_obs"]))
        return results

    def step(
        self, losses: list[torch.Tensor], parts: list[dict[str, torch.Tensor]], stepping: list[bool] | None = None
    ) -> list[SeedResult]:
        """One optimiser step of the seeds in ``stepping`` (default: the live ones) on their
        losses, as :func:`~pglab.algos.common.apply_update` takes a run alone's (one device
        sync): per seed its parts and ``train/grad_norm`` as floats, or the error of a
        non-finite loss (that seed takes no step and trains no more), or None for a seed
        that takes no step."""
        stepping = list(self.live) if stepping is None else list(stepping)
        for param in self.params.values():  # the stacks take the gradients (the optimiser steps their slices)
            param.grad = None
        torch.stack([loss for loss, on in zip(losses, stepping, strict=True) if on]).sum().backward()
        norms = self._clip()
        rows = torch.stack([torch.stack([losses[s].detach(), *parts[s].values(), norms[s]]) for s in range(self.S)])
        results: list[SeedResult] = []
        for s, row in enumerate(rows.tolist()):
            if not stepping[s]:
                results.append(None)
            elif not math.isfinite(row[0]):
                results.append(NonFiniteError(f"loss became non-finite ({row[0]})"))
                self.live[s] = stepping[s] = False  # no step for it (``stepping`` is this call's copy)
            else:
                results.append(dict(zip(parts[s], row[1:-1], strict=True)) | {"train/grad_norm": row[-1]})
        self._hand_grads_to_slices(stepping)
        self.optimizer.step()
        return results

    def parameter_errors(self) -> dict[int, NonFiniteError]:
        """:func:`~pglab.algos.common.check_parameters` per live seed (one device sync): the
        seeds whose weights hold a NaN or inf, each with its run alone's error; they train no more."""
        params = list(self.params.values())
        finite = torch.stack([torch.isfinite(p.detach().flatten(1)).all(1) for p in params])  # [P, S]
        errors = {}
        for s, ok in enumerate(finite.all(0).tolist()):
            if not ok and self.live[s]:
                bad = finite[:, s].tolist().index(False)
                errors[s] = NonFiniteError(f"parameters became non-finite (parameter {bad} of {len(params)})")
                self.live[s] = False
        return errors

    def _hand_grads_to_slices(self, stepping: list[bool]) -> None:
        """Each stepping seed's slices get their part of the stacks' gradients; any other
        seed's get none, so the optimiser leaves its weights and state as they are."""
        stacked = list(self.params.values())
        for s, seed in enumerate(self.slices):
            for p, param in zip(seed, stacked, strict=True):
                p.grad = param.grad[s] if stepping[s] and param.grad is not None else None

    def learn(self, env: Any, total_steps: int, on_update: SeedOnUpdate) -> None:
        """Train every seed until ``env_steps >= total_steps`` or none is live; after each
        update ``on_update(i, update)`` for every live seed, ``i`` its index among the
        agents the stack was built with (False: that seed stops; the stack then shrinks)."""
        n = env.num_envs // self.S
        buf = self.agents[0].buffers(env)
        self._success_reported = False
        obs, _ = env.reset()
        with torch.no_grad():
            self._update_obs_stats(obs.view(self.S, -1, *obs.shape[1:]))
        batch = self.cfg.n_steps * n
        while self.env_steps < total_steps and any(self.live):
            started = time.perf_counter()
            self._anneal_lr(total_steps)
            obs = self.collect(env, obs, buf)
            results = self.update(buf)
            self.env_steps += batch
            self.updates += 1
            self._train_s = time.perf_counter() - started  # every seed's training time of this update
            for s, result in enumerate(results):
                if result is None:
                    continue
                if isinstance(result, NonFiniteError):
                    on_update(self.ids[s], result)  # the seed's job fails; it trains no more
                else:
                    self.agents[s].env_steps = self.env_steps
                    self.live[s] = on_update(self.ids[s], self._seed_update(s, n, buf, result))
            if any(self.live) and not all(self.live):
                self.shrink()
                buf = self.agents[0].buffers(env, self.S * n)

    def _seed_update(self, s: int, n: int, buf: dict[str, torch.Tensor], result: dict[str, float]) -> Update:
        """Seed s's :class:`Update`: its metrics and the episodes its envs finished."""
        cols = slice(s * n, (s + 1) * n)
        done = buf["dones"][:, cols]
        metrics = dict(result)
        if self._success_reported and bool(done.any()):
            metrics["train/success_rate"] = float(buf["success"][:, cols][done].float().mean())
        returns, lengths = buf["episode_return"][:, cols][done], buf["episode_length"][:, cols][done]
        return Update(self.env_steps, metrics, returns, lengths, train_s=self._train_s)

    def _anneal_lr(self, total_steps: int) -> None:
        """:meth:`A2C.anneal_lr` on the stacked optimiser (every seed is at the same step)."""
        if self.cfg.anneal_lr:
            frac = 1.0 - self.env_steps / max(total_steps, 1)
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * frac

    # ------------------------------------------------------------------ per-seed views

    def views(self) -> Iterator[SeedView]:
        for agent in self.agents:
            yield SeedView(self, agent)


class SeedView:
    """A seed of a stack as the training loop sees an agent (an
    :class:`~pglab.algos.common.Agent`): its evaluations through its own modules, its
    checkpoints in its run alone's format (copies, not views of the stacks)."""

    supports_compile = False
    supports_sft = False
    supports_pretrained = False
    group_size = None

    def __init__(self, stack: SeedStackA2C, agent: A2C) -> None:
        self.stack, self.agent = stack, agent
        self.nan_at_step = agent.nan_at_step

    @property
    def env_steps(self) -> int:
        return self.agent.env_steps

    @env_steps.setter
    def env_steps(self, value: int) -> None:
        self.agent.env_steps = value

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.agent.act(obs, deterministic)

    def state_dict(self) -> dict[str, Any]:
        state = self.agent.state_dict()
        state["nets"] = {k: v.clone() for k, v in state["nets"].items()}
        s = self.stack.agents.index(self.agent)  # its place in the stack now (an ended seed's leave it)
        state["optimizer"] = seed_optimizer_state(self.stack.optimizer.state_dict(), s, len(self.stack.slices[s]))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise RuntimeError("a seed of a stack is restored before the stack is built")

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        raise RuntimeError("a seed of a stack trains through its stack")

    def compile(self, env: VectorEnv) -> str:
        raise RuntimeError("hardware.compile does not apply to a seed stack")

    def finetune(self, *args: Any) -> dict[str, float]:
        raise RuntimeError("a seed stack has no SFT stage")

    def set_reference(self) -> None:
        raise RuntimeError("a seed stack has no KL reference")

    def export(self, run_dir: Any) -> None:
        self.agent.export(run_dir)
