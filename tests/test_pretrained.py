"""A pretrained language model as the policy, on a tiny random Llama built in the test:
the cache against full passes and ``generate``, the whole-reply log-probabilities, the
reference with adapters off, the losses by hand, checkpoints, the KL leash, the text env,
and the one-line refusals. One slow test takes the real SmolLM2."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from conftest import make_config, run_py
from pglab.algos.reference import group_advantages, k3_kl
from pglab.config import Config, ConfigError, PolicyConfig
from pglab.envs import make_vec_env, resolve_env
from pglab.envs.booking_text import judge_text
from pglab.envs.dialogue_text import DialogueTextVectorEnv
from pglab.envs.make import share_starts
from pglab.evaluation import Evaluator
from pglab.experiment import build_agent, run
from pglab.models import fetched
from pglab.nets.pretrained import AdaptersOff, PretrainedPolicy, load_model
from pglab.preflight import preflight
from tiny_lm import tiny_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "llama")


def text_config(model_dir: Path, *overrides: str) -> Config:
    return make_config(
        "env=dialogue_text",
        "policy=pretrained",
        f"algo.policy.model={model_dir}",
        "env.num_envs=8",
        "env.max_reply_tokens=8",
        "logger=none",
        *overrides,
    )


def setup(cfg: Config, num_envs: int | None = None):
    spec = resolve_env(cfg.env)
    env = make_vec_env(spec, num_envs or cfg.env.num_envs, seed=cfg.seed, device=CPU)
    agent = build_agent(cfg, env, CPU, spec)
    if agent.group_size is not None:
        share_starts(spec, env, agent.group_size)
    agent.set_reference()
    return env, agent


def without_lora(policy: PolicyConfig) -> PolicyConfig:
    return dataclasses.replace(policy, lora=dataclasses.replace(policy.lora, r=0))


def jolt_adapters(policy: PretrainedPolicy, scale: float = 0.3) -> None:
    """LoRA's B matrices start at zero (the adapters change nothing): give them weights."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


# --------------------------------------------------------------------------- the env


def test_requests_arrive_through_the_chat_template_left_padded_and_shared_by_groups(model_dir: Path) -> None:
    env = DialogueTextVectorEnv(num_envs=8, tokenizer=str(model_dir), seeds=list(range(8)))
    env.set_group_size(4)
    obs, _ = env.reset()
    p, tok = env.prompt_width, env.tokenizer
    assert obs.shape == (8, p + 32 + 1) and bool((obs[:, -1] == 0).all())
    for i in range(8):
        ids = obs[i, :p][obs[i, :p] != env.pad_id].tolist()
        assert ids == env.chat(env.requests[i])  # left padding, then the whole chat prompt
        assert tok.decode(ids).endswith("<|im_start|> assistant")
    assert [r.message for r in env.requests[:4]] == [env.requests[0].message] * 4
    assert env.requests[4].message == env.requests[7].message != env.requests[0].message
    assert env.pad_id == tok.pad_token_id != tok.eos_token_id


def test_the_reply_is_judged_as_text_when_it_ends_or_is_cut(model_dir: Path) -> None:
    env = DialogueTextVectorEnv(num_envs=2, tokenizer=str(model_dir), max_reply_tokens=16, seeds=[3, 4])
    env.reset()
    tok, request = env.tokenizer, env.requests[0]
    words = f"sure i booked {request.values[0]} food in the {request.values[1]} , {request.values[2]} price ."
    reply = tok(words, add_special_tokens=False)["input_ids"] + [env.eos_id]
    assert len(reply) <= 16
    filler = tok("table", add_special_tokens=False)["input_ids"][0]
    for token in reply:
        _, reward, terminated, _, info = env.step(torch.tensor([token, filler]))
    expected = judge_text(tok.decode(reply[:-1]), request, finished=True)
    assert expected.success and float(reward[0]) == expected.score == 3.0 and bool(terminated[0])
    assert bool(info["success"][0]) and float(info["episode_stats"]["correct"][0]) == 3.0
    for _ in range(16 - len(reply)):  # env 1 writes "table" until it is cut at 16 tokens
        _, reward, terminated, _, info = env.step(torch.tensor([filler, filler]))
    cut = judge_text(" ".join(["table"] * 16), env.requests[1], finished=False)
    assert bool(terminated[1]) and float(reward[1]) == cut.score and cut.unfinished
    assert float(info["episode_stats"]["unfinished"][1]) == 1.0 and float(info["episode_stats"]["repeats"][1]) == 15.0


