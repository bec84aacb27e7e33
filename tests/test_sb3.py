"""The Stable-Baselines3 baselines go through the same run, protocol, files and keys as ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_config, make_config, run_py
from pglab.config import validate
from test_run import read_metrics, reload_and_evaluate

TINY = (
    "env=cartpole",
    "total_steps=3000",
    "log_every_steps=500",
    "eval.every_steps=1500",
    "eval.episodes=2",
    "eval.final_episodes=4",
    "env.num_envs=4",
)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_sb3_baselines_write_the_same_files_and_keys_as_ours(tmp_path: Path) -> None:
    procs = {}
    for algo in ("reinforce", "a2c", "sb3_a2c", "sb3_ppo"):
        extra = ("algo.n_steps=64",) if algo == "sb3_ppo" else ()
        procs[algo] = run_py(
            f"algo={algo}", *TINY, *extra, "logger=wandb", f"hydra.run.dir={tmp_path / algo}", cwd=tmp_path
        )
        assert procs[algo].returncode == 0, procs[algo].stderr[-2000:]
    ours = summary_of(tmp_path / "a2c")
    for algo in ("sb3_a2c", "sb3_ppo"):
        run_dir = tmp_path / algo
        summary = summary_of(run_dir)
        assert summary["status"] == "completed"
        assert set(summary) == set(ours)
        assert set(summary["final"]) == set(ours["final"])
        assert summary["env_steps"] >= 3000
        rows = read_metrics(run_dir)
        train = [r for r in rows if "loss/policy" in r]
        assert train, "no training lines"
        ours_keys = {k for r in read_metrics(tmp_path / "a2c") if "loss/policy" in r for k in r}
        # SB3 records the explained variance of its critic (our PPO logs it too, our A2C does not)
        extra = {"train/explained_variance"}
        extra |= {"train/approx_kl", "train/clip_fraction"} if algo == "sb3_ppo" else set()
        assert set(train[-1]) == ours_keys | extra, (algo, set(train[-1]) ^ ours_keys)
        assert rows[-1]["eval/return_mean"] == summary["final"]["return_mean"]
        assert (run_dir / "policy.pt").exists() and (run_dir / "sb3_model.zip").exists()
        assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    # the same evaluation envs and seeds for every algorithm with the same run seed
    seeds = {algo: summary_of(tmp_path / algo)["eval_seeds"] for algo in procs}
    assert len({tuple(s) for s in seeds.values()}) == 1, seeds


@pytest.mark.slow
def test_sb3_with_vecnormalize_saves_its_statistics_and_evaluates_with_them(tmp_path: Path) -> None:
    from stable_baselines3 import A2C as SB3A2C
    from stable_baselines3.common.vec_env import VecNormalize

    from pglab.envs import env_seeds, make_vec_env, resolve_env
    from pglab.evaluation import evaluate

    cfg = make_config("algo=sb3_a2c", *TINY, "algo.normalize=true")
    final = run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert reload_and_evaluate(cfg, ckpt) == final
    # the statistics matter: other ones give another evaluation
    other = dict(
        ckpt["agent"],
        obs_rms={
            "mean": ckpt["agent"]["obs_rms"]["mean"] + 1.0,
            "var": ckpt["agent"]["obs_rms"]["var"] * 4,
            "count": torch.tensor(1.0),
        },
    )
    assert reload_and_evaluate(cfg, {**ckpt, "agent": other}) != final
    # SB3's own files reproduce the same evaluation through SB3's own API
    model = SB3A2C.load(tmp_path / "sb3_model.zip")
    stats = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv=_dummy_venv())
    stats.training, stats.norm_reward = False, False
    n = min(cfg.eval.num_envs, cfg.eval.final_episodes)
    env = make_vec_env(resolve_env(cfg.env), n, seed=cfg.seed, device=torch.device("cpu"), stream="eval")

    def act(obs: torch.Tensor) -> torch.Tensor:
        actions, _ = model.predict(stats.normalize_obs(obs.numpy()), deterministic=True)
        return torch.as_tensor(actions)

    result = evaluate(act, env, cfg.eval.final_episodes, env_seeds(cfg.seed, n, "eval"), cfg.env.success_when)
    assert result.metrics()["eval/return_mean"] == final


def _dummy_venv():
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: gym.make("CartPole-v1")])


def run(cfg, run_dir):
    from pglab.experiment import run as run_experiment

    return run_experiment(cfg, run_dir)


def test_zoo_settings_are_picked_for_the_pair_and_the_command_line_wins() -> None:
    ppo = validate(compose_config("algo=sb3_ppo", "env=mountaincar"))
    assert (ppo.env.num_envs, ppo.total_steps, ppo.algo.n_steps, ppo.algo.gae_lambda) == (16, 1_000_000, 16, 0.98)
    assert ppo.algo.normalize and ppo.algo.ent_coef == 0.0 and ppo.algo.kwargs["n_epochs"] == 4
    a2c = validate(compose_config("algo=sb3_a2c", "env=mountaincar"))
    assert (a2c.env.num_envs, a2c.total_steps, a2c.algo.normalize) == (16, 1_000_000, True)
    cont = validate(compose_config("algo=sb3_ppo", "env=mountaincar_continuous"))
    assert (cont.env.num_envs, cont.total_steps, cont.algo.gamma, cont.algo.log_std_init) == (1, 20000, 0.9999, -3.29)
    assert cont.algo.kwargs["use_sde"] is True
    # the command line wins over the tuned file
    over = validate(
        compose_config("algo=sb3_ppo", "env=mountaincar", "env.num_envs=4", "algo.n_steps=32", "total_steps=5000")
    )
    assert (over.env.num_envs, over.algo.n_steps, over.total_steps) == (4, 32, 5000)
    # a pair without a tuned file keeps the plain defaults
    plain = validate(compose_config("algo=sb3_ppo", "env=cartpole", "~tuned"))
    assert plain.algo.n_steps == 2048


def test_unknown_sb3_arguments_are_a_config_error(tmp_path: Path) -> None:
    proc = run_py("algo=sb3_ppo", "+algo.kwargs.n_epoch=3", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "algo.kwargs.n_epoch: not an argument of SB3's PPO; allowed: batch_size" in proc.stderr
