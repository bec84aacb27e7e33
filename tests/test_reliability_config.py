"""Config values that pass the type checks but cannot run are refused before any work starts:
one line ``pglab: config error: <key>=<value>: ...`` and exit code 2, nothing written.

Most cases call :func:`pglab.cli.check_command_line` in-process (what ``run.py`` runs before
Hydra); two real ``run.py`` refusals and one real run at the largest seed cover the rest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import CONF, clean_env, make_config, run_py
from pglab import preflight as pf
from pglab.algos.common import network_bytes
from pglab.cli import check_command_line
from pglab.config import MAX_SEED, ConfigError
from pglab.envs import env_seeds, make_vec_env, resolve_env
from pglab.envs.rng import fold_seed
from pglab.experiment import build_agent
from pglab.models import fetched

GIB = 2**30
FREE = 20 * GIB  # the host memory the in-process refusals see (the real one varies per machine)


@pytest.fixture
def twenty_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pf, "host_available_memory", lambda: (FREE, "this machine has"))


@pytest.fixture(autouse=True)
def _restore_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests here change into empty folders; monkeypatch changes back afterwards."""
    monkeypatch.chdir(Path.cwd())


def refusal(argv: str, capsys: pytest.CaptureFixture[str], cwd: Path) -> str:
    """The one line ``check_command_line`` prints for ``argv`` (it must exit 2, write nothing)."""
    os.chdir(cwd)
    with pytest.raises(SystemExit) as info:
        check_command_line([*argv.split(), "logger=none"], CONF)
    out = capsys.readouterr()
    assert info.value.code == 2
    assert out.out == "" and "Traceback" not in out.err
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert list(cwd.iterdir()) == []  # no run folder, no outputs/
    return lines[0]


CASES = [
    ("algo.lr=1e300", "algo.lr=1e+300 is out of range: must be <= 1 (a learning rate above 1"),
    ("algo.value_lr=2", "algo.value_lr=2.0 is out of range: must be <= 1"),
    ("sft.lr=5", "sft.lr=5.0 is out of range: must be <= 1"),
    ("seed=4294967296", "seed=4294967296 is out of range: must be >= 0 and <= 4294967295"),
    ("seed=99999999999999999999", "seed=99999999999999999999 is out of range: must be >= 0 and <= 4294967295"),
    ("hardware.num_threads=30000", "hardware.num_threads=30000: this machine lets the run use "),
    ("algo=sb3_ppo algo.kwargs.batch_size=1", "algo.kwargs.batch_size=1: PPO normalises advantages per minibatch"),
    ("algo=sb3_ppo algo.kwargs.batch_size=abc", "algo.kwargs.batch_size='abc': SB3's PPO takes an integer here"),
    ("algo=sb3_ppo algo.kwargs.n_epochs=-1", "algo.kwargs.n_epochs=-1 is out of range: must be >= 1"),
    ("algo=sb3_ppo algo.kwargs.clip_range=0", "algo.kwargs.clip_range=0 is out of range: must be > 0"),
    ("algo=sb3_ppo +algo.kwargs.target_kl=yes", "algo.kwargs.target_kl='yes': SB3's PPO takes a number or null here"),
    (
        "algo=sb3_ppo +algo.kwargs.rollout_buffer_class=x",
        "algo.kwargs.rollout_buffer_class='x': SB3's PPO takes only null",
    ),
    ("algo=sb3_ppo algo.n_steps=1 env.num_envs=1", "algo.n_steps=1: PPO normalises advantages, which needs n_steps"),
    ("algo=sb3_a2c +algo.kwargs.use_rms_prop=maybe", "algo.kwargs.use_rms_prop='maybe': SB3's A2C takes true or false"),
    ("algo=sb3_a2c +algo.kwargs.rms_prop_eps=1", None),  # an int is a number
    (
        "hardware=slurm",
        "hardware=slurm: SLURM runs the jobs of a multirun, and without -m this one would run here; add -m",
    ),
    ("hydra/launcher=slurm", "hydra/launcher=slurm: SLURM runs the jobs of a multirun"),
    ("-m hardware=slurm hardware.num_threads=4 seed=0,1", "hardware.num_threads=4: a SLURM job gets hardware.cluster"),
    ("algo.impl=subprocess.Popen", "algo.impl='subprocess.Popen': not a pglab agent class (it must be a class in "),
    (
        "algo.impl=pglab.algos.common.Update",
        "algo.impl='pglab.algos.common.Update': not a pglab agent class",
    ),
    ("algo.impl=pglab.algos.common.gae", "algo.impl='pglab.algos.common.gae': not a pglab agent class"),
    ("algo.impl=pglab.algos.nothing.X", "algo.impl='pglab.algos.nothing.X' cannot be imported: No module named"),
]


