"""Typed configuration schemas, registered in Hydra's ConfigStore.

Every config group has a dataclass schema. The YAML files under ``conf/`` hold the
values and name their schema in their defaults list (``/schema_algo_reinforce@_here_``),
so Hydra rejects an unknown key or a wrong type while composing, before any work.
The schemas hold types and ranges, not values: a field that a YAML file states is
``MISSING`` here (every option of its group must give it, or composition fails naming
the key); the few fields that keep a default here are ones no option states
(``tests/test_config_values.py`` checks both, on every option of every group).
What OmegaConf cannot express — ranges, "at least one", "this env id exists" — is
declared next to the field (``metadata``) and checked by :func:`validate`, which turns
the composed config into these dataclasses and raises :class:`ConfigError` with a
one-line message that names the key, the bad value and what is allowed. The ranges
of an env's own parameters (the maze's ``size``, ...) are the env's: its constructor
checks them, and ``pglab.envs`` runs that check on the config before any work.

Runtime-only values (spaces, the torch device) are never written back into the
config; they are passed to constructors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pglab.solved import SOLVED_METRICS, unknown_metrics


class ConfigError(ValueError):
    """A configuration value is invalid. ``str(err)`` is one line: key, value, what is allowed."""


def first_line(err: BaseException) -> str:
    """An error's message in one line (its first), or its type's name when it has none:
    what a one-line refusal quotes of an error it explains."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# Learning rates above 1 are never a setting but a typo (1e3 for 1e-3): Adam moves every
# weight by about lr per step, so lr > 1 throws the network out of any useful range at the
# first update, and values past float32's range (3.4e38) make torch's optimisers raise
# mid-run. Every lr-like key (algo.lr, algo.value_lr, sft.lr) has this cap.
MAX_LR = 1.0
LR_CAP = (MAX_LR, "a learning rate above 1 moves every weight out of any useful range at the first step")
# Seeds: numpy's legacy seeding (np.random.seed, gymnasium's action spaces) takes 0..2**32-1;
# torch, Python's random and SeedSequence take more, so the narrowest is the range.
MAX_SEED = 2**32 - 1


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    cap: tuple[float, str] | None = None,
) -> Any:
    """A dataclass field with a numeric range that :func:`validate` enforces.

    ``None`` values pass (they mean "use the default" wherever a field is Optional).
    ``cap``: ``(most, why)``, an upper bound that is a matter of sense rather than of the
    definition (a learning rate of 1e300 is a number, but no setting), refused with its reason.
    """
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "cap": cap})


def non_empty(default: Any = MISSING, each_ge: float | None = None) -> Any:
    """A list field that must hold at least one element, each ``>= each_ge`` if given.

    ``default``: ``MISSING`` (the YAML gives the list) or a factory of the default list.
    """
    kwargs = {"default": MISSING} if default is MISSING else {"default_factory": default}
    return field(**kwargs, metadata={"non_empty": True, "each_ge": each_ge})


# --------------------------------------------------------------------------- choices


class Device(Enum):
    """Where tensors live. ``auto`` picks CUDA when torch sees a GPU, else the CPU."""

    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class WandbMode(Enum):
    """``auto``: online only when an API key is configured, offline otherwise; never prompts."""

    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


class Baseline(Enum):
    """What REINFORCE subtracts from the reward-to-go (see ``pglab.algos.reinforce``)."""

    none = "none"
    mean = "mean"
    value = "value"
    leave_one_out = "leave_one_out"
    group_norm = "group_norm"


class KLEstimator(Enum):
    """How ``kl_coef``'s KL penalty to the reference enters the objective (TRL's names).

    ``k1``: the sampled log-ratio ``log π(a|s) − log π_ref(a|s)`` is subtracted from every
    step's reward (β times it), so a reply's return loses β times its summed log-ratio
    (TRL's RLOO and PPO). ``k3``: the rewards stay; the loss adds β times the mean over the
    batch's steps of ``r − log r − 1``, ``r = π_ref(a|s) / π(a|s)``, differentiated through
    π (Schulman's k3 estimator: non-negative, unbiased; TRL's GRPO with ``beta > 0``).
    """

    k1 = "k1"
    k3 = "k3"


class Activation(Enum):
    """Hidden-layer non-linearity (:mod:`pglab.nets.activations`): ``fast_tanh`` is tanh
    through the vectorised sigmoid kernel on CPUs (a faster forward pass at large batches),
    its last bits not torch's."""

    tanh = "tanh"
    fast_tanh = "fast_tanh"
    relu = "relu"


class SuccessWhen(Enum):
    """Which episode end counts as a success for ``eval/success_rate``.

    ``terminated``: reaching a terminal state is the goal (MountainCar's flag).
    ``truncated``: surviving until the time limit is the goal (CartPole).
    ``reported``: the env reports each episode's success (the maze's goal, a correct booking).
    """

    terminated = "terminated"
    truncated = "truncated"
    reported = "reported"  # the env says so in info["success"] (pglab's native envs)


