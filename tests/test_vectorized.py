"""Seeds trained as one batched computation (``pglab.algos.seed_stack``) and the
``hydra/launcher=vectorized`` sweeps built on it: every seed's numbers are its run alone's."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from conftest import make_config, run_py
from pglab import random_state
from pglab.algos.common import NonFiniteError, Update
from pglab.envs import make_vec_env, resolve_env
from pglab.experiment import build_agent
from pglab.folder_lock import hold
from pglab.job_dir import job_dir_name
from pglab.seed_group import STACKS
from test_reliability import start, stderr_lines, stop, summary, wait_for_steps

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)


def record(update: Update) -> dict[str, float]:
    """What an update hands the loop, as plain numbers."""
    return update.metrics | {"returns": update.episode_returns.tolist(), "lengths": update.episode_lengths.tolist()}


def alone(overrides: tuple[str, ...], seed: int, updates: int) -> list[dict]:
    """``updates`` updates of one seed's agent (``algo=a2c`` unless the overrides say), built as its run builds it."""
    cfg = make_config("algo=a2c", f"seed={seed}", *overrides)
    spec = resolve_env(cfg.env)
    random_state.seed_everything(seed)
    env = make_vec_env(spec, cfg.env.num_envs, seed=seed, device=CPU)
    agent = build_agent(cfg, env, CPU, spec)
    got: list[dict] = []

    def on_update(update: Update) -> bool:
        got.append(record(update))
        return len(got) < updates

    agent.learn(env, 10**9, on_update)
    return got


def stacked(overrides: tuple[str, ...], updates: int, nan_at: dict[int, int] | None = None) -> list[list]:
    """The same seeds' A2Cs as one stack: per seed its updates (an error ends a seed's list)."""
    agents, generators = [], []
    for seed in SEEDS:
        cfg = make_config("algo=a2c", f"seed={seed}", *overrides)
        spec = resolve_env(cfg.env)
        random_state.seed_everything(seed)
        env = make_vec_env(spec, cfg.env.num_envs, seed=seed, device=CPU)  # its run alone builds it first
        agent = build_agent(cfg, env, CPU, spec)
        agent.nan_at_step = (nan_at or {}).get(seed)
        agents.append(agent)
        generators.append(torch.Generator().manual_seed(0))
        generators[-1].set_state(torch.get_rng_state())
    stack_class = STACKS[type(agents[0])]
    env = stack_class.make_env(spec, cfg.env.num_envs, list(SEEDS), CPU)
    got: list[list] = [[] for _ in SEEDS]

    def on_update(s: int, update: Update | NonFiniteError) -> bool:
        got[s].append(update if isinstance(update, NonFiniteError) else record(update))
        return len(got[s]) < updates

    stack_class(agents, generators).learn(env, 10**9, on_update)
    return got


@pytest.mark.parametrize(
    "overrides",
    [
        ("env=mountaincar",),  # the tuned setting: 128 envs × 8 steps, both normalisers, episodes ending
        ("env=mountaincar_continuous", "env.num_envs=32"),  # a Gaussian policy
        ("algo=ppo", "env=mountaincar", "env.num_envs=128"),  # PPO's tuned setting: fast_tanh, 32 wide, Adam
        ("algo=ppo", "env=mountaincar_continuous"),  # 16 envs × 32 steps, minibatches of 128, annealed
        ("algo=reinforce", "env=mountaincar"),  # its tuned setting: 256 envs, baseline=mean, normalize_obs
        ("algo=reinforce", "env=mountaincar_continuous", "algo.baseline=value"),  # a critic with its own lr
        ("algo=reinforce", "env=cartpole", "env.num_envs=16"),  # episodes of different lengths per seed
        # epochs stopped per seed, inside an epoch of 4 minibatches
        ("algo=ppo", "env=mountaincar", "env.num_envs=128", "algo.batch_size=256", "algo.target_kl=0.002"),
    ],
)
def test_each_seed_of_a_stack_takes_the_updates_of_its_run_alone_bit_for_bit(overrides: tuple[str, ...]) -> None:
    updates = 28 if "algo=ppo" in overrides else 6 if "algo=reinforce" in overrides else 40
    together = stacked(overrides, updates)
    for s, seed in enumerate(SEEDS):
        assert together[s] == alone(overrides, seed, updates)
    assert any(u["returns"] for u in together[0]), "the budget must see episodes end"
    if "algo.target_kl=0.002" in overrides:  # the seeds stopped their epochs at different steps
        epochs = [[u["train/epochs"] for u in seed] for seed in together]
        assert len({tuple(e) for e in epochs}) > 1 and any(e % 1 for seed in epochs for e in seed)


