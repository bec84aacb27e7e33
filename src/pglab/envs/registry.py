"""Which implementation an env config builds, resolved once per run into an :class:`EnvSpec`.

pglab's native envs (``pglab/Maze-v0``, ``pglab/Dialogue-v0``, ``pglab/DialogueLM-v0``, ``pglab/DialogueText-v0``,
and ``pglab/MountainCar-v0``, ``pglab/MountainCarContinuous-v0``: gymnasium's physics step
for step) are written batched in torch (:mod:`pglab.envs.batched`) and registered with
gymnasium with both an ``entry_point`` (one numpy env, for ``gymnasium.make``, ``check_env``
and SB3) and a ``vector_entry_point`` (the batched env). ``env.backend`` (``auto``, the
default) picks the torch twin of a gymnasium id that has one (``MountainCar-v0`` runs as
``pglab/MountainCar-v0``); ``env.backend=gymnasium`` keeps gymnasium's own env; any other
gymnasium id runs through gymnasium's vector env and pglab's torch adapter.

:func:`resolve_env` is the one place that turns an env config into what the rest of a
run needs — the registered id, the batched class, the time limit, the constructor
arguments and the env's capabilities — and the one place that checks them (unknown id,
a backend without an implementation, bad parameters: one-line :class:`ConfigError`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym

from pglab.config import ConfigError, EnvBackend, EnvConfig, SuccessWhen
from pglab.envs.batched import BatchedEnv
from pglab.envs.capabilities import EnvCapabilities

# id -> (single env, batched env); entry points are strings so that importing this
# module stays cheap and free of import cycles.
NATIVE_ENVS = {
    "pglab/Maze-v0": ("pglab.envs.maze:MazeEnv", "pglab.envs.maze:MazeVectorEnv"),
    "pglab/Dialogue-v0": ("pglab.envs.dialogue:DialogueEnv", "pglab.envs.dialogue:DialogueVectorEnv"),
    "pglab/DialogueLM-v0": ("pglab.envs.dialogue_lm:DialogueLMEnv", "pglab.envs.dialogue_lm:DialogueLMVectorEnv"),
    "pglab/DialogueText-v0": (
        "pglab.envs.dialogue_text:DialogueTextEnv",
        "pglab.envs.dialogue_text:DialogueTextVectorEnv",
    ),
    "pglab/MountainCar-v0": ("pglab.envs.mountaincar:MountainCarEnv", "pglab.envs.mountaincar:MountainCarVectorEnv"),
    "pglab/MountainCarContinuous-v0": (
        "pglab.envs.mountaincar:MountainCarContinuousEnv",
        "pglab.envs.mountaincar:MountainCarContinuousVectorEnv",
    ),
}
# gymnasium ids with a native torch twin, which env.backend=auto|torch runs instead
TORCH_TWINS = {
    "MountainCar-v0": "pglab/MountainCar-v0",
    "MountainCarContinuous-v0": "pglab/MountainCarContinuous-v0",
}


def register_envs() -> None:
    """Register pglab's native envs with gymnasium (idempotent; done on import of :mod:`pglab.envs`)."""
    for env_id, (single, batched) in NATIVE_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=single, vector_entry_point=batched)


@dataclass(frozen=True)
class EnvSpec:
    """An env config resolved: everything a run needs to know about its env, computed once.

    Attributes:
        name: the config's short name (``mountaincar``), for messages.
        id: the registered id that is built, after ``env.backend`` chose (``pglab/MountainCar-v0``).
        native: pglab's batched class for ``id``, None for an env gymnasium vectorises.
        time_limit: the step at which episodes are cut (None: no limit).
        kwargs: constructor arguments (the config's typed fields and ``env.kwargs``;
            ``max_episode_steps`` where the config sets it).
        capabilities: what the env can do beyond the step contract.
        success_when: which episode end counts as a success.
    """

    name: str
    id: str
    native: type[BatchedEnv] | None
    time_limit: int | None
    kwargs: dict[str, Any]
    capabilities: EnvCapabilities
    success_when: SuccessWhen

    def evaluation(self) -> EnvSpec:
        """This env as evaluation sees it: without the constructor arguments that only
        shape the training reward (the native class's ``train_only_kwargs``), so that every
        evaluated and reported return is the true one."""
        drop = self.native.train_only_kwargs if self.native is not None else ()
        return replace(self, kwargs={k: v for k, v in self.kwargs.items() if k not in drop})