# --------------------------------------------------------------------------- groups


class EnvBackend(Enum):
    """Which implementation of an env runs.

    ``auto``: pglab's batched torch implementation where there is one (MountainCar-v0,
    MountainCarContinuous-v0, and pglab's own envs), gymnasium's otherwise.
    ``torch``: pglab's batched torch implementation (an error where there is none).
    ``gymnasium``: gymnasium's reference env, one Python object per sub-env.
    """

    auto = "auto"
    torch = "torch"
    gymnasium = "gymnasium"


@dataclass
class EnvConfig:
    """A gymnasium environment and its per-env defaults.

    Attributes:
        name: short name used in run names and tables (``mountaincar``).
        id: gymnasium id (``MountainCar-v0``).
        num_envs: parallel training environments (one vector env).
        default_total_steps: training budget in env steps when ``total_steps`` is null.
        default_sft_steps: steps of the SFT stage when ``sft.steps`` is null (envs with
            demonstrations).
        max_episode_steps: time limit; null keeps the registered one.
        solved: when a run counts as solved: evaluation metric (``return_mean``,
            ``success_rate``, ``optimality``, ``expert_fraction``) → minimum, every one
            met at one evaluation (see :mod:`pglab.solved`): ``solved_at_*``,
            ``eval.stop_when_solved``, the report's "solved" column.
        success_when: which episode end counts as a success.
        backend: ``auto``, ``torch`` or ``gymnasium`` (see :class:`EnvBackend`).
        kwargs: extra keyword arguments for ``gymnasium.make``.
    """

    name: str = MISSING
    id: str = MISSING
    num_envs: int = bounded(MISSING, ge=1)
    default_total_steps: int = bounded(MISSING, ge=1)
    default_sft_steps: int = bounded(0, ge=0)  # envs with demonstrations require it (DialogueLMEnvConfig)
    max_episode_steps: int | None = bounded(None, ge=1)
    solved: dict[str, float] = MISSING
    success_when: SuccessWhen = MISSING
    backend: EnvBackend = EnvBackend.auto
    kwargs: dict[str, Any] = field(default_factory=dict)

    def check_backend(self, native: bool) -> None:
        """Raise :class:`ConfigError` when a key needs pglab's batched env but the backend
        chose another (``native`` False); every key works on every backend by default."""

    def typed_kwargs(self) -> dict[str, Any]:
        """A subclass's own typed fields (e.g. the maze's ``size``), enums as their values:
        the parameters of pglab's env class that the config declares."""
        base = {f.name for f in dataclasses.fields(EnvConfig)}
        return {
            f.name: (v.value if isinstance(v := getattr(self, f.name), Enum) else v)
            for f in dataclasses.fields(self)
            if f.name not in base
        }

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the env's constructor: :meth:`typed_kwargs`, then the
        free-form ``kwargs``."""
        return self.typed_kwargs() | dict(self.kwargs)


class Shaping(Enum):
    """Reward shaping of the MountainCars' training reward (:mod:`pglab.envs.mountaincar`)."""

    none = "none"
    energy = "energy"  # potential-based (Ng et al. 1999), Φ = the car's mechanical energy


@dataclass
class MountainCarEnvConfig(EnvConfig):
    """MountainCar-v0 and MountainCarContinuous-v0 (gymnasium's, or pglab's torch twins).

    Attributes:
        goal_velocity: the velocity the car must have at the flag (gymnasium's argument).
        shaping: ``energy`` adds ``F = γ·Φ(s') − Φ(s)`` to the training reward, Φ the
            car's mechanical energy scaled to [0, 1] between the valley at rest and the flag
            at rest, times ``shaping_scale`` (Φ = 0 at a terminal state). Potential-based,
            so the optimal policy of the γ-discounted task is unchanged (Ng et al. 1999).
            Evaluation and every reported return use the true reward. The torch twins
            only (``env.backend`` auto or torch).
        shaping_gamma: γ of F; the learner's discount (``${algo.gamma}`` in the yaml) for
            the guarantee to hold.
        shaping_scale: Φ at the flag at rest, in units of the env's reward.
    """

    goal_velocity: float = MISSING
    shaping: Shaping = MISSING
    shaping_gamma: float = MISSING  # in [0, 1]: the env checks it (after algo.gamma, which it interpolates)
    shaping_scale: float = bounded(MISSING, gt=0.0)

    def check_backend(self, native: bool) -> None:
        if self.shaping != Shaping.none and not native:
            raise ConfigError(
                f"env.shaping={self.shaping.value}: the shaping is computed in pglab's batched torch "
                f"MountainCar; set env.backend=torch (or auto), or env.shaping=none"
            )

    def env_kwargs(self) -> dict[str, Any]:
        """The shaping keys only when shaping is on: gymnasium's own MountainCar takes none."""
        kwargs = super().env_kwargs()
        if self.shaping == Shaping.none:
            for key in ("shaping", "shaping_gamma", "shaping_scale"):
                kwargs.pop(key)
        return kwargs