@pytest.mark.parametrize(("argv", "line"), CASES, ids=[c[0] for c in CASES])
def test_values_that_would_crash_mid_run_are_refused_first(argv, line, capsys, tmp_path, twenty_gib) -> None:
    if line is None:
        os.chdir(tmp_path)
        check_command_line([*argv.split(), "logger=none"], CONF)  # accepted
        return
    printed = refusal(argv, capsys, tmp_path)
    assert printed.startswith(f"pglab: config error: {line}"), printed


def test_the_agent_contract_is_named_in_full(capsys, tmp_path) -> None:
    line = refusal("algo.impl=subprocess.Popen", capsys, tmp_path)
    contract = (
        "supports_compile, supports_sft, supports_pretrained, check_config, memory_need, learn, act, state_dict, "
        "load_state_dict"
    )
    assert f"pglab.algos.common.AgentClass: {contract}, compile, finetune, set_reference, export)" in line
    assert line.endswith("'subprocess' is outside pglab.algos, not imported")
    line = refusal("algo.impl=pglab.algos.common.Update", capsys, tmp_path)
    assert line.endswith(f"; it lacks {contract}, compile, finetune, set_reference, export")
    assert "; it lacks a class, supports_compile" in refusal("algo.impl=pglab.algos.common.gae", capsys, tmp_path)


MEMORY = [
    (
        "env=mountaincar algo=a2c env.num_envs=100000000",
        "env.num_envs=100000000: the rollout buffers, networks and activations need at least 795.0 GiB",
        "lower env.num_envs or algo.n_steps",
    ),
    (
        "algo.hidden_sizes=[100000,100000] ~tuned",  # the defaults: REINFORCE with its critic
        "algo.hidden_sizes=[100000, 100000]: the rollout buffers, networks and activations need at least 298.1 GiB",
        "lower algo.hidden_sizes",
    ),
    (  # REINFORCE keeps [time limit 4·101², 64 envs, 101² one-hot tiles] (twice, with its critic)
        "env=maze env.size=101",
        "env.num_envs=64: the rollout buffers, networks and activations need at least 198.5 GiB",
        "lower env.num_envs or env.max_episode_steps",
    ),
    ("env=maze env.size=101 env.num_envs=4096", "env.num_envs=4096: ", "need at least 12,705.0 GiB"),
    (
        "algo=sb3_ppo algo.hidden_sizes=[100000,100000]",
        "algo.hidden_sizes=[100000, 100000]: ",
        "lower algo.hidden_sizes",
    ),
]


@pytest.mark.parametrize(("argv", "start", "end"), MEMORY, ids=[m[0] for m in MEMORY])
def test_runs_that_cannot_fit_in_memory_are_refused(argv, start, end, capsys, tmp_path, twenty_gib) -> None:
    line = refusal(argv, capsys, tmp_path)
    assert line.startswith(f"pglab: config error: {start}"), line
    assert "this machine has 20.0 GiB available" in line and end in line


@pytest.mark.parametrize(
    "argv",
    ["env=maze env.size=101 algo=a2c", "env=maze env.size=101 algo=sb3_ppo", "env=maze env.size=31", "seed=4294967295"],
)
def test_what_fits_is_not_refused(argv: str, tmp_path: Path, twenty_gib) -> None:
    os.chdir(tmp_path)
    check_command_line([*argv.split(), "logger=none"], CONF)


TUNED = sorted(p.stem for p in (CONF / "tuned").glob("*.yaml"))


@pytest.mark.parametrize("tuned", TUNED)
def test_every_tuned_config_passes_the_machine_checks_here(tuned: str) -> None:
    """The real memory and cores of this machine: the tuned settings must all fit."""
    algo = next(a for a in ("sb3_ppo", "sb3_a2c", "reinforce", "a2c", "ppo") if tuned.startswith(a + "_"))
    env = tuned.removeprefix(algo + "_")
    policy = []
    if env == "dialogue_text":  # the env of a pretrained policy: the real one (CI fetches it)
        pytest.importorskip("transformers")
        if fetched("smollm2-135m") is None and not os.environ.get("CI"):
            pytest.skip("smollm2-135m is not fetched: python -m pglab.models fetch smollm2-135m")
        policy = ["policy=smollm2_135m"]
    cfg = make_config(f"algo={algo}", f"env={env}", *policy)
    assert cfg.tuned_file == tuned
    pf.preflight(cfg)


