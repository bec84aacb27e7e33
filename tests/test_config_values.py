"""Every value has one place: the YAML files under ``conf/``.

The schemas in ``src/pglab/config.py`` hold types and ranges. A field that an option states
is ``MISSING`` in its schema, so every option of the group must give it (composition fails,
naming the key, if one forgets) and no dataclass default can disagree with what runs
through Hydra. The few fields that keep a default are ones no option states. The
exception: a sub-config shared by a group's options (``hardware.cluster``,
``algo.transformer``) keeps its defaults, and an option may change one (``slurm_gpu``'s
GPU) but never restate it.

Every option must name its schema (``/schema_*@_here_``), so a forgotten line fails here
rather than at run time, and the constructors of pglab's own envs (their defaults serve
``gymnasium.make``) must default to the values of ``conf/env/<env>.yaml``.

The checks are functions of a config directory, so that the tests can show each one
failing on a broken copy of ``conf/``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf

import pglab.envs  # noqa: F401  (registers pglab's envs with gymnasium)
from conftest import CONF
from pglab.config import (
    AlgoConfig,
    Config,
    ConfigError,
    EnvConfig,
    HardwareConfig,
    LoggerConfig,
    PolicyConfig,
    validate,
)
from pglab.envs.registry import backend_id

GROUP_SCHEMAS: dict[str, type] = {
    "env": EnvConfig,
    "algo": AlgoConfig,
    "hardware": HardwareConfig,
    "logger": LoggerConfig,
    "policy": PolicyConfig,
}
GROUP_PATHS = {"policy": "algo.policy"}  # a group placed elsewhere than at its name (@package)
SHARED_SUB_CONFIGS = ("hardware.cluster", "algo.transformer", "algo.policy.lora")  # an option may change these
NOT_ENV_PARAMETERS = {"num_envs", "max_episode_steps", "device", "seeds", "render_mode"}


def options(conf: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def compose_in(conf: Path, *overrides: str, hydra_node: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def named_schema(path: Path) -> type | None:
    """The schema class an option's defaults list names (``/schema_*@_here_``), or the one
    of the option of its group it extends (``- pretrained``); None if none."""
    for item in OmegaConf.load(path).get("defaults") or []:
        if isinstance(item, str) and item.startswith("/schema_") and item.endswith("@_here_"):
            node = ConfigStore.instance().load(item[1 : -len("@_here_")] + ".yaml").node
            return OmegaConf.get_type(node)
        if isinstance(item, str) and item != "_self_" and "/" not in item and (path.parent / f"{item}.yaml").exists():
            return named_schema(path.parent / f"{item}.yaml")
    return None


def group_path(group: str) -> str:
    return GROUP_PATHS.get(group, group)


def stated_values(path: Path) -> dict[str, Any]:
    """What a YAML file itself states, without its defaults list (and Hydra's node)."""
    raw = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(raw, dict)
    return {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING


def _plain(value: Any) -> Any:
    return value.name if isinstance(value, Enum) else value


def _restated(stated: dict[str, Any], schema: type, where: str, prefix: str) -> list[str]:
    problems = []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in stated.items():
        if key not in fields:
            continue  # an unknown key: composition refuses it (tested by test_every_option_names_its_schema)
        path, default = f"{prefix}{key}", field_default(fields[key])
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            problems += _restated(value, type(default), where, f"{path}.")
        elif default == MISSING:
            continue
        elif path in SHARED_SUB_CONFIGS or path.rsplit(".", 1)[0] in SHARED_SUB_CONFIGS:
            if value == _plain(default):
                problems.append(f"{where} restates {path}={value!r}, the schema's default")
        else:
            verb = "restates" if value == _plain(default) else "disagrees with"
            problems.append(
                f"{where}: {path}={value!r} {verb} the schema's default {_plain(default)!r}; "
                "make the field MISSING (the YAML gives it) or drop the value from the YAML"
            )
    return problems


def restated_defaults(conf: Path) -> list[str]:
    """Schema defaults that a YAML file restates (or contradicts), over every option and
    the primary config."""
    problems = _restated(stated_values(conf / "config.yaml"), Config, "conf/config.yaml", "")
    for group in GROUP_SCHEMAS:
        for option in options(conf, group):
            path = conf / group / f"{option}.yaml"
            schema = named_schema(path)
            if schema is not None:
                problems += _restated(
                    stated_values(path), schema, f"conf/{group}/{option}.yaml", f"{group_path(group)}."
                )
    return problems


def schema_problems(conf: Path, group: str, option: str) -> list[str]:
    """Why ``group=option`` does not compose into its own schema (empty: it does)."""
    cfg = compose_in(conf, f"{group}={option}", "~tuned")  # the option's own values, no tuned file's
    got = OmegaConf.get_type(OmegaConf.select(cfg, group_path(group)))
    named = named_schema(conf / group / f"{option}.yaml")
    if named is None or got is not named:
        return [f"conf/{group}/{option}.yaml composes into {got.__name__}: name the schema in its defaults list"]
    if not issubclass(got, GROUP_SCHEMAS[group]):
        return [f"conf/{group}/{option}.yaml names {got.__name__}, not a {GROUP_SCHEMAS[group].__name__}"]
    validate(cfg)  # every MISSING field given, every value in range
    return []


def env_constructor_drift(conf: Path, option: str) -> list[str]:
    """Where a native env's constructor (or time limit) defaults differ from conf/env/<option>.yaml."""
    cfg = validate(compose_in(conf, f"env={option}", "~tuned"))  # the env yaml's values, no (algo, env) file's
    own = cfg.env.typed_kwargs()
    module, name = gym.spec(backend_id(cfg.env)).vector_entry_point.split(":")  # its parameters unchecked
    cls = getattr(importlib.import_module(module), name)
    params = inspect.signature(cls).parameters
    problems = [f"{cls.__name__} has no parameter {k} (env.{k})" for k in own if k not in params]
    problems += [
        f"{cls.__name__}'s parameter {k} is no field of {type(cfg.env).__name__}"
        for k in params
        if k not in own and k not in NOT_ENV_PARAMETERS
    ]
    limit_params = inspect.signature(cls.time_limit).parameters
    for where, sig in ((cls.__name__, params), (f"{cls.__name__}.time_limit", limit_params)):
        for k, p in sig.items():
            if k in own and p.default is not inspect.Parameter.empty and p.default != own[k]:
                problems.append(f"{where}({k}={p.default!r}) but conf/env/{option}.yaml has {k}: {own[k]!r}")
    return problems


def native_env_options(conf: Path) -> list[str]:
    """Env options with parameters of their own (a schema subclass of EnvConfig)."""
    return [o for o in options(conf, "env") if named_schema(conf / "env" / f"{o}.yaml") not in (EnvConfig, None)]


def tuned_pairs(conf: Path) -> dict[str, tuple[str, str]]:
    """``conf/tuned/<algo>_<env>.yaml`` name -> (algo, env)."""
    pairs = {}
    envs = options(conf, "env")
    for name in options(conf, "tuned"):
        (algo,) = [a for a in options(conf, "algo") if name.startswith(a + "_") and name[len(a) + 1 :] in envs]
        pairs[name] = (algo, name[len(algo) + 1 :])
    return pairs


# --------------------------------------------------------------------------- the real conf/


def test_no_yaml_restates_a_schema_default() -> None:
    assert restated_defaults(CONF) == []


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUP_SCHEMAS for o in options(CONF, g)], ids=lambda x: str(x)
)
def test_every_option_names_its_schema(group: str, option: str) -> None:
    assert schema_problems(CONF, group, option) == []