class MazeLayout(Enum):
    fixed = "fixed"
    random = "random"


class MazeObservation(Enum):
    onehot = "onehot"
    local = "local"


@dataclass
class MazeEnvConfig(EnvConfig):
    """pglab's maze (``pglab/Maze-v0``; see ``pglab.envs.maze``).

    The values are in ``conf/env/maze.yaml``; the allowed ranges are the env's own
    (``pglab.envs.maze.check_maze_params``, run on the config before any work).

    Attributes:
        size: tiles per side, odd (walls and rooms alternate), 5..101.
        layout: ``fixed`` (one maze from ``maze_seed``) or ``random`` (a new maze each episode).
        maze_seed: which maze the fixed layout is.
        observation: ``onehot`` position (fixed layout) or ``local`` egocentric view + goal direction.
        view_radius: half-width of the local view.
        step_cost: paid every step.
        goal_reward: received on reaching the goal.
        random_start: start in a random room instead of the top-left one.
    """

    size: int = MISSING
    layout: MazeLayout = MISSING
    maze_seed: int = MISSING
    observation: MazeObservation = MISSING
    view_radius: int = MISSING
    step_cost: float = MISSING
    goal_reward: float = MISSING
    random_start: bool = MISSING


@dataclass
class DialogueEnvConfig(EnvConfig):
    """pglab's task-oriented dialogue (``pglab/Dialogue-v0``; see ``pglab.envs.dialogue``).

    The values are in ``conf/env/dialogue.yaml``; the allowed ranges are the env's own
    (``pglab.envs.dialogue.check_dialogue_params``, run on the config before any work).

    Attributes:
        num_slots: K slots the user's goal has (1..8).
        error_rate: probability that the system mishears an informed value.
        max_turns: turn limit, >= 2K+1; running out is a failure.
        success_reward: for booking the user's goal.
        failure_penalty: for a wrong booking, a bye or running out of turns.
    """

    num_slots: int = MISSING
    error_rate: float = MISSING
    max_turns: int = MISSING
    success_reward: float = MISSING
    failure_penalty: float = MISSING


@dataclass
class DialogueLMEnvConfig(EnvConfig):
    """Token-level replies to the dialogue's user (``pglab/DialogueLM-v0``; see ``pglab.envs.dialogue_lm``).

    The values are in ``conf/env/dialogue_lm.yaml``; the allowed ranges are the env's own
    (``pglab.envs.dialogue_lm.check_lm_params``, run on the config before any work).

    Attributes:
        default_sft_steps: required here (the env has demonstrations; see :class:`EnvConfig`).
        num_slots: K slots in each request (1..8).
        max_reply_tokens: the longest reply (an episode's time limit).
        length_budget: reply tokens the judge allows before each further one costs (null:
            the slot phrases + 5).
        error_rate: how often the expert mishears a value in its demonstrations.
        ramble_rate: how often the expert adds a pleasantry (over the budget).
        repeat_rate: how often the expert restates a slot (a repetition).
    """

    default_sft_steps: int = bounded(MISSING, ge=0)
    num_slots: int = MISSING
    max_reply_tokens: int = MISSING
    length_budget: int | None = MISSING
    error_rate: float = MISSING
    ramble_rate: float = MISSING
    repeat_rate: float = MISSING


@dataclass
class DialogueTextEnvConfig(EnvConfig):
    """The booking task in words for a pretrained language model (``pglab/DialogueText-v0``;
    see ``pglab.envs.dialogue_text``). Its ranges are the env's own (``check_text_params``).

    Attributes:
        tokenizer: the model whose tokenizer writes the prompts and reads the replies: the
            policy's (``${algo.policy.model}``).
        num_slots: K slots in each request (1..8).
        max_reply_tokens: the longest reply in tokens (an episode's time limit).
        word_budget: words the judge allows before each further one costs (null: ``sure i
            booked a table`` + the slot phrases + 5).
        system_prompt: the chat's system message (null: the chat template's default).
    """

    tokenizer: str | None = MISSING
    num_slots: int = MISSING
    max_reply_tokens: int = MISSING
    word_budget: int | None = MISSING
    system_prompt: str | None = MISSING


@dataclass
class TransformerConfig:
    """The causal transformer that token-sequence envs (``dialogue_lm``) get as policy and critic.

    Attributes:
        layers: decoder blocks.
        heads: attention heads (``width`` must be a multiple).
        width: model width (embedding size).
        ff_mult: the MLP's hidden width, as a multiple of ``width``.
    """

    layers: int = bounded(2, ge=1)
    heads: int = bounded(4, ge=1)
    width: int = bounded(64, ge=8)
    ff_mult: int = bounded(4, ge=1)


