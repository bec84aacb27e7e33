"""Stable-Baselines3's A2C and PPO as pglab algorithms: same envs, protocol, metrics, files.

* Environment: the very pglab vector env our own algorithms train on, seen through
  :class:`SB3VecEnv` (an SB3 ``VecEnv`` over the torch step contract: time-limit cuts
  reported as ``TimeLimit.truncated`` with their ``terminal_observation``, so SB3
  bootstraps them; finished episodes reported as ``info["episode"]``). With
  ``algo.normalize`` it is wrapped in SB3's ``VecNormalize`` (observations and rewards),
  as the RL Baselines3 Zoo does.
* Evaluation: the experiment's protocol calls :meth:`SB3Agent.act`, which normalises
  observations with the frozen VecNormalize statistics and takes the policy's
  deterministic action — the same evaluation envs and seeds as every algorithm.
* Metrics: :class:`_UpdateCallback` hands the experiment an :class:`~pglab.algos.common.Update`
  after every SB3 training step, with SB3's recorded losses renamed to pglab's keys
  (``loss/policy``, ``loss/value``, ``loss/entropy``; plus ``train/approx_kl`` and
  ``train/clip_fraction`` for PPO), ``train/grad_norm`` (measured at SB3's optimiser
  steps, after its clipping; PPO: the mean over the update's steps) and the episodes
  finished since the last update.
* Files: :meth:`SB3Agent.export` also saves the model in SB3's own zip format and the
  VecNormalize statistics (``vecnormalize.pkl``) next to pglab's checkpoint.
"""

from __future__ import annotations

import importlib.util
import inspect
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from pglab.algos.common import (
    FLOAT_BYTES,
    LogFn,
    MemoryNeed,
    NonFiniteError,
    OnUpdate,
    Update,
    activation_bytes,
    check_finite,
    network_bytes,
    parameter_count,
)
from pglab.config import ConfigError, SB3Config, check_range
from pglab.envs.capabilities import HasDemonstrations
from pglab.nets import make_policy, make_value
from pglab.nets.activations import ACTIVATIONS