def test_where_batched_and_single_matmuls_round_apart_a_stack_agrees_to_float32_rounding() -> None:
    """CartPole's 4-wide observations over 80-row updates: the gradients of the batched
    matmuls differ from a run alone's in their last bits (see pglab.algos.seed_stack)."""
    overrides = ("env=cartpole", "env.num_envs=16", "algo.normalize_advantage=true", "algo.anneal_lr=true")
    updates = 10
    together = stacked(overrides, updates)
    for s, seed in enumerate(SEEDS):
        for mine, theirs in zip(together[s], alone(overrides, seed, updates), strict=True):
            assert mine.pop("returns") == theirs.pop("returns") and mine.pop("lengths") == theirs.pop("lengths")
            assert mine == pytest.approx(theirs, rel=1e-4, abs=1e-6)


def test_a_seed_whose_loss_turns_nan_ends_alone_and_the_others_train_on() -> None:
    overrides = ("env=mountaincar", "env.num_envs=16")
    got = stacked(overrides, 12, nan_at={1: 5 * 16 * 8})
    assert len(got[1]) == 6 and isinstance(got[1][-1], NonFiniteError)
    assert "loss became non-finite" in str(got[1][-1])
    assert got[1][:5] == alone(overrides, 1, 5)
    for s in (0, 2):
        assert got[s] == alone(overrides, SEEDS[s], 12)


def jobs(sweep: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(sweep.iterdir()) if (p / "summary.json").exists()}


def rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


SWEEP = ("algo=a2c", "env=mountaincar", "seed=0,1,2", "total_steps=30000", "eval.every_steps=10000")
SWEEP += ("eval.episodes=4", "eval.final_episodes=10", "log_every_steps=4096")