class PolicyKind(Enum):
    """Which network acts: ``own``, pglab's networks (MLPs; a causal transformer on token
    sequences, sized by ``algo.transformer``), or ``pretrained``, a causal language model
    that Hugging Face ``transformers`` loads (``pglab.nets.pretrained``; the ``pglab[lm]`` extra)."""

    own = "own"
    pretrained = "pretrained"


class ModelDtype(Enum):
    """The dtype a pretrained model's weights are held and computed in."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass
class LoRAConfig:
    """Low-rank adapters (``peft``) on a pretrained policy: only they train, and the
    reference policy is the base model with them switched off.

    Attributes:
        r: the adapters' rank; 0 fine-tunes every weight instead (and keeps a frozen copy
            of the initial model as the reference).
        alpha: the adapters' scale is ``alpha / r``.
        dropout: dropout on the adapters' input while training.
        target_modules: the names of the linear layers that get adapters (Llama's
            attention projections by default).
    """

    r: int = bounded(16, ge=0)
    alpha: float = bounded(32.0, gt=0.0)
    dropout: float = bounded(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class PolicyConfig:
    """The policy network (``conf/policy/``, placed at ``algo.policy``).

    Attributes:
        name: the option's name (``own``, ``pretrained``, ``smollm2_135m``).
        kind: pglab's own networks, or a pretrained language model (:class:`PolicyKind`).
        model: ``pretrained`` only: a model pglab can fetch (``smollm2-135m``: ``python -m
            pglab.models fetch smollm2-135m``), a folder ``from_pretrained`` reads, a
            ``.gguf`` file, or a hub id where the machine reaches the hub.
        dtype: the weights' dtype (float32 on a CPU; bfloat16 halves a GPU's memory).
        gradient_checkpointing: recompute activations in the backward pass (less memory,
            about a third more compute).
        temperature: the policy is ``softmax(logits / temperature)``: sampling, the
            log-probabilities the gradient uses and the KL alike.
        top_p: nucleus sampling in rollouts and sampled evaluation (1: off). The
            log-probabilities stay the tempered distribution's, as TRL's.
        lora: low-rank adapters (:class:`LoRAConfig`).
    """

    name: str = MISSING
    kind: PolicyKind = MISSING
    model: str | None = MISSING
    dtype: ModelDtype = MISSING
    gradient_checkpointing: bool = MISSING
    temperature: float = bounded(MISSING, gt=0.0)
    top_p: float = bounded(MISSING, gt=0.0, le=1.0)
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    @property
    def pretrained(self) -> bool:
        """A pretrained language model acts (not pglab's own networks)."""
        return self.kind is PolicyKind.pretrained


@dataclass
class AlgoConfig:
    """What every algorithm shares.

    Attributes:
        name: short name used in run names and tables.
        impl: dotted path of the class that implements it; the experiment builds
            ``impl(cfg=, observation_space=, action_space=, device=, max_episode_steps=, env=)``.
        hidden_sizes: widths of the MLP hidden layers, policy and value alike.
        activation: hidden-layer non-linearity.
        lr: Adam learning rate of the policy, at most :data:`MAX_LR` (as every lr-like key).
        gamma: discount factor.
        ent_coef: weight of the entropy bonus.
        max_grad_norm: clip the global gradient norm to this (null: no clipping).
        transformer: sizes of the causal transformer used instead of the MLPs on
            token-sequence observations (``env=dialogue_lm``).
        policy: which network acts (``conf/policy/``: pglab's own, or a pretrained
            language model).
    """

    name: str = MISSING
    impl: str = MISSING
    hidden_sizes: list[int] = non_empty(each_ge=1)
    activation: Activation = MISSING
    lr: float = bounded(MISSING, gt=0.0, cap=LR_CAP)
    gamma: float = bounded(MISSING, ge=0.0, le=1.0)
    ent_coef: float = bounded(MISSING, ge=0.0)
    max_grad_norm: float | None = bounded(MISSING, gt=0.0)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    policy: PolicyConfig = MISSING


@dataclass
class ReinforceConfig(AlgoConfig):
    """REINFORCE (Williams 1992) with reward-to-go and a choice of baseline.

    Attributes:
        baseline: ``none``; ``mean`` (batch mean of the reward-to-go); ``value`` (a
            learned critic V(s), trained by regression on the reward-to-go);
            ``leave_one_out`` (RLOO: the mean reward-to-go of the *other* episodes of
            the batch; needs ``env.num_envs >= 2``); ``group_norm`` (the return standardised
            over its group: minus the group's mean, divided by its std, as GRPO).
        group_size: k, episodes per group that start from the same state (the same prompt:
            k samples per prompt) and are compared with each other: with ``mean``,
            ``leave_one_out`` (RLOO) and ``group_norm`` each episode is scored by its whole
            return against its group. Null: every env starts its own episode and the whole
            batch is one group. Needs an env that can share starts (``dialogue_lm``).
        kl_coef: β of the KL penalty to the reference policy (the model the SFT stage
            fitted). Needs an SFT stage (``sft.steps > 0``).
        kl_estimator: how the penalty enters (:class:`KLEstimator`): ``k1``, every step's
            reward loses ``β · (log π(a|s) − log π_ref(a|s))``; ``k3``, the loss gains β
            times the steps' mean k3 estimate.
        normalize_advantage: standardise advantages over the batch.
        normalize_obs: running mean/std observation normalisation (clipped to ±clip_obs),
            A2C's: the statistics take in each batch's observations after its update.
        clip_obs: clipping after normalisation.
        value_lr: Adam learning rate of the critic (``baseline=value`` only).
        log_std_init: initial log standard deviation of a Gaussian policy.
    """

    baseline: Baseline = MISSING
    group_size: int | None = bounded(None, ge=1)
    kl_coef: float = bounded(0.0, ge=0.0)
    kl_estimator: KLEstimator = KLEstimator.k1
    normalize_advantage: bool = MISSING
    normalize_obs: bool = MISSING
    clip_obs: float = bounded(MISSING, gt=0.0)
    value_lr: float = bounded(MISSING, gt=0.0, cap=LR_CAP)
    log_std_init: float = MISSING


class OptimizerName(Enum):
    adam = "adam"
    rmsprop = "rmsprop"


@dataclass
class A2CConfig(AlgoConfig):
    """Advantage actor-critic (Mnih et al. 2016, synchronous) with GAE.

    Attributes:
        n_steps: rollout length per env between updates (batch = n_steps × num_envs).
        gae_lambda: GAE λ; 1 gives plain n-step returns.
        vf_coef: weight of the value loss.
        shared_network: policy and critic share their hidden layers.
        optimizer: ``adam`` or ``rmsprop`` (alpha 0.99, as in A2C's paper and SB3).
        optimizer_eps: the optimiser's epsilon.
        anneal_lr: decay the learning rate linearly to 0 over the budget.
        normalize_advantage: standardise advantages over each batch.
        normalize_obs: running mean/std observation normalisation (clipped to ±clip_obs).
        normalize_reward: scale rewards by the running std of the discounted return
            (clipped to ±clip_reward), as SB3's VecNormalize.
        clip_obs, clip_reward: clipping after normalisation.
        log_std_init: initial log standard deviation of a Gaussian policy.
        kl_coef: β of the KL penalty to the reference policy (the SFT model). Needs
            ``sft.steps > 0``.
        kl_estimator: how the penalty enters (:class:`KLEstimator`): ``k1``, every step's
            reward loses ``β · (log π(a|s) − log π_ref(a|s))``; ``k3``, the loss gains β
            times the steps' mean k3 estimate.
    """

    n_steps: int = bounded(MISSING, ge=1)
    kl_coef: float = bounded(0.0, ge=0.0)
    kl_estimator: KLEstimator = KLEstimator.k1
    gae_lambda: float = bounded(MISSING, ge=0.0, le=1.0)
    vf_coef: float = bounded(MISSING, ge=0.0)
    shared_network: bool = MISSING
    optimizer: OptimizerName = MISSING
    optimizer_eps: float = bounded(MISSING, gt=0.0)
    anneal_lr: bool = MISSING
    normalize_advantage: bool = MISSING
    normalize_obs: bool = MISSING
    normalize_reward: bool = MISSING
    clip_obs: float = bounded(MISSING, gt=0.0)
    clip_reward: float = bounded(MISSING, gt=0.0)
    log_std_init: float = MISSING


class PPOBaseline(Enum):
    """Where PPO's advantages come from (see ``pglab.algos.ppo``).

    ``gae``: a critic and GAE(λ) over fixed-length rollouts (PPO as published).
    ``leave_one_out``, ``group_norm``: no critic; whole episodes, each scored by its return
    against its group's (RLOO; GRPO's (R − mean) / std), every step given that advantage.
    """

    gae = "gae"
    leave_one_out = "leave_one_out"
    group_norm = "group_norm"


@dataclass
class PPOConfig(A2CConfig):
    """Proximal policy optimisation (Schulman et al. 2017) with the clipped objective.

    Everything A2C has (rollouts of ``n_steps``, GAE, normalisation, optimiser) plus:

    Attributes:
        n_epochs: passes over each rollout.
        batch_size: samples (env steps) per minibatch; a sequence policy (the transformer)
            and the group baselines take whole env columns, as many minibatches as the
            rollout holds ``batch_size`` samples.
        clip_range: ε of the clipped surrogate: ratios outside ``[1-ε, 1+ε]`` earn nothing.
        clip_range_vf: clip the critic's change per update to ±this around its value at
            collection time (PPO2's pessimistic max of both errors); null: no clipping.
        target_kl: stop the update's remaining minibatches once the approximate KL of
            one exceeds ``1.5 · target_kl`` (SB3's rule); null: never.
        baseline: ``gae`` (a critic), or the critic-free group baselines ``leave_one_out``
            (RLOO) and ``group_norm`` (GRPO), which collect one whole episode per env.
        group_size: k, envs that start each episode from the same state (k replies to one
            prompt); null: the batch is one group. Group baselines only.
    """

    n_epochs: int = bounded(MISSING, ge=1)
    batch_size: int = bounded(MISSING, ge=1)
    clip_range: float = bounded(MISSING, gt=0.0)
    clip_range_vf: float | None = bounded(MISSING, gt=0.0)
    target_kl: float | None = bounded(MISSING, gt=0.0)
    baseline: PPOBaseline = MISSING
    group_size: int | None = bounded(None, ge=1)


class SB3Algorithm(Enum):
    A2C = "A2C"
    PPO = "PPO"


@dataclass
class SB3Config(AlgoConfig):
    """A Stable-Baselines3 baseline (see ``pglab.algos.sb3``).

    Attributes:
        algorithm: ``A2C`` or ``PPO``.
        n_steps, gae_lambda, vf_coef: as in SB3 (``n_steps`` per env per rollout).
        normalize: wrap the env in SB3's VecNormalize (observations; rewards too when
            ``normalize_reward``), as the RL Baselines3 Zoo's ``normalize: true``.
        ortho_init: SB3's orthogonal initialisation of the policy.
        log_std_init: initial log std of a Gaussian policy.
        kwargs: any other constructor argument of the SB3 class (``n_epochs``,
            ``batch_size``, ``clip_range``, ``use_sde``, ``use_rms_prop``, ...), passed as is;
            checked against the class's signature before the run starts.
    """

    algorithm: SB3Algorithm = MISSING
    n_steps: int = bounded(MISSING, ge=1)
    gae_lambda: float = bounded(MISSING, ge=0.0, le=1.0)
    vf_coef: float = bounded(MISSING, ge=0.0)
    normalize: bool = MISSING
    normalize_reward: bool = MISSING
    ortho_init: bool = MISSING
    log_std_init: float = MISSING
    kwargs: dict[str, Any] = MISSING


@dataclass
class ClusterConfig:
    """What one job asks a SLURM cluster for (``hydra/launcher=slurm`` reads these).

    Attributes:
        partition: SLURM partition; null: the cluster's default.
        time_limit_min: the job's wall-time limit in minutes. submitit's own default (60)
            kills long runs; set it above the run's expected duration.
        cpus_per_job: CPU cores per job.
        gpus_per_job: GPUs per job (0 for CPU jobs).
        mem_gb: memory per job.
    """

    partition: str | None = None
    time_limit_min: int = bounded(240, ge=1)
    cpus_per_job: int = bounded(1, ge=1)
    gpus_per_job: int = bounded(0, ge=0)
    mem_gb: int = bounded(4, ge=1)


@dataclass
class HardwareConfig:
    """Where and how to compute.

    Attributes:
        device: ``cpu``, ``cuda`` (an error without a GPU) or ``auto``.
        num_threads: torch intra-op threads; 0 keeps torch's default (all cores).
            Small policy networks run fastest on one thread, and one thread per job
            keeps parallel sweeps (joblib: one job per core) from oversubscribing the cores.
        compile: ``torch.compile`` (pglab's reinforce, a2c and ppo), paid for with a
            compilation at the start of the run (seconds on a CPU): a2c on pglab's batched
            MountainCars compiles its whole rollout step and update
            (:mod:`pglab.algos.a2c_compiled`), anything else its networks.
        cluster: resources of one job on a SLURM cluster.
    """

    device: Device = MISSING
    num_threads: int = bounded(MISSING, ge=0)
    compile: bool = False
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass
class DebugConfig:
    """Fault injection, to check that a sweep survives failures (tests and curious users).

    Attributes:
        fail_at_step: raise an error at the first update at or past this many env steps.
        nan_at_step: from the first update at or past this many env steps, make the loss
            NaN (ours) or the gradients NaN (SB3, which has no loss hook), as a diverging
            update would: the run must stop at once as failed.
    """

    fail_at_step: int | None = bounded(MISSING, ge=0)
    nan_at_step: int | None = bounded(MISSING, ge=0)


@dataclass
class LoggerConfig:
    """Weights & Biases settings. The plain files are always written.

    Attributes:
        backend: ``wandb`` or ``none`` (files only).
        mode: see :class:`WandbMode`.
        project: W&B project.
        entity: W&B entity (team or user); null uses the account's default.
        tags: W&B tags.
    """

    backend: str = MISSING
    mode: WandbMode = MISSING
    project: str = MISSING
    entity: str | None = MISSING
    tags: list[str] = MISSING


@dataclass
class SFTConfig:
    """Supervised fine-tuning on expert demonstrations before policy-gradient training.

    The stage runs in the same job, before the first evaluation, on envs that provide
    demonstrations (``dialogue_lm``: the expert's replies); the model it leaves is also the
    frozen reference that ``algo.kl_coef`` penalises the distance to.

    Attributes:
        steps: gradient steps (null: the env's ``default_sft_steps``; 0: no SFT stage).
        batch_size: demonstrations per step.
        lr: Adam learning rate.
        log_every: write one ``sft/*`` metrics line per this many steps.
    """

    steps: int | None = bounded(MISSING, ge=0)
    batch_size: int = bounded(MISSING, ge=1)
    lr: float = bounded(MISSING, gt=0.0, cap=LR_CAP)
    log_every: int = bounded(MISSING, ge=1)


@dataclass
class EvalConfig:
    """The one evaluation protocol (see ``pglab.evaluation``).

    Attributes:
        every_steps: evaluate every this many training env steps.
        episodes: episodes per periodic evaluation.
        final_episodes: episodes of the final evaluation.
        num_envs: parallel evaluation environments.
        samples: episodes per evaluation written out as text (``samples.jsonl`` and a W&B
            table), for envs that can describe their episodes (maze, dialogue); 0: none.
        stop_when_solved: end training at the first periodic evaluation whose mean return
            meets ``env.solved`` (the final evaluation still runs); for
            time-to-solve studies and for sweeps that only need a solution.
        deterministic: evaluate the policy's mode (argmax / Gaussian mean); false samples
            actions as in training (language-model replies are usually judged sampled),
            from a generator seeded by the run seed, so evaluations stay reproducible and
            never touch the training RNG.
        video: record evaluation episodes to ``videos/<env_steps>.mp4`` and W&B's
            ``eval/video`` (:mod:`pglab.video`: on an env of its own, so the metrics are
            the same with it on or off); envs that draw frames only.
        video_episodes: episodes per video, one after another.
        video_every: record the periodic evaluations whose ``env_steps // every_steps``
            is a multiple of this (every this-many-th when an update is shorter than
            ``every_steps``; the one at env step 0 included); the final one always.
    """

    every_steps: int = bounded(MISSING, ge=1)
    episodes: int = bounded(MISSING, ge=1)
    final_episodes: int = bounded(MISSING, ge=1)
    num_envs: int = bounded(MISSING, ge=1)
    samples: int = bounded(3, ge=0)
    stop_when_solved: bool = False
    deterministic: bool = MISSING
    video: bool = False
    video_episodes: int = bounded(1, ge=1)
    video_every: int = bounded(1, ge=1)


@dataclass
class Config:
    """The whole run.

    Attributes:
        seed: seeds torch, numpy, Python's ``random``, the envs and their action spaces;
            0..2**32-1 (:data:`MAX_SEED`, numpy's legacy seeding).
        total_steps: training budget in env steps; null uses ``env.default_total_steps``.
        log_every_steps: write one metrics line per this many env steps (at update ends).
        checkpoint_every_steps: save ``checkpoint.pt`` (everything a resume needs) this often.
        progress_every_s: seconds between plain progress lines when no bar is shown.
        tuned_file: the name of the ``conf/tuned/<algo>_<env>.yaml`` file that was applied
            (each tuned file sets its own name), null when the pair has none. A label: it
            shows in ``--cfg job`` and in ``summary.json``'s config and changes nothing else.
    """

    env: Any = MISSING
    algo: Any = MISSING
    hardware: HardwareConfig = MISSING
    logger: LoggerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    seed: int = bounded(MISSING, ge=0, le=MAX_SEED)
    total_steps: int | None = bounded(MISSING, ge=1)
    log_every_steps: int = bounded(MISSING, ge=1)
    checkpoint_every_steps: int = bounded(MISSING, ge=1)
    progress_every_s: float = bounded(MISSING, gt=0.0)
    tuned_file: str | None = MISSING

    @property
    def budget(self) -> int:
        """Training env steps of this run."""
        return self.total_steps if self.total_steps is not None else self.env.default_total_steps

    @property
    def sft_steps(self) -> int:
        """Gradient steps of the SFT stage (0: none)."""
        return self.sft.steps if self.sft.steps is not None else self.env.default_sft_steps


LOGGER_BACKENDS = ("wandb", "none")


def register_configs() -> None:
    """Store the schemas where the YAML files find them (idempotent).

    Schemas are stored as top-level configs (``schema_*``), not in a group, so they
    never show up as choices of the user-facing groups in ``--help``.
    """
    cs = ConfigStore.instance()
    cs.store(name="pglab_config", node=Config)
    cs.store(name="schema_env_gym", node=EnvConfig)
    cs.store(name="schema_env_maze", node=MazeEnvConfig)
    cs.store(name="schema_env_mountaincar", node=MountainCarEnvConfig)
    cs.store(name="schema_env_dialogue", node=DialogueEnvConfig)
    cs.store(name="schema_env_dialogue_lm", node=DialogueLMEnvConfig)
    cs.store(name="schema_env_dialogue_text", node=DialogueTextEnvConfig)
    cs.store(name="schema_algo_reinforce", node=ReinforceConfig)
    cs.store(name="schema_algo_a2c", node=A2CConfig)
    cs.store(name="schema_algo_ppo", node=PPOConfig)
    cs.store(name="schema_algo_sb3", node=SB3Config)
    cs.store(name="schema_hardware", node=HardwareConfig)
    cs.store(name="schema_logger", node=LoggerConfig)
    cs.store(name="schema_policy", node=PolicyConfig)


register_configs()


# --------------------------------------------------------------------------- validation


def _fmt(value: Any) -> str:
    return value.name if isinstance(value, Enum) else repr(value) if isinstance(value, str) else str(value)


def _range_text(meta: dict[str, Any]) -> str:
    parts = []
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if meta.get(key) is not None:
            bound = meta[key]
            parts.append(f"{op} {bound}" if isinstance(bound, int) else f"{op} {bound:g}")
    return " and ".join(parts)


def _check_field(path: str, value: Any, meta: dict[str, Any]) -> None:
    if meta.get("non_empty") and not value:
        raise ConfigError(f"{path}={value}: must hold at least one element")
    if meta.get("each_ge") is not None and isinstance(value, list):
        for i, item in enumerate(value):
            _check_field(f"{path}[{i}]", item, {"ge": meta["each_ge"]})
        return
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}={value}: must be a finite number")
    if meta.get("cap") is not None and value > meta["cap"][0]:
        most, why = meta["cap"]
        raise ConfigError(f"{path}={_fmt(value)} is out of range: must be <= {most:g} ({why})")
    bad = (
        (meta.get("ge") is not None and value < meta["ge"])
        or (meta.get("gt") is not None and value <= meta["gt"])
        or (meta.get("le") is not None and value > meta["le"])
        or (meta.get("lt") is not None and value >= meta["lt"])
    )
    if bad:
        raise ConfigError(f"{path}={_fmt(value)} is out of range: must be {_range_text(meta)}")