if TYPE_CHECKING:
    from pglab.config import Config, SFTConfig
    from pglab.envs import EnvSpec, VectorEnv

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"A2C": A2C, "PPO": PPO}
# SB3's recorded keys -> pglab's metric names
METRIC_NAMES = {
    "train/policy_loss": "loss/policy",  # A2C
    "train/policy_gradient_loss": "loss/policy",  # PPO
    "train/value_loss": "loss/value",
    "train/entropy_loss": "loss/entropy",
    "train/approx_kl": "train/approx_kl",
    "train/clip_fraction": "train/clip_fraction",
    "train/explained_variance": "train/explained_variance",
}
# the constructor arguments pglab sets itself, from algo's own keys (ranges in SB3Config)
OWN_KWARGS = {
    "learning_rate",
    "n_steps",
    "gamma",
    "gae_lambda",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "policy_kwargs",
    "device",
    "verbose",
    "seed",  # the run's own seed covers it; SB3's would re-seed the shared training envs
}
# The ranges of SB3's other numeric arguments (their types come from SB3's signature):
# from SB3's docs and source (PPO asserts clip_range_vf > 0; n_epochs < 1 trains nothing and
# then fails logging the losses of no epoch; a deque of negative length raises).
KWARG_RANGES: dict[str, dict[str, float]] = {
    "batch_size": {"ge": 1},  # > 1 with normalize_advantage (see _check_ppo_batches)
    "n_epochs": {"ge": 1},
    "clip_range": {"gt": 0.0},
    "clip_range_vf": {"gt": 0.0},
    "target_kl": {"gt": 0.0},
    "rms_prop_eps": {"gt": 0.0},
    "sde_sample_freq": {"ge": -1},  # -1: only at the start of each rollout
    "stats_window_size": {"ge": 1},
}
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def _configurable_types(annotation: Any) -> list[Any]:
    """The types of an SB3 annotation a YAML value can have (schedules and classes cannot)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if typing.get_origin(annotation) is typing.Union:
        options = typing.get_args(annotation)
    plain = [typing.get_origin(t) or t for t in options]
    return [t for t in plain if t in _TYPE_WORDS or t is type(None)]


def _matches(value: Any, kinds: list[Any]) -> bool:
    """``value`` is of one of ``kinds`` (an int is a float; a bool is never a number)."""
    for kind in kinds:
        if value is None and kind is type(None):
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind in (int, float) and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind in (float, str, dict) and isinstance(value, kind):
            return True
    return False


def check_kwarg(algorithm: str, key: str, value: Any, parameter: inspect.Parameter) -> None:
    """One ``algo.kwargs`` value against the type of SB3's constructor argument and its range."""
    kinds = _configurable_types(parameter.annotation)
    if not _matches(value, kinds):
        words = [_TYPE_WORDS[k] for k in kinds if k is not type(None)] + ["null"] * (type(None) in kinds)
        if words == ["null"]:
            words = ["only null (a class or a schedule cannot be given in a config)"]
        allowed = " or ".join(words)
        raise ConfigError(f"algo.kwargs.{key}={value!r}: SB3's {algorithm} takes {allowed} here")
    if value is not None:
        check_range(f"algo.kwargs.{key}", value, **KWARG_RANGES.get(key, {}))
    if key == "tensorboard_log" and value is not None and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            f"algo.kwargs.tensorboard_log={value!r}: tensorboard is not installed; pip install tensorboard, "
            "or drop the key (pglab writes metrics.jsonl and W&B either way)"
        )


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over any pglab torch vector env (gymnasium-backed or native; numpy in, numpy out)."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env  # before VecEnv.__init__, which asks it for its render_mode
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: torch.Tensor | None = None
        self._discrete = isinstance(env.single_action_space, gym.spaces.Discrete)

    def reset(self) -> np.ndarray:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, _ = self.env.reset(seed=seeds)
        self._reset_seeds()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        dtype = torch.long if self._discrete else torch.float32
        self._actions = torch.as_tensor(np.asarray(actions), dtype=dtype, device=self.env.device)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        done = (terminated | truncated).cpu().numpy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final = info["final_obs"].cpu().numpy()
            trunc = (truncated & ~terminated).cpu().numpy()
            ret = info["episode_return"].cpu().numpy()
            length = info["episode_length"].cpu().numpy()
            for i in np.flatnonzero(done):
                infos[i] = {
                    "terminal_observation": final[i],
                    "TimeLimit.truncated": bool(trunc[i]),
                    "episode": {"r": float(ret[i]), "l": int(length[i])},
                }
        return obs.cpu().numpy(), reward.cpu().numpy(), done, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.env, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


