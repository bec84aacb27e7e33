"""The explicit contracts: every algorithm is an :class:`~pglab.algos.common.Agent`, every
env declares what it can do, and the run path asks no object what it happens to have."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_config
from pglab.algos.common import Agent, AgentClass
from pglab.envs import EnvCapabilities, make_vec_env, resolve_env
from pglab.experiment import build_agent
from pglab.preflight import algo_class

ALGOS = sorted(p.stem for p in (ROOT / "conf" / "algo").glob("*.yaml"))
PROTOCOL_METHODS = ("learn", "act", "state_dict", "load_state_dict", "compile", "finetune", "export")


def _parameters(function: object) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_satisfies_the_agent_protocol(algo: str) -> None:
    cfg = make_config(f"algo={algo}", "env=cartpole", "env.num_envs=2")
    cls = algo_class(cfg.algo.impl)
    for flag in ("supports_compile", "supports_sft"):
        assert isinstance(getattr(cls, flag), bool), (algo, flag)
    assert _parameters(cls.check_config) == _parameters(AgentClass.check_config), algo
    for name in PROTOCOL_METHODS:  # the same parameters, in the same order, as the contract
        assert _parameters(getattr(cls, name)) == _parameters(getattr(Agent, name)), (algo, name)
    env = make_vec_env(resolve_env(cfg.env), 2, seed=0, device=torch.device("cpu"))
    agent = build_agent(cfg, env, torch.device("cpu"))
    assert isinstance(agent, Agent)
    assert agent.env_steps == 0 and agent.group_size is None and agent.nan_at_step is None
    assert agent.act(env.reset()[0], deterministic=True).shape[0] == 2
    env.close()


def test_the_group_size_of_an_agent_reaches_the_env_through_the_run() -> None:
    cfg = make_config("env=dialogue_lm", "env.num_envs=8", "algo.group_size=4")
    spec = resolve_env(cfg.env)
    judge = ("correct", "wrong", "repeats", "overlong", "unfinished", "reply_length")
    assert spec.capabilities == EnvCapabilities(
        token_observations=True, shared_starts=True, demonstrations=True, episode_stats=judge
    )
    maze = EnvCapabilities(episode_stats=("optimality", "optimal_return"))
    assert resolve_env(make_config("env=maze").env).capabilities == maze
    assert resolve_env(make_config("env=cartpole").env).capabilities == EnvCapabilities()
    env = make_vec_env(spec, 8, seed=0, device=torch.device("cpu"))
    assert build_agent(cfg, env, torch.device("cpu"), spec).group_size == 4


RUN_PATH = ("experiment.py", "loop.py", "preflight.py", "evaluation.py", "run_dir.py", "hydra_job.py", "algos", "nets")


def test_no_capability_probes_on_the_run_path() -> None:
    """``hasattr``/``getattr`` with a literal name on the run path would be an implicit
    contract; the Protocols and declared capabilities say what an object offers."""
    src = ROOT / "src" / "pglab"
    files = [p for name in RUN_PATH for p in ((src / name).rglob("*.py") if (src / name).is_dir() else [src / name])]
    probes = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Name) and func.id in ("hasattr", "getattr"):
                probes.append(f"{Path(path).relative_to(src)} {func.id}({ast.unparse(node.args[1])})")
    # SB3's VecEnv interface forwards the attribute names it is handed (get_attr, env_method)
    assert sorted(probes) == ["algos/sb3.py getattr(attr_name)", "algos/sb3.py getattr(method_name)"]


def test_no_function_in_the_package_is_longer_than_a_screen() -> None:
    longest = []
    for path in (ROOT / "src" / "pglab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                longest.append((node.end_lineno - node.lineno + 1, f"{path.name}:{node.lineno} {node.name}"))
    assert max(longest)[0] < 80, sorted(longest)[-3:]


def test_the_algorithms_satisfy_the_contracts_statically(tmp_path: Path) -> None:
    """mypy checks ``contracts_typed.py``; a class without the contract, checked in the same
    run, shows that the check can fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("from pglab.algos.common import AgentClass\n\nX: list[AgentClass] = [int]\n")
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports"]
    cmd += ["--cache-dir", str(tmp_path / "cache"), str(ROOT / "tests" / "contracts_typed.py"), str(bad)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith(str(bad)), done.stdout
    assert 'incompatible type "type[int]"' in errors[0]


# which modules must never import which (docs/architecture.md draws the arrows)
RUN_SIDE = ("pglab.experiment", "pglab.loop", "pglab.run_dir", "pglab.run_logger", "pglab.evaluation")
ENTRY = ("pglab.cli", "pglab.hydra_job", "pglab.callbacks", "pglab.preflight")
NEVER = {
    "pglab.envs": ("pglab.algos", "pglab.nets", "pglab.report", *RUN_SIDE, *ENTRY),
    "pglab.nets": ("pglab.algos", "pglab.report", "pglab.envs.registry", "pglab.envs.make", *RUN_SIDE, *ENTRY),
    "pglab.algos": ("pglab.report", "hydra", *RUN_SIDE, *ENTRY),
    "pglab.report": ("pglab.algos", "pglab.envs", "pglab.nets", "torch", "hydra", *RUN_SIDE, *ENTRY),
    "pglab.experiment": ("hydra", "pglab.report", "pglab.cli", "pglab.hydra_job"),
    "pglab.loop": ("hydra", "pglab.report", "pglab.experiment", *ENTRY),
}
# the docs' generator reads committed result files: nothing that trains, runs or reports depends on it
for _owner in ("pglab.envs", "pglab.nets", "pglab.algos", "pglab.report", *RUN_SIDE, *ENTRY):
    NEVER[_owner] = (*NEVER.get(_owner, ()), "pglab.docgen")
HYDRA_RUNTIME = ("hydra.core.hydra_config", "hydra.types", "hydra.experimental", "hydra._internal", "hydra.compose")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def test_imports_flow_one_way() -> None:
    src = ROOT / "src"
    broken = []
    for path in (src / "pglab").rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        imports = _imports(path)
        for owner, never in NEVER.items():
            if module == owner or module.startswith(owner + "."):
                bad = [i for i in imports if any(i == n or i.startswith(n + ".") for n in never)]
                broken += [f"{module} imports {i}" for i in bad]
        hydra_runtime = [i for i in imports if i.startswith(HYDRA_RUNTIME) or i == "hydra.compose"]
        if hydra_runtime and module not in ("pglab.cli", "pglab.hydra_job", "pglab.callbacks"):
            broken.append(f"{module} uses Hydra's runtime: {hydra_runtime}")
        if "run" in imports:
            broken.append(f"{module} imports run.py")
    assert broken == []