# --------------------------------------------------------------------------- the policy's passes


@pytest.mark.parametrize("lora", [0, 4])
def test_the_cache_gives_the_full_passes_logits_through_staggered_restarts(model_dir: Path, lora: int) -> None:
    cfg = text_config(model_dir, f"algo.policy.lora.r={lora}", "algo.group_size=null")
    env, agent = setup(cfg, num_envs=5)
    policy = agent.policy
    if lora:
        jolt_adapters(policy)
    sampler = policy.sampler()
    obs, _ = env.reset()
    torch.manual_seed(0)
    restarts, worst = 0, 0.0
    steps = 2 * policy.context + 10  # past the cache's limit: it is rebuilt on the way
    for t in range(steps):
        with torch.no_grad():
            cached = sampler.logits(obs)
            full = policy.logits(obs)
        worst = max(worst, float((cached - full).abs().max()))
        action = torch.distributions.Categorical(logits=full).sample()
        end_here = torch.tensor([(t + i) % (3 + i) == 0 for i in range(5)])  # each env its own rhythm
        action = torch.where(end_here, env.eos_id, action)
        obs, _, terminated, truncated, _ = env.step(action)
        restarts += int((terminated | truncated).sum())
    assert restarts > 3 * 5 and worst < 1e-4


def test_greedy_sampling_through_the_cache_writes_what_generate_writes(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo.group_size=null", "env.max_reply_tokens=10", "algo.policy.lora.r=0")
    env, agent = setup(cfg, num_envs=3)
    policy, sampler = agent.policy, agent.policy.sampler()
    obs, _ = env.reset()
    prompts = [obs[i, : env.prompt_width][obs[i, : env.prompt_width] != env.pad_id] for i in range(3)]
    assert len({len(p) for p in prompts}) > 1  # rows of several padded widths
    written = []
    for _ in range(6):
        with torch.no_grad():
            action = sampler.logits(obs).argmax(dim=-1)
        written.append(action)
        obs, *_ = env.step(action)
    for i, prompt in enumerate(prompts):
        out = policy.model.generate(
            prompt[None], attention_mask=torch.ones_like(prompt[None]), max_new_tokens=6, do_sample=False
        )
        mine = torch.stack(written)[:, i].tolist()
        theirs = out[0, len(prompt) :].tolist()
        if env.eos_id in theirs:  # the env restarts after an end of sequence; generate stops
            theirs = theirs[: theirs.index(env.eos_id) + 1]
        assert mine[: len(theirs)] == theirs


def test_whole_replies_are_scored_in_one_pass_as_step_by_step(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo.group_size=4")
    env, agent = setup(cfg)
    jolt_adapters(agent.policy)
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    obs, actions, valid = buf["obs"][:T], buf["actions"][:T], buf["valid"][:T]
    with torch.no_grad():
        one_pass = agent.policy.episode_log_probs(obs[0], actions)  # [T, N, V]
        for t in range(T):
            step = agent.policy.log_probs(obs[t])
            assert torch.allclose(one_pass[t][valid[t]], step[valid[t]], atol=1e-5)
    assert int(valid.sum()) > 8


def test_the_reference_is_the_base_model_with_the_adapters_off(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo.group_size=4", "algo.policy.lora.r=4")
    env, agent = setup(cfg)
    jolt_adapters(agent.policy)
    assert isinstance(agent.reference, AdaptersOff)
    assert agent.reference.state_dict() == {} and list(agent.reference.parameters()) == []
    plain_cfg = without_lora(cfg.algo.policy)
    base = PretrainedPolicy(load_model(plain_cfg), plain_cfg, env.single_observation_space)
    obs, _ = env.reset()
    with torch.no_grad():
        ref, plain, tuned = agent.reference.logits(obs), base.logits(obs), agent.policy.logits(obs)
    assert torch.allclose(ref, plain, atol=1e-5)
    assert float((tuned - plain).abs().max()) > 0.1  # the adapters change the policy, not the reference


# --------------------------------------------------------------------------- the losses by hand


@pytest.mark.parametrize(("baseline", "estimator"), [("leave_one_out", "k1"), ("group_norm", "k3")])
def test_the_loss_on_the_tiny_model_equals_a_hand_computation(model_dir: Path, baseline: str, estimator: str) -> None:
    beta = 0.2
    cfg = text_config(
        model_dir, "algo.group_size=4", f"algo.baseline={baseline}", f"algo.kl_estimator={estimator}",
        f"algo.kl_coef={beta}", "algo.ent_coef=0.0",
    )  # fmt: skip
    env, agent = setup(cfg)
    jolt_adapters(agent.policy)
    buf = agent.buffers(env)
    T = agent.collect(env, buf)
    valid = buf["valid"][:T]
    loss, parts = agent.loss(buf, T)
    with torch.no_grad():
        logp_all = agent.policy.episode_log_probs(buf["obs"][0], buf["actions"][:T])
        with agent.policy.model.disable_adapter():
            ref_all = agent.policy.episode_log_probs(buf["obs"][0], buf["actions"][:T])
    a = buf["actions"][:T, :, None]
    logp, logp_ref = logp_all.gather(2, a).squeeze(2), ref_all.gather(2, a).squeeze(2)  # [T, N]
    score = (buf["rewards"][:T] * valid).sum(dim=0)  # the judge's score, at each reply's end
    log_ratio = ((logp - logp_ref) * valid).sum(dim=0)
    episode = score - beta * log_ratio if estimator == "k1" else score
    adv = group_advantages(episode, 4, baseline)
    expected = -(logp[valid] * adv[None, :].expand(T, -1)[valid]).mean()
    if estimator == "k3":
        expected = expected + beta * k3_kl(logp[valid], logp_ref[valid]).mean()
    kl_exact = (logp_all.exp() * (logp_all - ref_all)).sum(dim=2)
    assert float(parts["train/kl"]) == pytest.approx(float((kl_exact * valid).sum(dim=0).mean()), rel=1e-4)
    scale = float((logp[valid] * adv[None, :].expand(T, -1)[valid]).abs().mean())  # the loss is a cancellation
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5 * scale)


# --------------------------------------------------------------------------- runs


def test_a_checkpoint_holds_the_adapters_and_reproduces_the_evaluation(model_dir: Path, tmp_path: Path) -> None:
    cfg = text_config(model_dir, "algo.group_size=4", "algo.lr=0.01")
    env, agent = setup(cfg)
    buf = agent.buffers(env)
    for _ in range(2):
        agent.update(buf, agent.collect(env, buf))
    torch.save(agent.state_dict(), tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["policy"] and all("lora_" in k for k in state["policy"]) and state["reference"] == {}
    _, restored = setup(cfg)
    restored.load_state_dict(state)

    def evaluate(a) -> list[float]:
        eval_env = make_vec_env(resolve_env(cfg.env), 6, seed=0, device=CPU, stream="eval")
        result = Evaluator(a.act, eval_env, list(range(6)), resolve_env(cfg.env).success_when, False, 0, CPU)(12)
        return result.returns.tolist()

    assert evaluate(restored) == evaluate(agent)
    assert evaluate(restored) != evaluate(setup(cfg)[1])  # the training changed what it writes


def kl_of_run(model_dir: Path, folder: Path, kl_coef: float) -> list[float]:
    cfg = text_config(
        model_dir, "algo.group_size=4", "algo.lr=0.01", "algo.policy.lora.r=0", f"algo.kl_coef={kl_coef}",
        "total_steps=1200",
        "log_every_steps=50", "eval.episodes=4", "eval.final_episodes=4", "eval.num_envs=4",
        "eval.every_steps=100000",
    )  # fmt: skip
    run(cfg, folder)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["train/kl"] for r in rows if "train/kl" in r]


def test_a_large_kl_coef_holds_the_policy_to_its_initial_model(model_dir: Path, tmp_path: Path) -> None:
    free = kl_of_run(model_dir, tmp_path / "free", 0.0)
    held = kl_of_run(model_dir, tmp_path / "held", 20.0)
    assert min(len(free), len(held)) >= 5
    assert max(free[-3:]) > 1.0  # unleashed, the policy walks away from its start
    assert max(held[-3:]) < 0.25 * min(free[-3:])


def test_a_run_logs_text_samples_kl_and_writes_adapter_checkpoints(model_dir: Path, tmp_path: Path) -> None:
    cfg = text_config(
        model_dir, "algo.group_size=4", "total_steps=150", "log_every_steps=50", "checkpoint_every_steps=50",
        "eval.episodes=4", "eval.final_episodes=4", "eval.num_envs=4", "eval.samples=4",
    )  # fmt: skip
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["env_steps"] == 0 and "eval/return_mean" in rows[0]  # the model before RL
    assert all(r["train/kl"] >= 0 for r in rows if "train/kl" in r)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {s["env_steps"] for s in samples} == {0, rows[-1]["env_steps"]} and len(samples) == 8
    for s in samples:
        user, system, verdict = s["text"].splitlines()
        assert user.startswith("user: ") and system.startswith("system: ")
        assert verdict.startswith(f"judge: {s['return']:.2f} of 3 (correct ")
    saved = torch.load(tmp_path / "policy.pt", weights_only=True)
    adapters = saved["agent"]["policy"]
    base = sum(p.numel() for p in load_model(without_lora(cfg.algo.policy)).parameters())
    assert adapters and all("lora_" in k for k in adapters) and saved["agent"]["reference"] == {}
    assert 0 < sum(v.numel() for v in adapters.values()) < base  # not the base model's weights


# --------------------------------------------------------------------------- refusals


def test_a_policy_and_an_env_that_do_not_fit_are_refused_in_one_line(model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"env=dialogue_text: its tokens are a pretrained model's"):
        preflight(make_config("env=dialogue_text", f"env.tokenizer={model_dir}", "logger=none"))
    with pytest.raises(ConfigError, match=r"env=cartpole is not text"):
        preflight(make_config("env=cartpole", "policy=pretrained", f"algo.policy.model={model_dir}", "logger=none"))
    with pytest.raises(ConfigError, match=r"algo=a2c: cannot train a pretrained language model"):
        preflight(text_config(model_dir, "algo=a2c"))
    with pytest.raises(ConfigError, match=r"env.tokenizer='.*/.': the env must write with the policy's"):
        preflight(text_config(model_dir, f"env.tokenizer={model_dir}/."))  # the same files, named otherwise
    with pytest.raises(ConfigError, match=r"hardware.compile=true: not for a pretrained policy"):
        preflight(text_config(model_dir, "hardware.compile=true"))
    with pytest.raises(ConfigError, match=r"env.tokenizer='/no/such': model '/no/such': not a folder"):
        preflight(make_config("env=dialogue_text", "policy=pretrained", "algo.policy.model=/no/such", "logger=none"))


def test_an_unfetched_model_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGLAB_MODELS", str(tmp_path))
    result = run_py("env=dialogue_text", "policy=smollm2_135m", "logger=none", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "python -m pglab.models fetch smollm2-135m" in lines[0]


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_the_real_smollm2_loads_generates_and_takes_an_update() -> None:
    if fetched("smollm2-135m") is None:
        if os.environ.get("CI"):
            pytest.fail("CI fetches smollm2-135m first (.ci/run: python -m pglab.models fetch smollm2-135m)")
        pytest.skip("smollm2-135m is not fetched: python -m pglab.models fetch smollm2-135m")
    cfg = make_config(  # no baseline: 4 replies cut at 8 tokens may all score alike, and RLOO would not move
        "env=dialogue_text", "policy=smollm2_135m", "env.num_envs=4", "env.max_reply_tokens=8", "logger=none",
        "algo.baseline=none", "algo.group_size=null",
    )  # fmt: skip
    torch.manual_seed(0)
    env, agent = setup(cfg)
    assert sum(p.numel() for p in agent.policy.model.get_base_model().parameters()) == 134_515_008 + sum(
        p.numel() for n, p in agent.policy.named_parameters() if "lora_" in n
    )
    obs, _ = env.reset()
    with torch.no_grad():
        greedy = agent.policy.sampler().logits(obs).argmax(dim=-1)
        assert torch.equal(greedy, agent.policy.logits(obs).argmax(dim=-1))
    before = {n: p.clone() for n, p in agent.policy.named_parameters() if p.requires_grad}
    buf = agent.buffers(env)
    metrics = agent.update(buf, agent.collect(env, buf))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert metrics["train/kl"] < 1e-6  # LoRA starts as the base model
    moved = [n for n, p in agent.policy.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert moved and all("lora_" in n for n in moved)


def test_ppo_takes_clipped_epochs_on_whole_replies_and_refuses_a_critic(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo=ppo", "algo.lr=0.01")
    assert cfg.algo.baseline.value == "group_norm" and cfg.algo.group_size == 4
    preflight(cfg)
    env, agent = setup(cfg)
    jolt_adapters(agent.policy)
    before = {n: p.clone() for n, p in agent.policy.named_parameters()}
    updates: list = []
    agent.learn(env, 10**6, lambda u: updates.append(u) or len(updates) < 2)
    assert len(updates) == 2 and updates[1].env_steps > updates[0].env_steps > 0
    assert updates[1].metrics["train/kl"] > 0  # the policy left its initial model, and knows it
    moved = {n for n, p in agent.policy.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all("lora_" in n for n in moved)
    with pytest.raises(ConfigError, match=r"algo.baseline=gae: a critic on a pretrained language model"):
        preflight(text_config(model_dir, "algo=ppo", "algo.baseline=gae", "algo.group_size=null"))


def test_without_lora_every_weight_trains_once_and_the_reference_is_a_frozen_copy(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo.group_size=4", "algo.policy.lora.r=0")
    env, agent = setup(cfg)
    state = agent.policy.state_dict()
    params = dict(agent.policy.named_parameters())
    assert all(k.startswith("model.") for k in state) and set(params) <= set(state)  # one name per module
    assert all(p.requires_grad for p in params.values())
    assert not any(p.requires_grad for p in agent.reference.parameters())
    before = {n: p.clone() for n, p in agent.reference.named_parameters()}
    buf = agent.buffers(env)
    agent.update(buf, agent.collect(env, buf))
    assert all(torch.equal(p, before[n]) for n, p in agent.reference.named_parameters())
    assert any(not torch.equal(p, agent.reference.state_dict()[n]) for n, p in agent.policy.state_dict().items())


def test_gradient_checkpointing_recomputes_in_the_backward_pass_for_the_same_gradient(model_dir: Path) -> None:
    def one_update(checkpointing: bool) -> tuple[int, dict[str, float]]:
        cfg = text_config(model_dir, "algo.group_size=4", f"algo.policy.gradient_checkpointing={checkpointing}")
        torch.manual_seed(3)  # the same adapters' initialisation
        env, agent = setup(cfg)
        jolt_adapters(agent.policy)
        torch.manual_seed(4)
        buf = agent.buffers(env)
        T = agent.collect(env, buf)
        calls = []
        mlp = agent.policy.model.get_base_model().model.layers[0].mlp  # called inside the layer's forward
        handle = mlp.register_forward_pre_hook(lambda *_: calls.append(1))  # the recompute may stop inside it
        metrics = agent.update(buf, T)
        handle.remove()
        return len(calls), metrics

    plain, with_ckpt = one_update(False), one_update(True)
    assert with_ckpt[0] == plain[0] + 1  # the policy's pass runs layer 0 again in the backward pass
    assert with_ckpt[1]["train/grad_norm"] == pytest.approx(plain[1]["train/grad_norm"], rel=1e-5)


def test_the_cache_notices_parameters_that_changed_mid_episode(model_dir: Path) -> None:
    env, agent = setup(text_config(model_dir, "algo.group_size=null"), num_envs=3)
    policy = agent.policy
    obs, _ = env.reset()
    with torch.no_grad():
        policy.act(obs)
        obs, *_ = env.step(policy.act(obs))
        jolt_adapters(policy, scale=1.0)  # an update between two steps of an episode
        assert torch.allclose(policy._act_sampler.logits(obs), policy.logits(obs), atol=1e-4)


def test_top_p_samples_only_the_smallest_set_that_reaches_p() -> None:
    from pglab.nets.pretrained import draw

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, -1)
    torch.manual_seed(0)
    counts = torch.bincount(draw(logits, top_p=0.7), minlength=4).float() / 4000
    assert counts[2:].sum() == 0 and counts[0] == pytest.approx(0.625, abs=0.03)  # 0.5 / (0.5 + 0.3)
    counts = torch.bincount(draw(logits, top_p=1.0), minlength=4).float() / 4000
    assert counts[3] == pytest.approx(0.05, abs=0.015)


def test_a_model_that_cannot_be_loaded_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"env.tokenizer='.*empty': cannot load its tokenizer"):
        preflight(text_config(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"algo.baseline=value: a critic on a pretrained language model"):
        preflight(text_config(model_dir, "algo.baseline=value", "algo.group_size=null"))
    with pytest.raises(ConfigError, match=r"algo.policy.dtype=bfloat16 with algo.policy.lora.r=0"):
        preflight(text_config(model_dir, "algo.policy.dtype=bfloat16", "algo.policy.lora.r=0"))


def test_a_ppo_checkpoint_holds_the_adapters_alone_and_loads_into_a_fresh_agent(model_dir: Path) -> None:
    cfg = text_config(model_dir, "algo=ppo", "algo.lr=0.01")
    env, agent = setup(cfg)
    agent.learn(env, 10**6, lambda u: False)  # one update
    state = agent.state_dict()
    assert state["nets"] and all(k.startswith("policy.model.") and "lora_" in k for k in state["nets"])
    _, fresh = setup(cfg)
    fresh.load_state_dict(state)
    for (name, p), q in zip(agent.policy.named_parameters(), fresh.policy.parameters(), strict=True):
        assert torch.equal(p, q), name
    broken = dict(state, nets={k: v for i, (k, v) in enumerate(state["nets"].items()) if i})  # one adapter short
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(broken)


def test_the_memory_estimate_counts_the_weights_and_the_adapters_state(model_dir: Path) -> None:
    from pglab.nets.pretrained import memory_bytes

    cfg = text_config(model_dir, "algo.group_size=4")
    policy = setup(cfg)[1].policy
    adapters = sum(p.numel() for n, p in policy.named_parameters() if "lora_" in n)
    base = sum(p.numel() for n, p in policy.named_parameters() if "lora_" not in n)
    assert memory_bytes(cfg.algo.policy, optimizer_states=2) == base * 4 + adapters * 4 * 3
    full = without_lora(cfg.algo.policy)
    assert memory_bytes(full, optimizer_states=2) == base * 4 * 2 + base * 4 * 3  # a frozen copy as the reference
