"""The one preflight: every check of a job's config that can fail before any work starts.

:func:`preflight` resolves a validated config into a :class:`Plan` — the env
(:class:`~pglab.envs.registry.EnvSpec`), the algorithm class and the torch device — and
raises a one-line :class:`~pglab.config.ConfigError` on the first problem. The command
line runs it for every job of a sweep before any job starts (:mod:`pglab.cli`); each job
runs it again in its own process, where the plan is what the job builds from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from hydra.utils import get_class

from pglab.algos.common import AgentClass
from pglab.config import Config, ConfigError, Device, HardwareConfig
from pglab.envs import EnvSpec, resolve_env


@dataclass(frozen=True)
class Plan:
    """What a job builds: its env, its algorithm class, its device."""

    env: EnvSpec
    algo: AgentClass
    device: torch.device


def preflight(cfg: Config, check_device: bool = True) -> Plan:
    """Check ``cfg`` and resolve what it names; a one-line ConfigError on the first problem.

    ``check_device=False`` skips asking this machine for the device: the jobs of a SLURM
    sweep run on cluster nodes (with GPUs) while the sweep is submitted from a login node
    (often without); each job checks its own device when it starts.
    """
    env = resolve_env(cfg.env)
    algo = algo_class(cfg.algo.impl)
    algo.check_config(cfg, env)
    if cfg.hardware.compile and not algo.supports_compile:
        raise ConfigError(
            f"hardware.compile=true: algo={cfg.algo.name} does not support torch.compile "
            "(pglab's reinforce and a2c do); set hardware.compile=false"
        )
    if env.time_limit is None:
        raise ConfigError(f"env.max_episode_steps: {cfg.env.id} has no time limit; set one")
    if cfg.sft_steps > 0:
        if not env.capabilities.demonstrations:
            raise ConfigError(
                f"sft.steps={cfg.sft_steps}: env={cfg.env.name} has no expert demonstrations to fine-tune on "
                "(dialogue_lm has); set sft.steps=0"
            )
        if not algo.supports_sft:
            raise ConfigError(
                f"sft.steps={cfg.sft_steps}: algo={cfg.algo.name} has no SFT stage (pglab's reinforce and a2c "
                "have); set sft.steps=0"
            )
    device = resolve_device(cfg.hardware) if check_device else torch.device("cpu")
    return Plan(env, algo, device)


def algo_class(impl: str) -> AgentClass:
    """The class ``algo.impl`` names."""
    try:
        return cast(AgentClass, get_class(impl))
    except Exception as err:  # hydra wraps import errors in its own types
        raise ConfigError(f"algo.impl={impl!r} cannot be imported: {err}") from None


def resolve_device(cfg: HardwareConfig) -> torch.device:
    """The torch device of ``hardware.device``; a one-line ConfigError if CUDA is asked for but absent."""
    if cfg.device == Device.cuda:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigError(
                f"hardware=cuda: no CUDA device is available (torch {torch.__version__}, {build}); "
                "use hardware=cpu or hardware=auto"
            )
        return torch.device("cuda")
    if cfg.device == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")