def test_the_default_sweeps_pass(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    for sweep in ("mountaincar_compare", "zoo_table"):
        check_command_line(["-m", f"sweep={sweep}", "logger=none"], CONF)


def test_a_memory_refusal_is_a_lower_bound_of_what_the_algorithms_allocate() -> None:
    """The estimate counts exactly the rollout storage and parameters the algorithms build."""
    for algo in ("reinforce", "a2c", "ppo", "sb3_ppo", "sb3_a2c"):
        cfg = make_config(f"algo={algo}", "env=maze", "env.num_envs=3", "algo.hidden_sizes=[32,16]")
        spec = resolve_env(cfg.env)
        env = make_vec_env(spec, 3, seed=0, device=torch.device("cpu"))
        agent = build_agent(cfg, env, torch.device("cpu"), spec)
        need = pf.algo_class(cfg.algo.impl).memory_need(
            cfg, spec, env.single_observation_space, env.single_action_space
        )
        if algo.startswith("sb3"):
            buf = agent.model.rollout_buffer
            arrays = ("observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs")
            rollout = sum(vars(buf)[a].nbytes for a in (*arrays, "advantages"))
            params = sum(p.numel() for p in agent.model.policy.parameters())
        else:
            rollout = sum(t.nbytes for t in agent.buffers(env).values() if t.ndim >= 2)  # the [T, N, ...] ones
            if algo == "ppo":  # and the frozen log-probs, advantages, returns and values, float32 [T, N] each
                rollout += 4 * cfg.algo.n_steps * 3 * 4
            params = sum(p.numel() for p in agent.params)
        optimizer = "rmsprop" if algo in ("a2c", "sb3_a2c") else "adam"
        assert (need.rollout, need.networks) == (rollout, network_bytes(params, optimizer)), algo
        env.close()


def test_cgroup_headroom_reads_v1_and_v2_files(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("700000\n")
    (tmp_path / "memory.stat").write_text("anon 500000\nfile 200000\n")
    assert pf._headroom(tmp_path, "memory.max", "memory.current", "file") == 1000000 - 700000 + 200000
    (tmp_path / "memory.max").write_text("max\n")
    assert pf._headroom(tmp_path, "memory.max", "memory.current", "file") is None
    (tmp_path / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")
    assert pf._headroom(tmp_path, "memory.limit_in_bytes", "memory.current", "total_cache") is None
    free = pf.host_available_memory()
    assert free is None or free[0] > 0


def test_num_threads_zero_is_torchs_default_and_the_cores_are_the_limit() -> None:
    pf.check_threads(make_config("hardware.num_threads=0").hardware)
    pf.check_threads(make_config(f"hardware.num_threads={pf.usable_cores()}").hardware)
    with pytest.raises(ConfigError, match=r"^hardware.num_threads=\d+: this machine lets the run use \d+ core"):
        pf.check_threads(make_config(f"hardware.num_threads={pf.usable_cores() + 1}").hardware)


def test_slurm_needs_sbatch_and_srun_on_path(capsys, tmp_path, monkeypatch) -> None:
    """Checked after every job's config (a config error is reported first), on the submitting machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    work = tmp_path / "work"
    work.mkdir()
    line = refusal("-m hardware=slurm seed=0,1", capsys, work)
    assert line == (
        "pglab: config error: hardware=slurm: no SLURM here (sbatch not found on PATH); "
        "run on a SLURM login node, or use hardware=cpu"
    )
    for command in ("sbatch", "srun"):
        (bin_dir / command).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / command).chmod(0o755)
    monkeypatch.chdir(work)
    check_command_line(["-m", "hardware=slurm_gpu", "seed=0,1", "logger=none"], CONF)  # a login node: accepted


def test_seeds_at_the_top_of_the_range_stay_in_every_librarys_range() -> None:
    for stream in ("train", "eval"):
        seeds = env_seeds(MAX_SEED, 16, stream)
        assert all(0 <= s <= MAX_SEED for s in seeds)
        np.random.seed(seeds[0])
    assert 0 <= fold_seed(MAX_SEED) <= MAX_SEED
    np.random.seed(MAX_SEED)
    torch.manual_seed(MAX_SEED)
    gym.spaces.Discrete(3).seed(MAX_SEED)


def test_the_largest_seed_runs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_py(
        f"seed={MAX_SEED}", "env=maze", "env.size=5", "total_steps=300", "eval.every_steps=300", "eval.episodes=2",
        "eval.final_episodes=2", "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == MAX_SEED and summary["status"] == "completed"


def test_a_refusal_by_run_py_is_one_line_fast_and_writes_nothing(tmp_path: Path) -> None:
    """The real memory of the machine: a trillion-parameter MLP fits nowhere."""
    env = clean_env()
    start = time.monotonic()
    proc = run_py("algo.hidden_sizes=[1000000,1000000]", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("pglab: config error: algo.hidden_sizes=[1000000, 1000000]: the rollout buffers")
    assert lines[0].endswith("lower algo.hidden_sizes")
    assert list(tmp_path.iterdir()) == []
