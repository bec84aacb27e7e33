"""The one preflight: every check of a job's config that can fail before any work starts.

:func:`preflight` resolves a validated config into a :class:`Plan` — the env
(:class:`~pglab.envs.registry.EnvSpec`), the algorithm class and the torch device — and
raises a one-line :class:`~pglab.config.ConfigError` on the first problem. The command
line runs it for every job of a sweep before any job starts (:mod:`pglab.cli`); each job
runs it again in its own process, where the plan is what the job builds from.
"""

from __future__ import annotations

import importlib
import inspect
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

from pglab.algos.common import Agent, AgentClass, MemoryNeed
from pglab.config import Config, ConfigError, Device, HardwareConfig, ModelDtype
from pglab.envs import EnvSpec, make_vec_env, resolve_env
from pglab.models import MissingExtra, transformers_module
from pglab.video import renders_frames

# algo.impl names a class in one of these packages: importing a module can run any code,
# so nothing outside pglab's own algorithms is imported on a config's word.
ALGO_PACKAGES = ("pglab.algos",)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
GIB = 2**30


@dataclass(frozen=True)
class Plan:
    """What a job builds: its env, its algorithm class, its device."""

    env: EnvSpec
    algo: AgentClass
    device: torch.device


def check_solved(cfg: Config, env: EnvSpec) -> None:
    """``env.solved`` names only measures this env's evaluation reports (the return, the
    success rate, and the env's own ``episode_stats``), so no run trains before finding out."""
    reported = ("return_mean", "success_rate", *env.capabilities.episode_stats)
    for name in cfg.env.solved:
        if name not in reported:
            raise ConfigError(
                f"env.solved.{name}: env={cfg.env.name}'s evaluation does not report it; "
                f"a criterion there may name {', '.join(reported)}"
            )