def native_class(env_id: str) -> type[BatchedEnv] | None:
    """The batched class of a native pglab env id, None for any other env."""
    entry = NATIVE_ENVS.get(env_id)
    if entry is None:
        return None
    module, name = entry[1].split(":")
    return getattr(importlib.import_module(module), name)


def gym_id(env_id: str) -> str:
    """The registered id of ``env_id``; ``"module:Name-v0"`` imports ``module`` first
    (gymnasium's convention for envs registered by a user's own package)."""
    if ":" not in env_id:
        return env_id
    module, name = env_id.split(":", 1)
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"env.id={env_id!r}: cannot import module {module!r}: {err}") from None
    return name


def backend_id(cfg: EnvConfig) -> str:
    """The registered id that ``cfg`` builds, after ``env.backend`` chose an implementation.

    Raises a one-line ConfigError where the chosen backend has no implementation of the env.
    """
    env_id = gym_id(cfg.id)
    backend = EnvBackend(cfg.backend)
    if env_id in NATIVE_ENVS:
        if backend == EnvBackend.gymnasium and env_id not in TORCH_TWINS.values():
            raise ConfigError(
                f"env.backend=gymnasium: {cfg.id} is pglab's own batched env and has no gymnasium "
                "implementation; use env.backend=auto or torch"
            )
        return env_id
    twin = TORCH_TWINS.get(env_id)
    if backend == EnvBackend.torch and twin is None:
        raise ConfigError(
            f"env.backend=torch: {cfg.id} has no torch implementation (there is one for "
            f"{', '.join(TORCH_TWINS)} and pglab's own envs); use env.backend=auto or gymnasium"
        )
    return twin if twin is not None and backend != EnvBackend.gymnasium else env_id


def resolve_env(cfg: EnvConfig) -> EnvSpec:
    """The :class:`EnvSpec` of ``cfg``; a one-line ConfigError if it cannot be built
    (unknown id, a backend without an implementation, bad parameters, no time limit)."""
    _check_registered(cfg)
    env_id = backend_id(cfg)
    native = native_class(env_id)
    cfg.check_backend(native is not None)
    kwargs = cfg.env_kwargs()
    _check_kwargs(cfg, env_id, native, kwargs)
    if cfg.max_episode_steps is not None:
        limit: int | None = cfg.max_episode_steps
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    elif native is not None:
        limit = native.time_limit(**kwargs)
    else:
        limit = gym.spec(env_id).max_episode_steps
    return EnvSpec(
        name=cfg.name,
        id=env_id,
        native=native,
        time_limit=limit,
        kwargs=kwargs,
        capabilities=native.capabilities if native is not None else EnvCapabilities(),
        success_when=SuccessWhen(cfg.success_when),
    )


def _check_registered(cfg: EnvConfig) -> None:
    try:
        gym.spec(gym_id(cfg.id))
    except gym.error.Error:
        known = sorted(k for k in gym.registry if "/" not in k)[:12]
        raise ConfigError(
            f"env.id={cfg.id!r} is not a registered gymnasium environment (e.g. {', '.join(known)}, ...)"
        ) from None


def _check_kwargs(cfg: EnvConfig, env_id: str, native: type[BatchedEnv] | None, kwargs: dict[str, Any]) -> None:
    """The env's own parameter checks (a native env checks without building: a maze of 101
    tiles takes a second to generate); a gymnasium env is built once."""
    try:
        if native is not None:
            native.check_kwargs(**kwargs)
        else:
            gym.make(env_id, **kwargs).close()
    except Exception as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if native is not None and isinstance(err, ValueError):
            raise ConfigError(f"env.{message}") from None  # the env names the parameter
        raise ConfigError(f"env.kwargs={dict(cfg.kwargs)}: {cfg.id} cannot be made with them: {message}") from None