def check_range(path: str, value: Any, **bounds: float | None) -> None:
    """Check one value against ``ge``/``gt``/``le``/``lt`` bounds, as :func:`validate` checks a
    schema field; for values a schema cannot type (``algo.kwargs``, checked by their owner)."""
    _check_field(path, value, bounds)


def check_known_keys(node: Any, obj: Any, prefix: str = "") -> None:
    """Reject keys a schema does not have, also ones added with ``+key=...``.

    ``OmegaConf.to_object`` silently drops such keys; a typo must never run silently.
    Dict-typed fields (``env.kwargs``, ``algo.kwargs``) are free-form and not checked.
    """
    if not dataclasses.is_dataclass(obj) or not isinstance(node, DictConfig):
        return
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key in node:
        if key not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(f"{prefix}{key}: unknown key; allowed keys: {allowed}")
        child = node._get_node(key)
        if dataclasses.is_dataclass(getattr(obj, key)):
            check_known_keys(child, getattr(obj, key), prefix=f"{prefix}{key}.")


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Enforce the ``metadata`` constraints of every dataclass field, recursively."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if f.metadata:
            _check_field(path, value, dict(f.metadata))
        if dataclasses.is_dataclass(value):
            check_ranges(value, prefix=f"{path}.")


def validate(cfg: DictConfig | Config) -> Config:
    """Turn a composed config into typed dataclasses and check every constraint.

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    if isinstance(cfg, DictConfig):
        try:
            obj = OmegaConf.to_object(cfg)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or "config"
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"{key}: {msg}") from None
    else:
        obj = cfg
    if not isinstance(obj, Config):
        raise ConfigError("config: the primary config must be pglab's Config schema (conf/config.yaml)")
    if not dataclasses.is_dataclass(obj.env) or not dataclasses.is_dataclass(obj.algo):
        raise ConfigError("env/algo: each option must name its schema in its defaults list (see conf/algo/)")
    if isinstance(cfg, DictConfig):
        check_known_keys(cfg, obj)
    check_ranges(obj)
    t = getattr(obj.algo, "transformer", None)
    if isinstance(t, TransformerConfig) and t.width % t.heads:
        raise ConfigError(
            f"algo.transformer.width={t.width} must be a multiple of algo.transformer.heads={t.heads} "
            "(each head gets width/heads dimensions)"
        )
    if unknown := unknown_metrics(obj.env.solved):
        raise ConfigError(
            f"env.solved.{unknown[0]}: not an evaluation metric; a criterion names metrics among "
            f"{', '.join(SOLVED_METRICS)}, each with its minimum (e.g. env.solved.return_mean=-110)"
        )
    if obj.logger.backend not in LOGGER_BACKENDS:
        raise ConfigError(f"logger.backend={obj.logger.backend!r}: must be one of {', '.join(LOGGER_BACKENDS)}")
    return obj
