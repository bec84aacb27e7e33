"""PPO: the clipped objective and its gradient by hand, value clipping, minibatches, the
target-KL stop, group baselines, learning, checkpoints and resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import RUN_PY, clean_env, make_config, run_py
from pglab.algos.common import MemoryNeed, collect_episodes, episode_buffers
from pglab.algos.ppo import (
    PPO,
    clipped_surrogate,
    columns_per_minibatch,
    explained_variance,
    minibatch_indices,
    value_loss,
)
from pglab.config import Config, ConfigError
from pglab.envs import make_vec_env, resolve_env
from pglab.experiment import run
from pglab.preflight import env_spaces, preflight
from pglab.run_dir import CHECKPOINT
from test_run import read_metrics, reload_and_evaluate

# ratios ρ = exp(logp - logp_old) and advantages, ε = 0.2: inside the range, clipped above
# and below with either sign of the advantage
RATIOS = [1.1, 1.5, 0.5, 1.5, 0.5, 0.9]
ADV = [2.0, 1.0, 1.0, -1.0, -1.0, -2.0]
# min(ρA, clip(ρ)A) per sample, and its derivative in logp (dρ/dlogp = ρ; 0 where the clipped term is the min)
OBJECTIVE = [2.2, 1.2, 0.5, -1.5, -0.8, -1.8]
D_OBJECTIVE = [2.2, 0.0, 0.5, -1.5, 0.0, -1.8]


def test_the_clipped_objective_and_its_gradient_by_hand() -> None:
    logp_old = torch.tensor([-1.0, -0.5, -2.0, -0.3, -1.2, -0.7])
    logp = (logp_old + torch.tensor(RATIOS).log()).requires_grad_(True)
    s = clipped_surrogate(logp, logp_old, torch.tensor(ADV), 0.2)
    assert s.loss.item() == pytest.approx(-sum(OBJECTIVE) / 6)
    s.loss.backward()
    assert logp.grad.tolist() == pytest.approx([-d / 6 for d in D_OBJECTIVE])
    assert s.clip_fraction.item() == pytest.approx(4 / 6)  # every ratio but 1.1 and 0.9 is outside [0.8, 1.2]
    kl = sum((r - 1) - math.log(r) for r in RATIOS) / 6
    assert s.approx_kl.item() == pytest.approx(kl) and kl > 0


def test_at_the_collecting_policy_the_objective_is_the_policy_gradient() -> None:
    logp_old = torch.tensor([-1.0, -2.0, -0.5])
    logp = logp_old.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -3.0, 0.5])
    s = clipped_surrogate(logp, logp_old, adv, 0.1)
    s.loss.backward()
    assert logp.grad.tolist() == pytest.approx((-adv / 3).tolist())  # ratio 1: -mean(A · grad log π)
    assert s.clip_fraction.item() == 0.0 and s.approx_kl.item() == 0.0


def test_value_clipping_takes_the_pessimistic_error() -> None:
    values = torch.tensor([1.0, 0.1, -0.5], requires_grad=True)
    old = torch.zeros(3)
    returns = torch.tensor([2.0, -1.0, 0.0])
    # unclipped errors 1, 1.21, 0.25; V clipped to ±0.2: 0.2, 0.1, -0.2 -> errors 3.24, 1.21, 0.04
    assert value_loss(values, old, returns, None).item() == pytest.approx((1 + 1.21 + 0.25) / 3)
    clipped = value_loss(values, old, returns, 0.2)
    assert clipped.item() == pytest.approx((3.24 + 1.21 + 0.25) / 3)
    clipped.backward()
    # sample 0: the clipped error is the max and V_clip is saturated: no gradient; others 2(V - R)/3
    assert values.grad.tolist() == pytest.approx([0.0, 2 * 1.1 / 3, 2 * -0.5 / 3])


def test_explained_variance() -> None:
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target).item() == 1.0
    assert explained_variance(torch.full((4,), 2.5), target).item() == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(4)).item())


def test_minibatches_cover_every_sample_once_per_epoch() -> None:
    torch.manual_seed(0)
    batches = minibatch_indices(10, 4, torch.device("cpu"))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = minibatch_indices(10, 4, torch.device("cpu"))
    assert torch.cat(again).tolist() != torch.cat(batches).tolist()  # a fresh shuffle each epoch


def _agent_and_rollout(*overrides: str) -> tuple[PPO, dict[str, torch.Tensor]]:
    cfg = make_config("algo=ppo", "env=cartpole", "~tuned", "env.num_envs=4", "algo.n_steps=8", *overrides)
    env = make_vec_env(resolve_env(cfg.env), cfg.env.num_envs, seed=0, device=torch.device("cpu"))
    agent = PPO(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 500, env)
    buf = agent.buffers(env)
    obs, _ = env.reset()
    agent.collect(env, obs, buf)
    return agent, buf


def _optimizer_steps(agent: PPO) -> int:
    return int(next(iter(agent.optimizer.state.values()))["step"])


def test_an_update_takes_n_epochs_times_the_minibatches_of_steps() -> None:
    torch.manual_seed(0)
    agent, buf = _agent_and_rollout("algo.n_epochs=3", "algo.batch_size=10")
    metrics = agent.update(buf)
    assert _optimizer_steps(agent) == 3 * 4  # 32 samples in minibatches of 10, 10, 10, 2
    assert metrics["train/epochs"] == 3.0
    names = {"loss/policy", "loss/value", "loss/entropy", "train/approx_kl", "train/clip_fraction"}
    assert names | {"train/grad_norm", "train/explained_variance"} <= set(metrics)
    assert 0.0 <= metrics["train/clip_fraction"] <= 1.0 and metrics["train/approx_kl"] >= 0.0


def test_the_target_kl_stop_ends_the_update_at_the_first_minibatch_past_it() -> None:
    torch.manual_seed(0)
    # at the first minibatch the policy is the collecting one (KL exactly 0): one step is taken;
    # after it, a 0.1 learning rate leaves the KL far above 1.5 · 1e-6
    agent, buf = _agent_and_rollout("algo.n_epochs=5", "algo.batch_size=8", "algo.target_kl=1e-6", "algo.lr=0.1")
    metrics = agent.update(buf)
    assert _optimizer_steps(agent) == 1
    assert metrics["train/epochs"] == 0.25  # one of the epoch's four minibatches
    assert metrics["train/approx_kl"] > 1.5e-6
    free, buf = _agent_and_rollout("algo.n_epochs=5", "algo.batch_size=8", "algo.lr=0.1")
    assert free.update(buf)["train/epochs"] == 5.0 and _optimizer_steps(free) == 20


def test_group_baselines_score_whole_episodes_by_columns_and_have_no_critic() -> None:
    cfg = make_config(
        "algo=ppo", "env=dialogue_lm", "algo.baseline=group_norm", "algo.group_size=4", "algo.batch_size=48"
    )
    plan = preflight(cfg)
    env = make_vec_env(plan.env, 16, seed=0, device=torch.device("cpu"))
    agent = PPO(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), 24, env)
    assert agent.value is None and "value" not in agent.nets and agent.group_size == 4
    valid = torch.ones(12, 16, dtype=torch.bool)
    cols = agent.minibatches(12, 16, valid)  # 48 samples of 12-step episodes: 4 columns each
    assert [len(c) for c in cols] == [4, 4, 4, 4] and sorted(torch.cat(cols).tolist()) == list(range(16))


def _token_agent(baseline: str, *overrides: str) -> tuple[PPO, dict[str, torch.Tensor], int]:
    """A dialogue_lm agent (16 envs, groups of 4 or a transformer critic) and one collected
    rollout: whole episodes for a group baseline, ``n_steps`` = 24 steps for GAE."""
    extra = ("algo.group_size=null", "algo.n_steps=24") if baseline == "gae" else ()
    cfg = make_config("algo=ppo", "env=dialogue_lm", f"algo.baseline={baseline}", "env.num_envs=16", *extra, *overrides)
    plan = preflight(cfg)
    env = make_vec_env(plan.env, 16, seed=0, device=torch.device("cpu"))
    max_steps = int(plan.env.time_limit or 0)
    agent = PPO(cfg.algo, env.single_observation_space, env.single_action_space, torch.device("cpu"), max_steps, env)
    if baseline == "gae":
        buf = agent.buffers(env)
        agent.collect(env, env.reset()[0], buf)
        return agent, buf, 24
    buf = episode_buffers(env, max_steps, torch.device("cpu"), with_final_obs=False)
    T, _ = collect_episodes(env, agent._sampler, buf, max_steps, with_final_obs=False)
    return agent, buf, T


@pytest.mark.parametrize("path", ["flat steps", "transformer columns", "group episodes"])
def test_the_first_minibatch_sees_the_collecting_policy(path: str) -> None:
    """Before the first step the networks are the collecting ones, so every minibatch's
    samples must line up with their frozen values: ratio 1 (approx KL 0, nothing clipped)
    and V = V_old. A minibatch that picked its frozen values in another order would not."""
    torch.manual_seed(0)
    if path == "flat steps":
        agent, buf = _agent_and_rollout("algo.batch_size=10")
        T = buf["rewards"].shape[0]
        frozen, _ = agent.freeze(buf)
    else:
        agent, buf, T = _token_agent("gae" if path == "transformer columns" else "group_norm")
        frozen, _ = agent.freeze(buf) if path == "transformer columns" else agent.freeze_episodes(buf, T)
    n = buf["rewards"].shape[1]
    batches = agent.minibatches(T, n, frozen.valid)
    assert len(batches) > 1
    for sel in batches:
        terms, values, take = agent.score(buf, T, sel, frozen.valid)
        torch.testing.assert_close(terms.logp, take(frozen.logp_old), atol=1e-6, rtol=0)
        if frozen.values_old is not None:
            assert values is not None
            torch.testing.assert_close(values, take(frozen.values_old), atol=1e-6, rtol=0)
        _, parts = agent.minibatch_loss((terms, values, take), frozen)
        assert abs(float(parts["train/approx_kl"])) < 1e-6 and float(parts["train/clip_fraction"]) == 0.0
    shuffled = torch.roll(frozen.logp_old, 1, dims=1)  # the same values, misaligned by one env
    terms, _, take = agent.score(buf, T, batches[0], frozen.valid)
    assert (terms.logp - take(shuffled)).abs().max() > 1e-3


@pytest.mark.parametrize("baseline", ["group_norm", "leave_one_out"])
def test_group_advantages_go_on_every_step_of_each_episode(baseline: str) -> None:
    """freeze_episodes by hand: each episode's reward on its last step (where the judge
    puts it), γ = 0.9, so its return is γ^(length-1)·r; GRPO's (R - group mean) / (group
    sample std + 1e-6) or RLOO's k/(k-1)·(R - group mean) on every valid step of the
    episode, 0 log-probability on the steps after it ends."""
    torch.manual_seed(0)
    agent, buf, T = _token_agent(baseline, "algo.gamma=0.9")
    valid = buf["valid"][:T]
    lengths = valid.sum(0)
    assert len(set(lengths.tolist())) > 1  # replies of different lengths
    r = torch.tensor([1.0, 3.0, 0.0, 2.0, 5.0, 5.0, 5.0, 1.0, 0.0, 0.0, 4.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    buf["rewards"].zero_()
    buf["rewards"][lengths - 1, torch.arange(16)] = r
    frozen, _ = agent.freeze_episodes(buf, T)
    groups = (r * 0.9 ** (lengths - 1).float()).view(4, 4)
    centred = groups - groups.mean(1, keepdim=True)
    if baseline == "group_norm":
        expected = (centred / (groups.std(1, keepdim=True) + 1e-6)).flatten()
    else:
        expected = (centred * 4 / 3).flatten()
    assert frozen.valid is not None and torch.equal(frozen.valid, valid)
    for i in range(16):
        steps = valid[:, i]
        torch.testing.assert_close(frozen.advantages[steps, i], expected[i].expand(int(steps.sum())))
        assert (frozen.logp_old[~steps, i] == 0).all() and (frozen.logp_old[steps, i] < 0).all()
    assert frozen.returns is None and frozen.values_old is None


def _memory_need(cfg: Config) -> MemoryNeed:
    env = preflight(cfg).env
    return PPO.memory_need(cfg, env, *env_spaces(env))


def test_the_memory_need_counts_whole_columns_and_the_freeze_pass() -> None:
    """Group baselines on CartPole (an MLP): a minibatch of batch_size 48 over 500-step
    episodes takes one whole column (500 rows), which the gradient-free freeze pass over all
    500 × 64 rows outweighs; 32,000 takes all 64 columns, whose backward pass outweighs it;
    with GAE a large rollout's freeze pass outweighs a minibatch's."""
    group = ("algo.baseline=group_norm", "algo.normalize_advantage=false", "algo.batch_size=48")
    cfg = make_config("algo=ppo", "env=cartpole", "~tuned", "env.num_envs=64", *group, "algo.hidden_sizes=[64,64]")
    need = _memory_need(cfg)
    assert columns_per_minibatch(48, 500) == 1 and columns_per_minibatch(1200, 500) == 2
    assert need.activations == 500 * 64 * 64 * 4 * 2  # the freeze pass: 64 columns, the widest layer in and out
    wide = make_config(
        "algo=ppo", "env=cartpole", "~tuned", "env.num_envs=64", *group[:2], "algo.batch_size=32000",
        "algo.hidden_sizes=[64,64,64]",
    )  # fmt: skip
    assert _memory_need(wide).activations == 64 * 500 * 192 * 4  # all 64 columns in one minibatch, 3 layers kept
    cfg = make_config("algo=ppo", "env=cartpole", "~tuned", "env.num_envs=256", "algo.n_steps=512")
    assert _memory_need(cfg).activations == 512 * 256 * 64 * 4 * 2  # > 64 rows × 128 × 4 × 2 networks


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("algo.group_size=4",), "algo.group_size=4: groups belong to the group baselines"),
        (
            ("algo.baseline=group_norm", "algo.normalize_advantage=false", "algo.normalize_obs=true"),
            "algo.baseline=group_norm compares raw returns",
        ),
        (("algo.batch_size=1",), "algo.batch_size=1: advantages are standardised per minibatch"),
        (
            ("algo.baseline=leave_one_out", "algo.normalize_advantage=true"),
            "algo.baseline=leave_one_out compares each episode with its group already",
        ),
        (
            ("algo.baseline=group_norm", "algo.normalize_advantage=false", "algo.clip_range_vf=0.2"),
            "algo.clip_range_vf=0.2: algo.baseline=group_norm has no critic",
        ),
    ],
)
def test_config_errors_are_one_line(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        preflight(make_config("algo=ppo", "env=cartpole", *overrides))


@pytest.mark.slow
def test_ppo_learns_cartpole_and_its_checkpoint_reproduces_the_final_evaluation(tmp_path: Path) -> None:
    cfg = make_config("algo=ppo", "env=cartpole", "seed=0", "eval.every_steps=1000000")
    assert cfg.tuned_file == "ppo_cartpole"
    final = run(cfg, tmp_path)
    assert final >= 475, final
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] == math.ceil(cfg.budget / 2048) * 2048  # whole rollouts of 8 envs x 256 steps
    rows = [r for r in read_metrics(tmp_path) if "loss/policy" in r]
    assert {"train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/epochs"} <= set(rows[-1])
    ckpt = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert reload_and_evaluate(cfg, ckpt) == final


@pytest.mark.slow
def test_ppo_continuous_actions_learn_with_a_gaussian_policy(tmp_path: Path) -> None:
    cfg = make_config("algo=ppo", "env=mountaincar_continuous", "seed=0", "eval.every_steps=1000000")
    assert cfg.tuned_file == "ppo_mountaincar_continuous"
    final = run(cfg, tmp_path)
    assert final >= 90, final
    assert "policy.log_std" in torch.load(tmp_path / "policy.pt", weights_only=True)["agent"]["nets"]


@pytest.mark.slow
def test_a_killed_ppo_run_resumes_with_the_same_update_count(tmp_path: Path) -> None:
    """kill -9 after a checkpoint; the rerun resumes from it and ends with the optimiser steps
    and logged steps of an uninterrupted run."""
    args = ["algo=ppo", "env=cartpole", "~tuned", "env.num_envs=4", "algo.n_steps=64", "algo.batch_size=64"]
    args += ["algo.n_epochs=2", "total_steps=40960", "log_every_steps=256", "checkpoint_every_steps=2048"]
    args += ["eval.every_steps=100000", "eval.final_episodes=5", "logger=none", "hardware.num_threads=1"]
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while (
        not (run_dir / CHECKPOINT).exists() or torch.load(run_dir / CHECKPOINT, weights_only=True)["env_steps"] < 8192
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before a checkpoint"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = run_py(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_from_env_steps"] >= 8192
    whole = tmp_path / "whole"
    assert run_py(*args, f"hydra.run.dir={whole}", cwd=tmp_path).returncode == 0

    def steps(folder: Path) -> tuple[int, list[int]]:
        ckpt = torch.load(folder / "policy.pt", weights_only=True)["agent"]["optimizer"]["state"]
        logged = sorted({r["env_steps"] for r in read_metrics(folder) if "loss/policy" in r})
        return int(ckpt[0]["step"]), logged

    # 160 updates of 256 env steps, 2 epochs of 4 minibatches each
    assert steps(run_dir) == steps(whole) and steps(whole)[0] == 160 * 2 * 4


@pytest.mark.parametrize("baseline", ["group_norm", "gae"])
def test_ppo_on_token_replies_logs_its_kl_to_the_reference(tmp_path: Path, baseline: str) -> None:
    """GRPO-style (no critic, whole replies in groups of 4) and with a transformer critic:
    both train on dialogue_lm with the KL in the reward and log train/kl next to PPO's own."""
    extra = ("algo.group_size=null",) if baseline == "gae" else ()
    cfg = make_config(
        "algo=ppo", "env=dialogue_lm", f"algo.baseline={baseline}", *extra, "env.num_envs=16", "algo.n_steps=24",
        "sft.steps=20", "total_steps=1500", "log_every_steps=100", "eval.every_steps=100000",
        "eval.episodes=8", "eval.final_episodes=8", "eval.num_envs=8",
    )  # fmt: skip
    run(cfg, tmp_path)
    rows = [r for r in read_metrics(tmp_path) if "loss/policy" in r]
    assert rows and all(r["train/kl"] >= 0 and 0 <= r["train/clip_fraction"] <= 1 for r in rows)
    assert ("loss/value" in rows[-1]) == (baseline == "gae")
    agent = torch.load(tmp_path / "policy.pt", weights_only=True)["agent"]
    assert "reference" in agent and any(k.startswith("value.") for k in agent["nets"]) == (baseline == "gae")