def test_the_native_envs_are_the_ones_with_parameters() -> None:
    assert native_env_options(CONF) == [
        "dialogue", "dialogue_lm", "dialogue_text", "maze", "mountaincar", "mountaincar_continuous"
    ]  # fmt: skip


@pytest.mark.parametrize("option", native_env_options(CONF))
def test_env_constructor_defaults_are_the_yaml_values(option: str) -> None:
    assert env_constructor_drift(CONF, option) == []


@pytest.mark.parametrize(
    ("algo", "env"), [(a, e) for a in options(CONF, "algo") for e in options(CONF, "env")], ids=lambda x: str(x)
)
def test_tuned_file_names_the_tuned_file_that_was_applied(algo: str, env: str) -> None:
    """Every pair composes; ``tuned_file`` is the name of its tuned file, null without one."""
    name = f"{algo}_{env}"
    cfg = compose_in(CONF, f"algo={algo}", f"env={env}")
    expected = name if (CONF / "tuned" / f"{name}.yaml").exists() else None
    assert cfg.tuned_file == expected
    assert OmegaConf.get_type(cfg.algo) is named_schema(CONF / "algo" / f"{algo}.yaml")
    assert OmegaConf.get_type(cfg.env) is named_schema(CONF / "env" / f"{env}.yaml")
    if not (algo.startswith("sb3") and env == "dialogue_lm"):  # refused later, by the algorithm
        validate(cfg)