@pytest.mark.slow
def test_a_vectorized_sweep_writes_every_job_as_its_run_alone(tmp_path: Path) -> None:
    one = run_py("-m", *SWEEP, "logger=wandb", f"hydra.sweep.dir={tmp_path / 'alone'}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    args = ("-m", "hydra/launcher=vectorized", *SWEEP, "logger=wandb", f"hydra.sweep.dir={tmp_path / 'stack'}")
    proc = run_py(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hydra/launcher=vectorized: jobs #0, #1, #2 train as one seed stack" in proc.stdout + proc.stderr
    a, b = jobs(tmp_path / "alone"), jobs(tmp_path / "stack")
    assert list(a) == list(b) and len(b) == 3  # the same folder names: a rerun finds them either way
    for name, run_dir in b.items():
        assert rows(run_dir) == rows(a[name])
        mine, theirs = summary(run_dir), summary(a[name])
        assert mine["status"] == "completed" and mine["final"] == theirs["final"]
        assert mine["solved_at_env_steps"] == theirs["solved_at_env_steps"]
        policy = torch.load(run_dir / "policy.pt", weights_only=True)["agent"]
        reference = torch.load(a[name] / "policy.pt", weights_only=True)["agent"]
        assert policy["nets"].keys() == reference["nets"].keys()
        assert all(torch.equal(policy["nets"][k], reference["nets"][k]) for k in policy["nets"])
        assert policy["optimizer"]["state"].keys() == reference["optimizer"]["state"].keys()
        assert (run_dir / ".hydra" / "config.yaml").exists()
        assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
        log = (run_dir / "run.log").read_text()
        seed = name.split("-")[2]
        assert f"a2c-mountaincar-{seed} |" in log  # its own progress lines, not its neighbours'
        assert all(f"a2c-mountaincar-s{k} |" not in log for k in range(3) if f"s{k}" != seed)
    assert (tmp_path / "stack" / "sweep_table.md").read_text() == (tmp_path / "alone" / "sweep_table.md").read_text()


@pytest.mark.slow
def test_a_busy_job_fails_alone_and_a_setting_that_does_not_stack_runs_job_by_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = ["algo=a2c", "env=mountaincar", "seed=1", "total_steps=5000", "eval.every_steps=10000", "logger=none"]
    busy = sweep / job_dir_name(overrides, "a2c", "mountaincar", 1)
    busy.mkdir(parents=True)
    args = ("-m", "hydra/launcher=vectorized", "algo=a2c,sb3_a2c", "env=mountaincar", "seed=0,1", *overrides[3:])
    with hold(busy):
        proc = run_py(*args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    why = "algo=sb3_a2c has no seed-stacked update (algo=reinforce, a2c and ppo have)"
    assert f"hydra/launcher=vectorized: {why}: its 2 job(s) run one at a time" in out
    assert f"pglab: {busy} is in use by a run that is still going" in out and "Traceback" not in out
    assert not (busy / "summary.json").exists()  # the folder's owner writes it, not this sweep
    done = {p.name.rsplit("-", 1)[0]: summary(p)["status"] for p in jobs(sweep).values()}
    assert done == {"a2c-mountaincar-s0": "completed", "sb3_a2c-mountaincar-s0": "completed",
                    "sb3_a2c-mountaincar-s1": "completed"}  # fmt: skip


@pytest.mark.slow
def test_sigterm_stops_every_job_of_a_stack_at_one_update_and_the_rerun_resumes_them(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=vectorized", "algo=a2c", "env=mountaincar", "seed=0,1,2", "total_steps=400000")
    args = (*args, "eval.every_steps=1000000", "log_every_steps=4096", "logger=none", f"hydra.sweep.dir={sweep}")
    proc = start(*args, cwd=tmp_path, out=tmp_path / "first")
    deadline_dir = None
    while deadline_dir is None:
        found = list(sweep.glob("a2c-mountaincar-s2-*")) if sweep.exists() else []
        deadline_dir = found[0] if found and (found[0] / "metrics.jsonl").exists() else None
        assert proc.poll() is None
    wait_for_steps(deadline_dir, 40000, proc)
    code, _ = stop(proc, signal.SIGTERM)
    assert code == 143
    lines = stderr_lines(tmp_path / "first")
    resume = "rerun the same command to resume"
    assert lines[-1] == f"pglab: interrupted by SIGTERM: 3 job(s) keep their checkpoints; {resume}"
    first = {name: summary(d) for name, d in jobs(sweep).items()}
    assert {s["status"] for s in first.values()} == {"interrupted"}
    assert len({s["checkpoint_env_steps"] for s in first.values()}) == 1  # all at one update
    rerun = run_py(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "train as one seed stack" in rerun.stdout + rerun.stderr
    for name, d in jobs(sweep).items():
        s = summary(d)
        assert s["status"] == "completed" and s["resumed_from_env_steps"] == first[name]["checkpoint_env_steps"]


@pytest.mark.slow
def test_a_stack_whose_losses_turn_nan_records_every_job_failed_with_one_line_each(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ("-m", "hydra/launcher=vectorized", "algo=a2c", "env=mountaincar", "seed=0,1", "total_steps=20000")
    proc = run_py(*args, "debug.nan_at_step=4096", "logger=none", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "pglab: 2 of 2 jobs failed" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    for run_dir in jobs(sweep).values():
        s = summary(run_dir)
        assert s["status"] == "failed" and s["error"] == "NonFiniteError: loss became non-finite (nan)"
        assert "NonFiniteError" in s["traceback"] and s["env_steps"] == 4096  # the update before the NaN one
        assert "pglab: run failed: loss became non-finite (nan)" in (run_dir / "run.log").read_text()
