"""Language-model-style training on dialogue_lm: the transformer policy, k samples per prompt,
RLOO and group-normalised advantages, the KL penalty to the SFT model, the SFT stage."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from conftest import make_config
from pglab.algos.a2c import A2C
from pglab.algos.common import episode_terms
from pglab.algos.reference import k3_kl, k3_penalty
from pglab.algos.reinforce import Reinforce
from pglab.algos.sft import supervised_finetune
from pglab.config import Baseline, Config, KLEstimator, SFTConfig
from pglab.envs import make_vec_env, resolve_env
from pglab.envs.dialogue_lm import END_ID
from pglab.experiment import build_agent


def lm_config(*overrides: str) -> Config:
    return make_config("env=dialogue_lm", "env.num_envs=8", "algo.group_size=4", *overrides)


def build(cfg: Config) -> tuple[Reinforce, object]:
    torch.manual_seed(cfg.seed)
    env = make_vec_env(resolve_env(cfg.env), cfg.env.num_envs, seed=cfg.seed, device=torch.device("cpu"))
    return build_agent(cfg, env, torch.device("cpu")), env


def test_the_transformer_scores_whole_episodes_in_one_pass_as_step_by_step() -> None:
    agent, env = build(lm_config())
    demo = env.unwrapped.demonstrations(6, 0)
    one_pass = agent.policy.episode_log_probs(demo["obs"][0], demo["actions"])  # [T, N, V]
    for t in (0, 1, 5, 12):
        step = agent.policy.log_probs(demo["obs"][t])
        torch.testing.assert_close(one_pass[t], step, atol=2e-6, rtol=0)
    # a later token never changes an earlier step's distribution (causality)
    changed = demo["actions"].clone()
    changed[8:] = END_ID
    torch.testing.assert_close(agent.policy.episode_log_probs(demo["obs"][0], changed)[:8], one_pass[:8])


@torch.no_grad()
def test_a2c_rollouts_are_scored_one_pass_per_episode_piece_as_step_by_step() -> None:
    """Rollouts start mid-episode and restart inside: every piece is scored as its steps alone."""
    cfg = make_config("env=dialogue_lm", "algo=a2c", "env.num_envs=8")
    agent, env = build(cfg)
    for p in [*agent.policy.parameters(), *agent.value.parameters()]:
        p.add_(0.05 * torch.randn_like(p))
    obs, _ = env.reset()
    for _ in range(5):
        obs, *_ = env.step(torch.randint(0, len(env.unwrapped.writer.values[0]), (8,)))
    observations, actions, dones = [], [], []
    for _ in range(24):
        action = agent.policy.sample(obs)
        action[torch.rand(8) < 0.1] = END_ID
        observations.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        dones.append(terminated | truncated)
    o, a, d = torch.stack(observations), torch.stack(actions), torch.stack(dones)
    assert 8 < int(d.sum()) < 8 * 24 // 2
    step_by_step = torch.stack([agent.policy.log_probs(o[t]) for t in range(24)])
    torch.testing.assert_close(agent.policy.rollout_log_probs(o, a, d), step_by_step, atol=2e-6, rtol=0)
    values = torch.stack([agent.value(o[t]) for t in range(24)])
    torch.testing.assert_close(agent.value.rollout_values(o, a, d), values, atol=2e-6, rtol=0)


@torch.inference_mode()
def test_the_key_value_cache_gives_the_full_passs_logits_through_resets_and_clears() -> None:
    agent, env = build(lm_config("env.num_envs=16"))
    with torch.no_grad():
        for p in agent.policy.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the small init, so that positions matter
    sampler = agent.policy.sampler()
    obs, _ = env.reset()
    gen = torch.Generator().manual_seed(0)
    worst, restarts = 0.0, 0
    for t in range(120):
        if t == 50:
            sampler.reset()  # as after an update: every row is refilled from its observation
        cached, full = sampler.logits(obs), agent.policy.logits(obs)
        worst = max(worst, float((cached - full).abs().max()))
        actions = torch.multinomial(torch.softmax(full, -1), 1, generator=gen).squeeze(1)
        actions[torch.rand(16, generator=gen) < 0.1] = END_ID  # replies of many lengths
        obs, _, terminated, _, _ = env.step(actions)
        restarts += int(terminated.sum())
    assert worst < 1e-5 and restarts > 50


def test_token_sampling_follows_the_softmax() -> None:
    from pglab.nets.transformer import _draw

    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, -30.0])
    counts = torch.bincount(_draw(logits.expand(200_000, 5)), minlength=5)
    expected = torch.softmax(logits, 0) * 200_000
    chi2 = float(((counts[:4] - expected[:4]) ** 2 / expected[:4]).sum())
    assert chi2 < 16.3 and counts[4] == 0  # 3 degrees of freedom, p = 0.001


def test_rollouts_keep_token_ids_as_integers_and_anything_else_as_float32() -> None:
    import gymnasium as gym
    import numpy as np

    from pglab.algos.common import obs_dtype
    from pglab.envs.spaces import TokenSequence

    assert obs_dtype(TokenSequence(153, 18, 24)) == torch.int64
    assert obs_dtype(gym.spaces.Box(0, 10, (4,), dtype=np.int64)) == torch.float32  # a gymnasium env's, as handed over
    assert obs_dtype(gym.spaces.Box(-1.0, 1.0, (2,))) == torch.float32


def test_k_replies_are_sampled_per_prompt() -> None:
    agent, env = build(lm_config())
    env.unwrapped.set_group_size(4)
    buf = agent.buffers(env)
    for _ in range(3):  # batches after the first too (envs restart unevenly within a batch)
        T = agent.collect(env, buf)
        first = buf["obs"][0]
        assert torch.equal(first[0], first[3]) and torch.equal(first[4], first[7])
        assert not torch.equal(first[0], first[4])
        replies = buf["actions"][:T].t()
        assert len({tuple(r.tolist()) for r in replies[:4]}) > 1  # the same prompt, sampled replies differ


def test_rloo_advantages_match_hand_computed_values() -> None:
    agent, _ = build(lm_config("env.num_envs=6", "algo.group_size=3", "algo.baseline=leave_one_out"))
    returns = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    # each against the mean of the other two of its group: 1 - (2+6)/2, 2 - (1+6)/2, 6 - (1+2)/2, ...
    assert agent.group_advantages(returns).tolist() == [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]
    agent.cfg.baseline = Baseline.group_norm  # (R - mean) / sample std: group 1 mean 3, std sqrt(7)
    expected = [
        -2 / math.sqrt(7),
        -1 / math.sqrt(7),
        3 / math.sqrt(7),
        -1 / math.sqrt(3),
        -1 / math.sqrt(3),
        2 / math.sqrt(3),
    ]
    assert agent.group_advantages(returns).tolist() == pytest.approx(expected, abs=1e-5)
    agent.cfg.baseline = Baseline.mean
    assert agent.group_advantages(returns).tolist() == [-2.0, -1.0, 3.0, -1.0, -1.0, 2.0]


def test_every_step_of_a_reply_gets_its_episodes_group_advantage() -> None:
    agent, _ = build(lm_config("env.num_envs=4", "algo.group_size=2", "algo.baseline=leave_one_out"))
    # 4 replies of lengths 3, 1, 2, 3; judge scores 2, 0, -1, 3 at their last tokens; gamma = 1
    valid = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 0, 1]], dtype=torch.bool)
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [2.0, 0.0, 0.0, 3.0]])
    returns = rewards.flip(0).cumsum(0).flip(0)
    adv, values = agent.advantages(returns, valid, obs=torch.zeros(int(valid.sum()), 1))
    # RLOO with k = 2: 2 - 0 = 2, 0 - 2 = -2; -1 - 3 = -4, 3 - (-1) = 4; in obs[valid] order (t, then n)
    assert adv.tolist() == [2.0, -2.0, -4.0, 4.0, 2.0, -4.0, 4.0, 2.0, 4.0] and values is None


def test_the_kl_penalty_and_its_metric_match_step_by_step_computation() -> None:
    cfg = lm_config("algo.kl_coef=0.5", "algo.baseline=none", "algo.normalize_advantage=false")
    agent, env = build(cfg)
    env.unwrapped.set_group_size(4)
    agent.set_reference()
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    _, parts = agent.loss(buf, T)
    assert parts["train/kl"].item() == 0.0  # the policy is its reference
    with torch.no_grad():
        for p in agent.policy.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    _, parts = agent.loss(buf, T)
    valid = buf["valid"][:T]
    kl_sum = torch.zeros(env.num_envs)
    penalised = torch.where(valid, buf["rewards"][:T], 0.0).sum(0)  # gamma = 1: the return of each reply
    for t in range(T):
        pi = Categorical(logits=agent.policy.logits(buf["obs"][t]))
        ref = Categorical(logits=agent.reference.logits(buf["obs"][t]))
        step_kl = kl_divergence(pi, ref)
        log_ratio = pi.log_prob(buf["actions"][t]) - ref.log_prob(buf["actions"][t])
        kl_sum += torch.where(valid[t], step_kl, 0.0)
        penalised -= torch.where(valid[t], 0.5 * log_ratio, 0.0)
    assert parts["train/kl"].item() == pytest.approx(kl_sum.mean().item(), rel=1e-4)
    assert kl_sum.min() > 0
    terms = episode_terms(agent.policy, buf["obs"][:T], buf["actions"][:T], valid, agent.reference)
    rewards = buf["rewards"][:T].clone()
    rewards[valid] -= 0.5 * (terms.logp.detach() - terms.logp_ref)
    returns = agent.returns_to_go(buf, T, rewards)
    torch.testing.assert_close(returns[0], penalised, atol=1e-4, rtol=0)


def test_sft_fits_the_experts_replies() -> None:
    agent, env = build(lm_config())
    demos = env.unwrapped.demonstrations
    lines: list[dict[str, float]] = []
    supervised_finetune(agent.policy, demos, SFTConfig(batch_size=32, lr=3e-3, log_every=40), 120, lines.append)
    assert [line["sft/step"] for line in lines] == [40.0, 80.0, 120.0]
    assert lines[0]["sft/loss"] > 1.0 and lines[-1]["sft/loss"] < lines[0]["sft/loss"] - 0.5
    assert lines[-1]["sft/token_accuracy"] > 0.55  # the structure of a reply, if not yet every value


def test_the_reference_travels_with_the_checkpoint() -> None:
    agent, _ = build(lm_config("algo.kl_coef=0.1"))
    agent.set_reference()
    with torch.no_grad():
        next(agent.policy.parameters()).add_(1.0)
    state = agent.state_dict()
    fresh, _ = build(lm_config("algo.kl_coef=0.1", "seed=5"))
    fresh.load_state_dict(state)
    assert fresh.reference is not None
    for a, b in zip(fresh.reference.parameters(), agent.reference.parameters(), strict=True):
        assert torch.equal(a, b) and not a.requires_grad
    assert not torch.equal(next(fresh.reference.parameters()), next(fresh.policy.parameters()))


def test_a2c_trains_a_transformer_with_a_value_head_and_a_kl_penalty() -> None:
    cfg = make_config("env=dialogue_lm", "algo=a2c", "env.num_envs=4", "algo.n_steps=8", "algo.kl_coef=0.1")
    agent, env = build(cfg)
    assert isinstance(agent, A2C) and type(agent.value).__name__ == "TokenValue"
    agent.set_reference()
    updates = []
    agent.learn(env, 4 * 8 * 6, lambda u: updates.append(u) or True)
    assert len(updates) == 6 and all(math.isfinite(u.metrics["loss/value"]) for u in updates)
    with_kl = [u.metrics["train/kl"] for u in updates if "train/kl" in u.metrics]
    # replies written mostly by the reference itself at first, then the policy moves away
    assert with_kl and 0.0 <= with_kl[0] < 1e-2 and with_kl[-1] > with_kl[0]


def test_k3_matches_hand_computed_values_and_its_gradient() -> None:
    """k3 = r − log r − 1 with r = π_ref/π: e^-1 + 1 − 1, e + (−1) − 1, 0; d k3 / d log π = 1 − r."""
    logp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    logp_ref = torch.tensor([-2.0, -1.0, -0.5])
    k3 = k3_kl(logp, logp_ref)
    torch.testing.assert_close(k3, torch.tensor([math.exp(-1.0), math.e - 2.0, 0.0]))
    k3.sum().backward()
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([1.0 - math.exp(-1.0), 1.0 - math.e, 0.0]))
    assert k3_penalty(logp, logp_ref, 0.5, KLEstimator.k1) is None  # k1 puts it in the rewards
    assert k3_penalty(logp, None, 0.5, KLEstimator.k3) is None  # no reference
    penalty = k3_penalty(logp, logp_ref, 0.5, KLEstimator.k3)
    assert penalty is not None and penalty.item() == pytest.approx(k3.mean().item())


def test_the_k3_estimator_leaves_the_rewards_and_puts_beta_times_its_mean_into_the_loss() -> None:
    """REINFORCE with kl_estimator=k3: the policy loss is the unpenalised rewards' (baseline
    none: −mean(log π · return)), ``loss/kl`` is the mean k3 of the reply steps computed step
    by step, and the loss is policy − entropy bonus + β · loss/kl."""
    beta = 0.5
    cfg = lm_config(f"algo.kl_coef={beta}", "algo.kl_estimator=k3", "algo.baseline=none")
    cfg.algo.normalize_advantage = False
    agent, env = build(cfg)
    env.unwrapped.set_group_size(4)
    agent.set_reference()
    with torch.no_grad():
        for p in agent.policy.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    loss, parts = agent.loss(buf, T)
    valid = buf["valid"][:T]
    k3_sum, logp_return, steps = 0.0, 0.0, int(valid.sum())
    returns = agent.returns_to_go(buf, T)  # the env's rewards: nothing subtracted
    for t in range(T):
        pi = Categorical(logits=agent.policy.logits(buf["obs"][t]))
        ref = Categorical(logits=agent.reference.logits(buf["obs"][t]))
        a = buf["actions"][t]
        k3 = k3_kl(pi.log_prob(a), ref.log_prob(a))
        k3_sum += float(torch.where(valid[t], k3, 0.0).sum())
        logp_return += float(torch.where(valid[t], pi.log_prob(a) * returns[t], 0.0).sum())
    assert parts["loss/kl"].item() == pytest.approx(k3_sum / steps, rel=1e-4) and k3_sum > 0
    assert parts["loss/policy"].item() == pytest.approx(-logp_return / steps, rel=1e-4)
    expected = parts["loss/policy"] + cfg.algo.ent_coef * parts["loss/entropy"] + beta * parts["loss/kl"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("baseline", ["group_norm", "gae"])
def test_ppo_with_k3_keeps_the_advantages_and_adds_the_penalty_at_the_current_policy(baseline: str) -> None:
    """The frozen advantages are the unpenalised ones (k1 moves them), and every minibatch's
    loss has β times the mean k3 of its samples under the current policy."""
    from test_ppo import _token_agent

    agent, buf, T = _token_agent(baseline, "algo.kl_coef=0.5", "algo.kl_estimator=k3")
    agent.set_reference()
    with torch.no_grad():
        for p in agent.policy.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    freeze = agent.freeze if baseline == "gae" else lambda b: agent.freeze_episodes(b, T)
    frozen, _ = freeze(buf)
    agent.cfg.kl_coef = 0.0  # the same rollout, no penalty: the same advantages as k3's
    plain, _ = freeze(buf)
    torch.testing.assert_close(frozen.advantages, plain.advantages)
    agent.cfg.kl_coef, agent.cfg.kl_estimator = 0.5, KLEstimator.k1
    moved, _ = freeze(buf)
    assert not torch.allclose(moved.advantages, plain.advantages) and moved.logp_ref is None
    agent.cfg.kl_estimator = KLEstimator.k3
    assert frozen.logp_ref is not None and plain.logp_ref is None
    sel = agent.minibatches(T, 16, frozen.valid)[0]
    scored = agent.score(buf, T, sel, frozen.valid)
    loss, parts = agent.minibatch_loss(scored, frozen)
    terms, _, take = scored
    k3 = k3_kl(terms.logp, take(frozen.logp_ref)).mean()
    assert parts["loss/kl"].item() == pytest.approx(k3.item(), rel=1e-6) and k3.item() > 0
    without, _ = agent.minibatch_loss(scored, plain)
    assert (loss - without).item() == pytest.approx(0.5 * k3.item(), rel=1e-5)


def test_a2c_with_k3_adds_the_penalty_to_its_loss() -> None:
    cfg = make_config(
        "env=dialogue_lm", "algo=a2c", "env.num_envs=4", "algo.n_steps=8", "algo.kl_coef=0.1", "algo.kl_estimator=k3"
    )
    agent, env = build(cfg)
    agent.set_reference()
    with torch.no_grad():
        for p in agent.policy.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    buf = agent.buffers(env)
    agent.collect(env, env.reset()[0], buf)
    _, parts = agent.loss(buf)
    assert parts["loss/kl"].item() > 0  # train/kl waits for an episode to end