class _UpdateCallback(BaseCallback):
    """Turns SB3's training loop into pglab ``Update`` calls (after every training step)."""

    def __init__(self, on_update: OnUpdate, nan_at_step: int | None = None) -> None:
        super().__init__()
        self.on_update = on_update
        self.nan_at_step = nan_at_step
        self.grad_norms: list[float] = []
        self._hook: Any = None
        self._post_hook: Any = None
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.rollouts = 0
        self.stop = False

    def _on_training_start(self) -> None:
        # SB3 records no gradient norm: measure it at each optimiser step. The hook runs
        # after SB3's clip_grad_norm_, so this is the norm *after* clipping.
        def measure(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if grads:
                self.grad_norms.append(float(torch.nn.utils.get_total_norm(grads)))
            if self.nan_at_step is not None and self.model.num_timesteps >= self.nan_at_step and grads:
                grads[0].fill_(float("nan"))  # fault injection: a NaN loss has NaN gradients

        def check(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            # stop at the update that made a weight NaN/inf, before SB3 uses it (PPO's next minibatch)
            for group in optimizer.param_groups:
                for p in group["params"]:
                    check_finite("policy parameters after an SB3 update", p)

        self._hook = self.model.policy.optimizer.register_step_pre_hook(measure)
        self._post_hook = self.model.policy.optimizer.register_step_post_hook(check)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.returns.append(info["episode"]["r"])
                self.lengths.append(info["episode"]["l"])
        return not self.stop

    def _emit(self) -> None:
        values = self.model.logger.name_to_value
        metrics = {name: float(values[key]) for key, name in METRIC_NAMES.items() if key in values}
        if self.grad_norms:
            metrics["train/grad_norm"] = float(np.mean(self.grad_norms))
            self.grad_norms = []
        update = Update(
            env_steps=int(self.model.num_timesteps),
            metrics=metrics,
            episode_returns=torch.tensor(self.returns, dtype=torch.float32),
            episode_lengths=torch.tensor(self.lengths, dtype=torch.long),
        )
        self.returns, self.lengths = [], []
        if not self.on_update(update):
            self.stop = True

    def _check_finite(self) -> None:
        # SB3 trains on silently through NaN; pglab stops the run at once, as for its own algorithms
        values = self.model.logger.name_to_value
        for key in METRIC_NAMES:
            if key in values and not np.isfinite(values[key]):
                raise NonFiniteError(f"{METRIC_NAMES[key]} became non-finite ({values[key]})")
        for name, p in self.model.policy.named_parameters():
            check_finite(f"policy parameter {name}", p)

    def _on_rollout_start(self) -> None:
        # called before each rollout: from the second on, a training step has just ended
        if self.rollouts > 0:
            self._check_finite()
            self._emit()
        self.rollouts += 1

    def _on_training_end(self) -> None:
        if not self.stop:  # after an early stop the last update was already handed over
            self._check_finite()
            self._emit()
        if self._hook is not None:
            self._hook.remove()
            self._post_hook.remove()


def _check_ppo_batches(cfg: Config, parameters: typing.Mapping[str, inspect.Parameter]) -> None:
    """PPO normalises advantages per minibatch (``normalize_advantage``, on by default) and
    asserts ``batch_size > 1`` and ``n_steps * n_envs > 1`` (a one-sample std is NaN; SB3 issue 440)."""
    kwargs = cfg.algo.kwargs
    if not kwargs.get("normalize_advantage", parameters["normalize_advantage"].default):
        return
    batch = kwargs.get("batch_size", parameters["batch_size"].default)
    if batch < 2:
        raise ConfigError(
            f"algo.kwargs.batch_size={batch}: PPO normalises advantages per minibatch, which needs "
            "batch_size >= 2; raise it (e.g. 64) or set algo.kwargs.normalize_advantage=false"
        )
    if cfg.algo.n_steps * cfg.env.num_envs < 2:
        raise ConfigError(
            f"algo.n_steps={cfg.algo.n_steps}: PPO normalises advantages, which needs n_steps × env.num_envs >= 2 "
            f"(env.num_envs={cfg.env.num_envs}); raise either, or set algo.kwargs.normalize_advantage=false"
        )


class SB3Agent:
    """A Stable-Baselines3 A2C or PPO model behind pglab's algorithm interface.

    Args:
        cfg: the algorithm config (``algo.algorithm`` picks A2C or PPO; ``algo.kwargs``
            are passed to its constructor as they are).
        observation_space, action_space: a single env's spaces.
        device: torch device of the SB3 policy.
        max_episode_steps: unused.
        env: the pglab training env; SB3 needs it to build its model.
    """

    supports_compile: ClassVar[bool] = False  # SB3 builds and runs its own networks
    supports_sft: ClassVar[bool] = False
    supports_pretrained: ClassVar[bool] = False  # SB3 builds its own networks
    group_size: int | None = None

    def __init__(
        self,
        cfg: SB3Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        max_episode_steps: int | None = None,
        env: VectorEnv | None = None,
    ) -> None:
        if env is None:
            raise ValueError("an SB3 agent is built around its training env; pass env=")
        self.cfg = cfg
        vec_env: VecEnv = SB3VecEnv(env)
        if cfg.normalize:
            vec_env = VecNormalize(vec_env, norm_obs=True, norm_reward=cfg.normalize_reward, gamma=cfg.gamma)
        self.vec_env = vec_env
        policy_kwargs: dict[str, Any] = {
            "net_arch": {"pi": list(cfg.hidden_sizes), "vf": list(cfg.hidden_sizes)},
            "activation_fn": ACTIVATIONS[cfg.activation],
            "ortho_init": cfg.ortho_init,
        }
        if isinstance(action_space, gym.spaces.Box):
            policy_kwargs["log_std_init"] = cfg.log_std_init
        kwargs = dict(cfg.kwargs)
        self.model = ALGORITHMS[cfg.algorithm.value](
            "MlpPolicy",
            vec_env,
            learning_rate=cfg.lr,
            n_steps=cfg.n_steps,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf"),
            policy_kwargs=policy_kwargs,
            device=device,
            verbose=0,
            **kwargs,
        )
        self.env_steps = 0
        self.nan_at_step: int | None = None  # fault injection, see pglab.config.DebugConfig

    @staticmethod
    def check_config(cfg: Config, env: EnvSpec) -> None:
        """The env must be one SB3 can learn (token sequences need a sequence model, an SFT
        stage and a reference policy, none of which SB3's policies have); ``algo.kwargs`` must
        be constructor arguments of the chosen SB3 class."""
        if env.capabilities.token_observations:
            raise ConfigError(
                f"algo={cfg.algo.name} does not support env={cfg.env.name}: SB3 baselines run on envs with vector "
                "observations (mountaincar, mountaincar_continuous, maze, dialogue, cartpole, or a gymnasium id); "
                "token-level replies with an SFT stage and a KL penalty need algo=reinforce or algo=a2c"
            )
        name = cfg.algo.algorithm.value
        parameters = inspect.signature(ALGORITHMS[name].__init__).parameters
        allowed = set(parameters) - {"self", "policy", "env", "_init_setup_model"}
        for key, value in cfg.algo.kwargs.items():
            if key in OWN_KWARGS:
                raise ConfigError(f"algo.kwargs.{key}: set by pglab (algo's own keys, the run's seed), not here")
            if key not in allowed:
                raise ConfigError(
                    f"algo.kwargs.{key}: not an argument of SB3's {name}; "
                    f"allowed: {', '.join(sorted(allowed - OWN_KWARGS))}"
                )
            check_kwarg(name, key, value, parameters[key])
        if name == "PPO":
            _check_ppo_batches(cfg, parameters)

    @staticmethod
    def memory_need(cfg: Config, env: EnvSpec, observation_space: gym.Space, action_space: gym.Space) -> MemoryNeed:
        """SB3's ``RolloutBuffer`` (numpy, host memory: observations and actions in their spaces'
        dtypes, six float32 arrays), its MlpPolicy (separate policy and value MLPs, as pglab's)
        with the optimiser's state, and the hidden outputs of one gradient step (PPO: a
        minibatch; A2C: the whole rollout)."""
        a = cfg.algo
        T, n = a.n_steps, cfg.env.num_envs
        obs = int(np.prod(observation_space.shape or ())) * np.dtype(observation_space.dtype).itemsize
        act = max(int(np.prod(action_space.shape or ())), 1) * np.dtype(action_space.dtype).itemsize
        per_step = obs + act + 6 * FLOAT_BYTES  # rewards, returns, episode_starts, values, log_probs, advantages
        kwargs = dict(a.kwargs)
        if a.algorithm.value == "PPO":
            rows, optimizer = min(int(kwargs.get("batch_size", 64)), T * n), "adam"
        else:
            rows, optimizer = T * n, "rmsprop" if kwargs.get("use_rms_prop", True) else "adam"
        params = parameter_count(
            lambda: torch.nn.ModuleList(
                [
                    make_policy(observation_space, action_space, a.hidden_sizes, a.activation),
                    make_value(observation_space, a.hidden_sizes, a.activation),
                ]
            )
        )
        return MemoryNeed(
            rollout=T * n * per_step,
            networks=network_bytes(params, optimizer),
            activations=activation_bytes(observation_space, a.hidden_sizes, rows, 2),
            rollout_keys=("env.num_envs", "algo.n_steps"),
            detail=f"{T:,} steps × {n:,} envs × {per_step:,} bytes",
            rollout_on_host=True,
        )

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw ``obs[B, D]``: VecNormalize's frozen statistics, then the SB3 policy."""
        x = obs.cpu().numpy()
        if isinstance(self.vec_env, VecNormalize):
            x = self.vec_env.normalize_obs(x)
        actions, _ = self.model.policy.predict(x, deterministic=deterministic)
        return torch.as_tensor(actions, device=obs.device)

    def learn(self, env: VectorEnv, total_steps: int, on_update: OnUpdate) -> None:
        """SB3's ``learn`` until ``total_steps``; ``on_update`` after every training step."""
        callback = _UpdateCallback(on_update, self.nan_at_step)
        remaining = max(total_steps - self.env_steps, 0)
        self.model.learn(remaining, callback=callback, log_interval=None, reset_num_timesteps=self.env_steps == 0)
        self.env_steps = int(self.model.num_timesteps)

    def state_dict(self) -> dict[str, Any]:
        """Policy weights, optimiser, VecNormalize statistics (as tensors), step and update counters."""
        state: dict[str, Any] = {
            "policy": self.model.policy.state_dict(),
            "optimizer": self.model.policy.optimizer.state_dict(),
            "env_steps": int(self.model.num_timesteps),  # also mid-learn, for checkpoints
            "n_updates": int(self.model._n_updates),
        }
        if isinstance(self.vec_env, VecNormalize):
            for name, rms in self._normalizer_stats(self.vec_env).items():
                state[name] = {
                    "mean": torch.as_tensor(rms.mean),
                    "var": torch.as_tensor(rms.var),
                    "count": torch.as_tensor(rms.count),
                }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.policy.load_state_dict(state["policy"])
        if "optimizer" in state:
            self.model.policy.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.model.num_timesteps = self.env_steps
        self.model._n_updates = int(state.get("n_updates", 0))
        if isinstance(self.vec_env, VecNormalize):
            for name, rms in self._normalizer_stats(self.vec_env).items():
                if name in state:
                    rms.mean = state[name]["mean"].numpy().copy()
                    rms.var = state[name]["var"].numpy().copy()
                    rms.count = float(state[name]["count"])

    @staticmethod
    def _normalizer_stats(vec_env: VecNormalize) -> dict[str, Any]:
        """VecNormalize's running statistics of observations and returns."""
        return {"obs_rms": vec_env.obs_rms, "ret_rms": vec_env.ret_rms}

    def compile(self, env: VectorEnv) -> str:
        raise NotImplementedError("SB3 builds and runs its own networks (supports_compile is False)")

    def finetune(self, expert: HasDemonstrations, cfg: SFTConfig, steps: int, log: LogFn) -> dict[str, float]:
        raise NotImplementedError("SB3's policies have no SFT stage (supports_sft is False)")

    def set_reference(self) -> None:
        raise NotImplementedError("SB3's policies have no KL reference (supports_pretrained is False)")

    def export(self, run_dir: Path) -> None:
        """SB3's own formats: ``sb3_model.zip`` and, when used, ``vecnormalize.pkl``."""
        self.model.save(Path(run_dir) / "sb3_model.zip")
        if isinstance(self.vec_env, VecNormalize):
            self.vec_env.save(str(Path(run_dir) / "vecnormalize.pkl"))
