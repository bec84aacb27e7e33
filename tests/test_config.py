"""Config composition and the one-line errors for bad input."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, compose_config, make_config, run_py
from pglab.config import Baseline, ConfigError, Device, Shaping, validate

GROUPS = ["env", "algo", "hardware", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x))
def test_every_option_of_every_group_composes(group: str, option: str) -> None:
    if group == "hardware" and option == "cuda" and not torch.cuda.is_available():
        cfg = validate(compose_config(f"{group}={option}"))
        assert cfg.hardware.device == Device.cuda  # composes; running it is refused (tested below)
        return
    cfg = validate(compose_config(f"{group}={option}"))
    node = getattr(cfg, group)
    if group in ("env", "algo"):
        assert node.name == option
    assert cfg.seed == 0


def test_defaults_are_the_documented_ones() -> None:
    cfg = validate(compose_config())
    assert (cfg.env.id, cfg.algo.name, cfg.hardware.device.value, cfg.logger.backend) == (
        "MountainCar-v0",
        "reinforce",
        "cpu",
        "wandb",
    )
    assert cfg.tuned_file == "reinforce_mountaincar"  # the pair's tuned file applies to the defaults too
    groups = validate(compose_config("~tuned"))  # the groups' own defaults
    assert groups.algo.baseline == Baseline.value
    assert groups.budget == groups.env.default_total_steps
    assert make_config("total_steps=1234").budget == 1234


def test_per_env_defaults_live_in_the_env_config() -> None:
    mc = make_config("env=mountaincar")
    cp = make_config("env=cartpole")
    assert (mc.env.id, mc.env.solved) == ("MountainCar-v0", {"return_mean": -110.0})
    assert (cp.env.id, cp.env.solved) == ("CartPole-v1", {"return_mean": 475.0})
    cont = make_config("env=mountaincar_continuous")
    assert (cont.env.id, cont.env.solved) == ("MountainCarContinuous-v0", {"return_mean": 90.0})
    lm = make_config("env=dialogue_lm")  # with conf/tuned/reinforce_dialogue_lm.yaml: RLOO, k = 4
    assert (lm.env.id, lm.sft_steps, lm.algo.baseline, lm.algo.group_size) == (
        "pglab/DialogueLM-v0",
        1500,
        Baseline.leave_one_out,
        4,
    )
    assert (lm.algo.gamma, lm.algo.kl_coef, lm.eval.deterministic) == (1.0, 0.05, False)
    assert (mc.sft_steps, mc.algo.kl_coef, mc.algo.group_size, mc.eval.deterministic) == (0, 0.0, None, True)


@pytest.mark.parametrize("env", ["mountaincar", "mountaincar_continuous"])
def test_reinforce_on_a_mountaincar_takes_its_tuned_file_and_tilde_tuned_gives_the_defaults(env: str) -> None:
    stated = OmegaConf.load(CONF / "tuned" / f"reinforce_{env}.yaml")
    tuned = make_config(f"env={env}")  # algo=reinforce is the default
    assert tuned.tuned_file == f"reinforce_{env}"
    assert (tuned.env.num_envs, tuned.budget, tuned.env.shaping) == (
        stated.env.num_envs,
        stated.total_steps,
        Shaping.none,  # the shaping stays opt-in
    )
    for key, value in stated.algo.items():
        actual = getattr(tuned.algo, str(key))
        assert (actual.value if isinstance(actual, Enum) else actual) == value, key
    assert tuned.algo.normalize_obs
    defaults = make_config(f"env={env}", "~tuned")
    assert (defaults.tuned_file, defaults.env.num_envs, defaults.algo.normalize_obs) == (None, 16, False)
    assert (defaults.algo.baseline, defaults.budget) == (Baseline.value, defaults.env.default_total_steps)
    shaped = make_config(f"env={env}", "env.shaping=energy")
    assert (shaped.env.shaping, shaped.env.shaping_scale) == (Shaping.energy, stated.env.shaping_scale)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algo.gamma=1.5", "algo.gamma=1.5 is out of range: must be >= 0 and <= 1"),
        ("env.num_envs=0", "env.num_envs=0 is out of range: must be >= 1"),
        ("total_steps=-5", "total_steps=-5 is out of range: must be >= 1"),
        ("algo.lr=0", "algo.lr=0.0 is out of range: must be > 0"),
        ("algo.hidden_sizes=[]", "algo.hidden_sizes=[]: must hold at least one element"),
        ("algo.hidden_sizes=[64,0]", "algo.hidden_sizes[1]=0 is out of range: must be >= 1"),
    ],
)
def test_range_errors_name_the_key_and_the_range(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(override))
    assert str(info.value) == expected


# Each bad command line: exit code 2, one line on stderr naming the key and what is
# allowed, and nothing written (no outputs/ folder appears).
BAD_INPUTS = [
    ("algo.lrr=1", "algo.lrr: unknown key; allowed keys: name, impl, hidden_sizes"),
    ("+algo.lrr=1", "algo.lrr: unknown key; allowed keys: name, impl, hidden_sizes"),
    ("env=mountaincar,cartpole", "env=mountaincar,cartpole: a comma-separated list is a sweep; add -m"),
    ("+env.kwargs.no_such_arg=1", "MountainCar-v0 cannot be made with them"),
    ("algo.baseline=leave_one_out env.num_envs=1", "algo.baseline=leave_one_out needs env.num_envs >= 2"),
    ("algo.lr=abc", "algo.lr=abc: Value 'abc' of type 'str' could not be converted to Float"),
    ("total_steps=-5", "total_steps=-5 is out of range: must be >= 1"),
    ("algo.gamma=1.5", "algo.gamma=1.5 is out of range: must be >= 0 and <= 1"),
    ("env.num_envs=0", "env.num_envs=0 is out of range: must be >= 1"),
    ("algo=foo", "algo=foo: unknown option; available: a2c, ppo, reinforce, sb3_a2c, sb3_ppo"),
    ("hardware.device=tpu", "hardware.device=tpu: Invalid value 'tpu', expected one of [cpu, cuda, auto]"),
    ("env.id=NoSuchEnv-v0", "env.id='NoSuchEnv-v0' is not a registered gymnasium environment"),
    ("env=maze env.size=8", "env.size=8: must be an odd number of tiles from 5 to 101"),
    ("env=maze env.size=3", "env.size=3: must be an odd number of tiles from 5 to 101"),  # the env's own check
    ("env=maze env.layout=spiral", "env.layout=spiral: Invalid value 'spiral', expected one of [fixed, random]"),
    ("env=dialogue env.error_rate=1.5", "env.error_rate=1.5: must be a probability in [0, 1]"),
    ("env=dialogue env.num_slots=0", "env.num_slots=0: must be an integer from 1 to 8"),
    ("env=dialogue env.num_slots=5", "env.max_turns=10: must be >= 2*num_slots+1 = 11"),
    ("env=maze +env.kwargs.walls=1", "Maze-v0 cannot be made with them: got an unexpected keyword argument 'walls'"),
    ("env=cartpole env.backend=torch", "env.backend=torch: CartPole-v1 has no torch implementation"),
    ("env.backend=jax", "env.backend=jax: Invalid value 'jax', expected one of [auto, torch, gymnasium]"),
    ("algo=sb3_a2c hardware.compile=true", "hardware.compile=true: algo=sb3_a2c does not support torch.compile"),
    ("env=dialogue_lm algo=sb3_ppo", "algo=sb3_ppo does not support env=dialogue_lm: SB3 baselines run on envs with"),
    ("algo.kl_coef=0.1", "algo.kl_coef=0.1: the KL penalty needs a reference policy, which the SFT stage makes"),
    ("env=dialogue_lm sft.steps=0", "algo.kl_coef=0.05: the KL penalty needs a reference policy"),
    ("env=cartpole sft.steps=10", "sft.steps=10: env=cartpole has no expert demonstrations to fine-tune on"),
    ("env=maze algo.group_size=4", "algo.group_size=4: env=maze cannot start several envs from the same state"),
    ("env=dialogue_lm algo.group_size=5", "algo.group_size=5: must divide env.num_envs=64"),
    ("env=dialogue_lm algo.baseline=group_norm algo.group_size=1", "algo.group_size=1: baseline=group_norm compares"),
    ("env=dialogue_lm algo.baseline=mean algo.group_size=1", "algo.group_size=1: baseline=mean compares"),
    ("env=dialogue_lm env.max_reply_tokens=10", "env.max_reply_tokens=10: must be >= 23, the expert's longest reply"),
    ("env=dialogue_lm algo.transformer.width=66", "algo.transformer.width=66 must be a multiple of"),
    ("sweep=zoo_table", "sweep=zoo_table: a named sweep runs its jobs with -m (--multirun); run: python run.py -m"),
    ("-m +sweep=zoo_table", "+sweep=zoo_table: sweep is a config group with a default (none); choose a named sweep"),
    ("tuned=null", "tuned=null: a config group takes one of its options; '~tuned' drops the group's default"),
    ("-m sweep=tune_a2c_cartpole hydra/sweeper=optuna_seeds hydra.sweeper.seeds=[]", "hydra.sweeper.seeds=[]: give"),
    ("-m sweep=tune_a2c_cartpole hydra/sweeper=optuna_seeds hydra.sweeper.seeds=[0,0]", "seeds=[0, 0]: give distinct"),
    (
        "-m sweep=tune_a2c_cartpole hydra/sweeper=optuna_seeds seed=4",
        "seed: hydra/sweeper=optuna_seeds runs every trial once per seed in hydra.sweeper.seeds (now [0, 1, 2])",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path: Path, override: str, message: str) -> None:
    proc = run_py(*override.split(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pglab: config error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_hardware_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_py("hardware=cuda", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
        and "hardware=cuda: no CUDA device is available" in proc.stderr
    )
    assert "use hardware=cpu or hardware=auto" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_bad_job_in_a_sweep_stops_the_sweep_before_any_job_runs(tmp_path: Path) -> None:
    proc = run_py("-m", "env=cartpole", "seed=0,1", "algo.gamma=0.9,1.5", "logger=none", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "pglab: config error: algo.gamma=1.5 is out of range" in proc.stderr
    assert "(job: seed=0 algo.gamma=1.5)" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_help_lists_the_groups_and_their_options(tmp_path: Path) -> None:
    proc = run_py("--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for group in GROUPS:
        assert f"{group}: {', '.join(options(group))}" in proc.stdout
    assert "schema" not in proc.stdout.split("== Current config")[0]  # schemas are not choices


def test_a_large_sweep_is_checked_on_a_cover_that_still_finds_every_bad_value(capsys) -> None:
    from hydra import initialize_config_dir

    from pglab.cli import check_command_line, job_overrides

    seeds = "seed=" + ",".join(str(i) for i in range(40))
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        jobs = job_overrides("config", ["env=cartpole,mountaincar", seeds, "algo.lr=0.1,0.2"], multirun=True)
    assert jobs is not None
    assert len(jobs) == 2 * (1 + 39 + 1)  # env combos × (first values + each other value once)
    assert {j[0] for j in jobs} == {"env=cartpole", "env=mountaincar"}
    assert {o for j in jobs for o in j if o.startswith("seed=")} == {f"seed={i}" for i in range(40)}
    with pytest.raises(SystemExit) as info:
        check_command_line(["-m", "env=cartpole,mountaincar", seeds, "algo.lr=0.1,-3"], CONF)
    assert info.value.code == 2
    assert "algo.lr=-3.0 is out of range: must be > 0" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_gpu_slurm_sweep_passes_preflight_on_a_machine_without_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs run on GPU nodes; the login node that submits them needs no GPU (but SLURM's
    commands, here stand-ins that do nothing: the check only looks them up)."""
    from pglab.cli import check_command_line

    for command in ("sbatch", "srun"):
        (tmp_path / command).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    # no SystemExit
    check_command_line(["-m", "hardware=slurm_gpu", "hardware.cluster.partition=gpu", "seed=0,1"], CONF)
    cfg = validate(compose_config("hardware=slurm_gpu"))
    assert cfg.hardware.device == Device.cuda and cfg.hardware.cluster.gpus_per_job == 1


def test_cluster_resources_are_checked_before_submission(capsys: pytest.CaptureFixture[str]) -> None:
    from pglab.cli import check_command_line

    with pytest.raises(SystemExit) as info:
        check_command_line(["-m", "hardware=slurm", "hardware.cluster.time_limit_min=0", "seed=0,1"], CONF)
    assert info.value.code == 2
    assert "hardware.cluster.time_limit_min=0 is out of range: must be >= 1" in capsys.readouterr().err