def preflight(cfg: Config, check_device: bool = True) -> Plan:
    """Check ``cfg`` and resolve what it names; a one-line ConfigError on the first problem.

    ``check_device=False`` skips asking this machine for the device, its cores and its
    memory: the jobs of a SLURM sweep run on cluster nodes (with GPUs) while the sweep is
    submitted from a login node (often without); each job checks them when it starts.
    """
    env = resolve_env(cfg.env)
    algo = algo_class(cfg.algo.impl)
    check_policy(cfg, env, algo)
    algo.check_config(cfg, env)
    if cfg.hardware.compile and not algo.supports_compile:
        raise ConfigError(
            f"hardware.compile=true: algo={cfg.algo.name} does not support torch.compile "
            "(pglab's reinforce, a2c and ppo do); set hardware.compile=false"
        )
    check_solved(cfg, env)
    if cfg.eval.video and not renders_frames(env):
        raise ConfigError(
            f"eval.video=true: env={cfg.env.name} draws no frames (its episodes are text, in samples.jsonl); "
            "set eval.video=false"
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
    if check_device:  # what this machine has: where the job runs (a SLURM job: on its node)
        check_threads(cfg.hardware)
        check_memory(cfg, env, algo, device)
    return Plan(env, algo, device)


def check_policy(cfg: Config, env: EnvSpec, algo: AgentClass) -> None:
    """A pretrained language model reads and writes its own tokenizer's tokens: only an env
    that speaks them (``text_tokens``, with the same model as ``env.tokenizer``) fits it,
    and such an env fits no other policy."""
    policy = cfg.algo.policy
    text = env.capabilities.text_tokens
    if text and not policy.pretrained:
        raise ConfigError(
            f"env={cfg.env.name}: its tokens are a pretrained model's; choose a pretrained policy "
            "(policy=smollm2_135m, or policy=pretrained algo.policy.model=...)"
        )
    if not policy.pretrained:
        return
    if not text:
        raise ConfigError(
            f"algo.policy={policy.name}: a pretrained language model reads its own tokenizer's text; "
            f"env={cfg.env.name} is not text (use env=dialogue_text)"
        )
    if cfg.env.tokenizer != policy.model:
        raise ConfigError(
            f"env.tokenizer={cfg.env.tokenizer!r}: the env must write with the policy's tokenizer, "
            f"algo.policy.model={policy.model!r} (leave env.tokenizer as ${{algo.policy.model}})"
        )
    if not algo.supports_pretrained:
        raise ConfigError(
            f"algo={cfg.algo.name}: cannot train a pretrained language model (pglab's reinforce and ppo can)"
        )
    if cfg.hardware.compile:
        raise ConfigError("hardware.compile=true: not for a pretrained policy; set hardware.compile=false")
    if policy.lora.r == 0 and policy.dtype is not ModelDtype.float32:
        raise ConfigError(
            f"algo.policy.dtype={policy.dtype.value} with algo.policy.lora.r=0: Adam's small steps on "
            f"{policy.dtype.value} weights round away; train LoRA adapters (kept in float32) or use float32"
        )
    try:
        transformers_module()
    except MissingExtra as err:
        raise ConfigError(f"algo.policy={policy.name}: {err}") from None


def _methods(protocol: type) -> list[str]:
    """The public methods a Protocol declares."""
    return [n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")]


def agent_contract() -> list[str]:
    """What :func:`algo_class` requires of a class, from the Protocols themselves: AgentClass's
    attributes (the capability flags) and methods, and the methods of its instances (Agent)."""
    return [*inspect.get_annotations(AgentClass), *_methods(AgentClass), *_methods(Agent)]


def algo_class(impl: str) -> AgentClass:
    """The class ``algo.impl`` names, once it is known to be a pglab algorithm.

    ``algo.impl`` is configuration, not code: only a module of :data:`ALGO_PACKAGES` is
    imported (importing any other could run anything), and nothing of what it names is
    called unless it is a class that implements :class:`~pglab.algos.common.AgentClass`
    (the flags, ``check_config``, ``memory_need``) and :class:`~pglab.algos.common.Agent`'s
    methods. The members are looked up statically (no descriptor or metaclass code runs).
    """
    refusal = f"algo.impl={impl!r}: not a pglab agent class (it must be a class in {', '.join(ALGO_PACKAGES)}"
    refusal += f" that implements pglab.algos.common.AgentClass: {', '.join(agent_contract())})"
    module_name, _, name = impl.rpartition(".")
    if not _DOTTED.match(impl) or not module_name.startswith(tuple(f"{p}." for p in ALGO_PACKAGES)):
        raise ConfigError(f"{refusal}; {module_name or impl!r} is outside {', '.join(ALGO_PACKAGES)}, not imported")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"algo.impl={impl!r} cannot be imported: {err}") from None
    cls = vars(module).get(name)
    if cls is None:
        raise ConfigError(f"algo.impl={impl!r} cannot be imported: {module_name} has no {name}")
    missing = [] if inspect.isclass(cls) else ["a class"]
    for member in agent_contract():
        found = inspect.getattr_static(cls, member, None)
        if found is None or (member in inspect.get_annotations(AgentClass) and not isinstance(found, bool)):
            missing.append(member)
    if missing or not isinstance(cls, AgentClass):
        raise ConfigError(f"{refusal}; it lacks {', '.join(missing) or 'the contract'}")
    return cls


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


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a SLURM job's allocation, taskset),
    else the machine's count where the platform has no affinity call."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(cfg: HardwareConfig) -> None:
    """``hardware.num_threads`` within this process's cores (0: torch's default); torch's
    ``set_num_threads`` fails mid-run with a SystemError when OpenMP cannot make the threads."""
    cores = usable_cores()
    if cfg.num_threads > cores:
        raise ConfigError(
            f"hardware.num_threads={cfg.num_threads}: this machine lets the run use {cores} core(s); "
            f"use 1..{cores}, or 0 for torch's default (all of them)"
        )


_SPACES: dict[str, tuple[gym.Space, gym.Space]] = {}  # per env id and arguments: a sweep builds each once


def env_spaces(env: EnvSpec) -> tuple[gym.Space, gym.Space]:
    """A single env's observation and action spaces, from one env built on the CPU."""
    key = f"{env.id} {sorted(env.kwargs.items())!r}"
    if key not in _SPACES:
        built = make_vec_env(env, 1, seed=0, device=torch.device("cpu"))
        _SPACES[key] = (built.single_observation_space, built.single_action_space)
        built.close()
    return _SPACES[key]


def check_memory(cfg: Config, env: EnvSpec, algo: AgentClass, device: torch.device) -> None:
    """Refuse a run whose certain allocations (:class:`~pglab.algos.common.MemoryNeed`, the
    algorithm's own lower bound) exceed what this machine has free: such a run would spend
    its first minute allocating and then die mid-run, or be killed by the kernel."""
    need = algo.memory_need(cfg, env, *env_spaces(env))
    # on a GPU pglab's algorithms keep everything there, SB3 its rollout in numpy (host memory)
    host_need = need.total if device.type != "cuda" else (need.rollout if need.rollout_on_host else 0)
    for where, needed in (("host", host_need), ("device", need.total - host_need)):
        if needed == 0:
            continue
        free = host_available_memory() if where == "host" else cuda_free_memory(device)
        if free is not None and needed > free[0]:
            raise ConfigError(_memory_refusal(cfg, env, need, needed, free))


def _memory_refusal(cfg: Config, env: EnvSpec, need: MemoryNeed, needed: int, free: tuple[int, str]) -> str:
    """The one line: the key that dominates the need, the need and what the machine has."""
    if need.networks >= need.rollout + need.activations:
        key = "algo.transformer" if env.capabilities.token_observations else "algo.hidden_sizes"
        lower = key
    else:
        key, lower = need.rollout_keys[0], " or ".join(need.rollout_keys)
    value = operator.attrgetter(key)(cfg)
    parts = (
        f"rollout {need.rollout / GIB:,.1f} GiB: {need.detail}; networks with gradients and optimiser state "
        f"{need.networks / GIB:,.1f} GiB; activations {need.activations / GIB:,.1f} GiB"
    )
    return (
        f"{key}={value}: the rollout buffers, networks and activations need at least {needed / GIB:,.1f} GiB "
        f"({parts}), {free[1]} {free[0] / GIB:,.1f} GiB available; lower {lower}"
    )


def cuda_free_memory(device: torch.device) -> tuple[int, str]:
    """Free memory of the CUDA device, and its name for the message."""
    free, _ = torch.cuda.mem_get_info(device)
    return free, f"the GPU ({torch.cuda.get_device_name(device)}) has"


def host_available_memory() -> tuple[int, str] | None:
    """Memory a new allocation can get: ``MemAvailable`` + ``SwapFree`` of ``/proc/meminfo``,
    or less where this process's memory cgroup (a container, a SLURM job) leaves less; None
    where the platform does not say (no ``/proc``): then nothing is refused."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        free = (int(info["MemAvailable"].split()[0]) + int(info.get("SwapFree", "0 kB").split()[0])) * 1024
    except (OSError, KeyError, ValueError):
        return None
    headroom = cgroup_headroom()
    if headroom is not None and headroom < free:
        return headroom, "this job's memory cgroup has"
    return free, "this machine has"


# memory cgroup files: (mount, limit, usage, the reclaimable page cache's line in memory.stat)
_CGROUP_V2 = (Path("/sys/fs/cgroup"), "memory.max", "memory.current", "file")
_CGROUP_V1 = (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache")
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63


def cgroup_headroom() -> int | None:
    """``limit - (usage - page cache)`` of this process's memory cgroup and of each ancestor
    whose files are visible, the smallest; None without a limit (or without cgroups)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    headrooms = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files = _CGROUP_V2
        elif "memory" in controllers.split(","):
            files = _CGROUP_V1
        else:
            continue
        rel = Path(path.lstrip("/"))
        for folder in {files[0] / rel, *(files[0] / p for p in rel.parents)}:
            room = _headroom(folder, *files[1:])
            if room is not None:
                headrooms.append(room)
    return min(headrooms, default=None)


def _headroom(folder: Path, limit_file: str, usage_file: str, cache_key: str) -> int | None:
    try:
        limit_text = (folder / limit_file).read_text().strip()
        if limit_text == "max" or int(limit_text) >= _NO_LIMIT:
            return None
        usage = int((folder / usage_file).read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if " " in line)
    except (OSError, ValueError):
        return None
    return max(int(limit_text) - usage + int(stat.get(cache_key, 0)), 0)