def test_every_tuned_file_is_for_an_existing_pair_and_sets_its_own_name() -> None:
    pairs = tuned_pairs(CONF)
    assert len(pairs) == len(options(CONF, "tuned")) > 0
    for name in pairs:
        assert stated_values(CONF / "tuned" / f"{name}.yaml")["tuned_file"] == name


def test_a_named_sweep_is_chosen_without_a_plus() -> None:
    for name in options(CONF, "sweep"):
        cfg = compose_in(CONF, f"sweep={name}", hydra_node=True)
        assert cfg.hydra.runtime.choices.sweep == name
        assert cfg.hydra.sweep.dir == f"outputs/sweeps/{name}"
    assert compose_in(CONF, hydra_node=True).hydra.runtime.choices.get("sweep") is None
    with pytest.raises(HydraException, match="Multiple values for sweep"):  # sweep is in the defaults list
        compose_in(CONF, "+sweep=zoo_table")


# --------------------------------------------------------------------------- the checks can fail


@pytest.fixture
def conf_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CONF, tmp_path / "conf"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def test_a_restated_or_contradicted_default_is_found(conf_copy: Path) -> None:
    _edit(conf_copy / "env" / "cartpole.yaml", "num_envs: 16\n", "num_envs: 16\nbackend: gymnasium\n")
    _edit(conf_copy / "hardware" / "slurm_gpu.yaml", "  mem_gb: 16\n", "  mem_gb: 16\n  time_limit_min: 240\n")
    assert restated_defaults(conf_copy) == [
        "conf/env/cartpole.yaml: env.backend='gymnasium' disagrees with the schema's default 'auto'; "
        "make the field MISSING (the YAML gives it) or drop the value from the YAML",
        "conf/hardware/slurm_gpu.yaml restates hardware.cluster.time_limit_min=240, the schema's default",
    ]


def test_a_value_an_option_forgets_fails_composition(conf_copy: Path) -> None:
    _edit(conf_copy / "algo" / "reinforce.yaml", "\nlr: 0.003\n", "\n")
    with pytest.raises(ConfigError, match=r"^algo\.lr: .*missing mandatory value: lr$"):
        schema_problems(conf_copy, "algo", "reinforce")


def test_a_forgotten_schema_line_is_found(conf_copy: Path) -> None:
    _edit(conf_copy / "algo" / "a2c.yaml", "  - /schema_algo_a2c@_here_\n", "")
    assert schema_problems(conf_copy, "algo", "a2c") == [
        "conf/algo/a2c.yaml composes into dict: name the schema in its defaults list"
    ]


def test_an_env_default_that_drifts_is_found(conf_copy: Path) -> None:
    _edit(conf_copy / "env" / "maze.yaml", "size: 11\n", "size: 13\n")
    assert env_constructor_drift(conf_copy, "maze") == [
        "MazeVectorEnv(size=11) but conf/env/maze.yaml has size: 13",
        "MazeVectorEnv.time_limit(size=11) but conf/env/maze.yaml has size: 13",
    ]
