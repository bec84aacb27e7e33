"""The token-level dialogue: vocabulary, the judge's rules on hand-written replies, the env's
episodes, the expert's demonstrations, k samples per prompt, batched == single."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import pglab.envs  # noqa: F401 - registers pglab/DialogueLM-v0
from pglab.envs.dialogue import SLOTS
from pglab.envs.dialogue_lm import (
    END_ID,
    PAD_ID,
    SYS_ID,
    VOCAB,
    DialogueLMEnv,
    DialogueLMVectorEnv,
    JudgeRules,
    decode,
    default_length_budget,
    encode,
    judge,
)

GOAL = "italian north cheap"  # cuisine, area, price: the first three slots
BUDGET = default_length_budget(3)  # 2 + 3 + 2 (the phrases) + 5 = 12

# (reply, score, correct, wrong, repeats, overlong, unfinished, success), each computed by hand
# from the rules in the module docstring: +1 per stated goal value, -1 per distinct wrong value,
# -0.5 per repeated content token, -0.25 per token over 12, -1 without <end>.
HAND_WRITTEN = [
    # the concise reply: 9 tokens, every value, nothing else
    ("booked italian food in the north cheap price . <end>", 3.0, 3, 0, 0, 0, 0, True),
    # the longest opener still fits the budget (12 tokens)
    ("sure , i booked italian food in the north cheap price . <end>", 3.0, 3, 0, 0, 0, 0, True),
    # a misheard cuisine: 2 right, 1 wrong
    ("booked chinese food in the north cheap price . <end>", 1.0, 2, 1, 0, 0, 0, False),
    # a restated slot: italian and food repeat (2), 13 tokens (1 over): 3 - 1 - 0.25
    ("booked italian food in the north cheap price , yes italian food . <end>", 1.75, 3, 0, 2, 1, 0, False),
    # a pleasantry: 13 tokens; '.' twice is a function word, not a repetition: 3 - 0.25
    ("booked italian food in the north cheap price . enjoy your meal . <end>", 2.75, 3, 0, 0, 1, 0, False),
    # a value of a slot the user never named (day) is wrong too: 3 - 1
    ("booked italian food on monday in the north cheap price . <end>", 2.0, 3, 1, 0, 0, 0, False),
    # a wrong value next to the right one still costs: 3 - 1
    ("booked italian food in the south in the north cheap price . <end>", 2.0, 3, 1, 0, 0, 0, False),
    # a wrong value said twice: counted once as wrong, once as a repetition: 2 - 1 - 0.5
    ("chinese chinese food in the north cheap price . <end>", 0.5, 2, 1, 1, 0, 0, False),
    # nothing said
    ("<end>", 0.0, 0, 0, 0, 0, 0, False),
    # tokens after <end> do not count
    ("booked italian food in the north cheap price . <end> mexican mexican", 3.0, 3, 0, 0, 0, 0, True),
    # never ended: 24 x italian: 1 right, 23 repeats, 12 over, unfinished: 1 - 11.5 - 3 - 1
    (" ".join(["italian"] * 24), -14.5, 1, 0, 23, 12, 1, False),
]


def _reply_tensor(texts: list[str], width: int = 24) -> torch.Tensor:
    rows = [encode(t) + [PAD_ID] * (width - len(encode(t))) for t in texts]
    return torch.tensor(rows)


def test_vocabulary_is_small_word_level_and_round_trips() -> None:
    assert 100 <= len(VOCAB) <= 300
    assert len(set(VOCAB)) == len(VOCAB)
    assert (VOCAB[PAD_ID], VOCAB[END_ID]) == ("<pad>", "<end>")
    text = "sure , i booked thai food in the west luxury price . <end>"
    assert decode(encode(text)) == text
    with pytest.raises(KeyError):
        encode("booked a spaceship")


def test_the_judge_scores_hand_written_replies_by_the_documented_rules() -> None:
    replies = _reply_tensor([h[0] for h in HAND_WRITTEN])
    goal = torch.tensor([encode(GOAL)] * len(HAND_WRITTEN))
    v = judge(replies, goal, BUDGET)
    assert BUDGET == 12
    for i, (text, score, correct, wrong, repeats, overlong, unfinished, success) in enumerate(HAND_WRITTEN):
        got = [float(v[k][i]) for k in ("score", "correct", "wrong", "repeats", "overlong", "unfinished")]
        assert got == [score, correct, wrong, repeats, overlong, unfinished], text
        assert bool(v["success"][i]) == success, text


def test_the_judges_weights_are_the_documented_ones() -> None:
    assert JudgeRules() == JudgeRules(1.0, 1.0, 0.5, 0.25, 1.0)
    harsher = JudgeRules(repeat_penalty=2.0)
    v = judge(
        _reply_tensor(["booked italian italian food in the north cheap price . <end>"]),
        torch.tensor([encode(GOAL)]),
        12,
        harsher,
    )
    assert float(v["score"][0]) == 3.0 - 2.0


def _goal_reply(env: DialogueLMVectorEnv, i: int) -> list[int]:
    """The concise right reply to env i's current request."""
    cuisine, area, price = (VOCAB[t] for t in env.goal[i].tolist())
    return encode(f"booked {cuisine} food in the {area} {price} price . <end>")


def test_an_episode_writes_the_reply_and_is_judged_once_at_the_end() -> None:
    env = DialogueLMVectorEnv(num_envs=2, seeds=[3, 4])
    obs, _ = env.reset()
    p, r = env.prompt_width, env.max_reply_tokens
    assert obs.shape == (2, p + r + 1) and obs.dtype == torch.int64
    assert obs[:, p - 1].tolist() == [SYS_ID, SYS_ID] and obs[:, p:].eq(PAD_ID).all()
    right = _goal_reply(env, 0)
    wrong = encode("booked <end>")  # env 1: says nothing useful, ends early
    rewards = []
    for t, token in enumerate(right):
        other = wrong[t] if t < len(wrong) else END_ID
        obs, reward, terminated, truncated, info = env.step(torch.tensor([token, other]))
        rewards.append(reward.tolist())
        if t == 0:
            assert obs[0, p].item() == token and obs[0, -1].item() == 1  # written, and counted
        if t == 1:  # env 1 ended: judged 0.0 (nothing right), and restarted with a new prompt
            assert terminated.tolist() == [False, True] and not truncated.any()
            assert info["episode_length"][1].item() == 2 and info["episode_stats"]["reply_length"][1].item() == 1
            assert obs[1, p:].eq(PAD_ID).all() and obs[1, -1].item() == 0
    assert [x[0] for x in rewards] == [0.0] * (len(right) - 1) + [3.0]
    assert terminated[0] and info["success"][0] and info["episode_return"][0].item() == 3.0
    assert info["episode_stats"]["correct"][0].item() == 3.0


def test_a_reply_cut_at_max_reply_tokens_is_judged_unfinished() -> None:
    env = DialogueLMVectorEnv(num_envs=1, max_reply_tokens=24, seeds=[0])
    env.reset()
    token = encode("booked")[0]
    for _ in range(23):
        _, reward, terminated, _, _ = env.step(torch.tensor([token]))
        assert reward.item() == 0.0 and not terminated.any()
    _, reward, terminated, truncated, info = env.step(torch.tensor([token]))
    # 24 x booked: 0 right, 23 repeats, 12 over the budget of 12, unfinished
    assert terminated.item() and truncated.item()  # the time limit is reached in the same step
    assert reward.item() == -11.5 - 3.0 - 1.0
    assert info["episode_stats"]["unfinished"].item() == 1.0


def test_k_samples_per_prompt_share_the_prompt_and_groups_differ() -> None:
    env = DialogueLMVectorEnv(num_envs=8, seeds=list(range(8)))
    env.set_group_size(4)
    for _ in range(3):  # every episode: the group's prompt, drawn anew
        obs, _ = env.reset()
        assert all(torch.equal(obs[i], obs[0]) for i in range(4))
        assert all(torch.equal(obs[i], obs[4]) for i in range(4, 8))
        assert not torch.equal(obs[0], obs[4])
    with pytest.raises(ValueError, match="group size 3: must be >= 1 and divide num_envs=8"):
        env.set_group_size(3)


def test_a_group_keeps_sharing_its_prompt_when_its_members_restart_unevenly() -> None:
    """In a REINFORCE batch an env whose reply ends early keeps writing (and restarting)
    until the slowest is done: its episode count runs ahead of its group's."""
    env = DialogueLMVectorEnv(num_envs=4, seeds=[1, 2, 3, 4])
    env.set_group_size(2)
    token = encode("booked")[0]
    for _ in range(3):  # three batches; env 0 ends at every step, the others after 5 tokens
        obs, _ = env.reset()
        assert torch.equal(obs[0], obs[1]) and torch.equal(obs[2], obs[3]) and not torch.equal(obs[0], obs[2])
        for t in range(5):
            env.step(torch.tensor([END_ID, token if t < 4 else END_ID, token, END_ID if t == 4 else token]))
    assert env.episode[0] > env.episode[1]  # the counts drifted; the prompts did not


def test_demonstrations_follow_the_envs_seeds_before_any_reset() -> None:
    """The SFT stage runs before the training env's first reset: its data must still depend on the seed."""
    a = DialogueLMVectorEnv(num_envs=2, seeds=[0, 1]).demonstrations(8, 0)["actions"]
    b = DialogueLMVectorEnv(num_envs=2, seeds=[5, 6]).demonstrations(8, 0)["actions"]
    env = DialogueLMVectorEnv(num_envs=2, seeds=[5, 6])
    env.reset()
    assert not torch.equal(a, b) and torch.equal(env.demonstrations(8, 0)["actions"], b)


def test_a_time_limit_below_max_reply_tokens_cuts_and_judges_the_reply() -> None:
    env = DialogueLMVectorEnv(num_envs=1, max_episode_steps=10, seeds=[0])
    env.reset()
    token = encode("booked")[0]
    for _ in range(9):
        assert env.step(torch.tensor([token]))[1].item() == 0.0
    _, reward, terminated, truncated, info = env.step(torch.tensor([token]))
    # 10 x booked (the padding after them not counted): 9 repeats, 0 over the budget of 12, unfinished
    assert terminated.item() and truncated.item() and reward.item() == -4.5 - 1.0
    stats = info["episode_stats"]
    assert (stats["reply_length"].item(), stats["repeats"].item(), stats["unfinished"].item()) == (10.0, 9.0, 1.0)


def test_demonstrations_of_a_perfect_expert_are_all_judged_successes() -> None:
    env = DialogueLMVectorEnv(num_envs=1, error_rate=0.0, ramble_rate=0.0, repeat_rate=0.0, seeds=[0])
    demo = env.demonstrations(64, 0)
    # each prompt's slot values (in the prompt's order: the judge treats the goal as a set)
    goals = [[t for t in row if VOCAB[t] in VALUES] for row in demo["obs"][0, :, : env.prompt_width].tolist()]
    assert all(len(g) == 3 for g in goals)
    v = judge(demo["actions"].t(), torch.tensor(goals), default_length_budget(3))
    assert v["success"].all() and v["score"].eq(3.0).all()


VALUES = {v for _, values in SLOTS for v in values}


def test_demonstrations_have_the_reinforce_buffer_layout() -> None:
    env = DialogueLMVectorEnv(num_envs=1, seeds=[5])
    demo = env.demonstrations(16, 7)
    obs, actions, valid = demo["obs"], demo["actions"], demo["valid"]
    p, r = env.prompt_width, env.max_reply_tokens
    assert obs.shape == (r, 16, p + r + 1) and actions.shape == valid.shape == (r, 16)
    lengths = valid.sum(dim=0)
    for n in range(16):
        length = int(lengths[n])
        assert actions[length - 1, n].item() == END_ID and not (actions[: length - 1, n] == END_ID).any()
        assert valid[:length, n].all() and not valid[length:, n].any()
        for t in (0, 3, length - 1):  # step t's observation: the prompt, the first t tokens, t
            assert torch.equal(obs[t, n, :p], obs[0, n, :p])
            assert obs[t, n, p : p + t].tolist() == actions[:t, n].tolist()
            assert obs[t, n, p + t : p + r].eq(PAD_ID).all() and obs[t, n, -1].item() == t
    assert torch.equal(env.demonstrations(16, 7)["actions"], actions)  # a batch is a function of its index
    assert not torch.equal(env.demonstrations(16, 8)["actions"], actions)


def test_the_experts_habits_show_in_its_demonstrations() -> None:
    """Mishearing, pleasantries and restatements at their configured rates (4096 replies)."""
    env = DialogueLMVectorEnv(num_envs=1, seeds=[0])
    demo = env.demonstrations(4096, 0)
    texts = [decode(demo["actions"][:, n][demo["valid"][:, n]]) for n in range(4096)]
    ramble = np.mean([("enjoy" in t) or ("thank" in t) or ("evening" in t) for t in texts])
    restate = np.mean([", yes" in t for t in texts])
    assert ramble == pytest.approx(0.3, abs=0.03) and restate == pytest.approx(0.2, abs=0.03)


def test_batched_and_single_envs_agree_and_check_env_passes() -> None:
    seeds = [11, 12, 2**40 + 5]
    batched = DialogueLMVectorEnv(num_envs=3, seeds=seeds)
    singles = [gym.make("pglab/DialogueLM-v0").unwrapped for _ in seeds]
    obs_b, _ = batched.reset()
    for single, seed in zip(singles, seeds, strict=True):
        single.reset(seed=seed)
    gen = np.random.default_rng(0)
    ends = 0
    for _ in range(300):
        actions = gen.integers(0, len(VOCAB), size=3)
        actions[gen.random(3) < 0.15] = END_ID
        obs_b, rew_b, term_b, trunc_b, _ = batched.step(torch.as_tensor(actions))
        for i, single in enumerate(singles):
            o, rew, term, trunc, _ = single.step(int(actions[i]))
            assert (rew, term, trunc) == (float(rew_b[i]), bool(term_b[i]), bool(trunc_b[i]))
            if term or trunc:
                ends += 1
                o, _ = single.reset()
            assert np.array_equal(o, obs_b[i].numpy())
    assert ends >= 60
    check_env(DialogueLMEnv(), skip_render_check=True)
    check_env(DialogueLMEnv(num_slots=5, max_reply_tokens=40), skip_render_check=True)


def test_bad_parameters_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="num_slots=9: must be an integer from 1 to 8"):
        DialogueLMVectorEnv(num_slots=9)
    with pytest.raises(ValueError, match=r"max_reply_tokens=10: must be >= 2\d, the expert's longest reply"):
        DialogueLMVectorEnv(max_reply_tokens=10)
    with pytest.raises(ValueError, match="ramble_rate=2: must be a probability"):
        DialogueLMVectorEnv(ramble_rate=2)


def test_evaluation_samples_show_prompt_reply_and_verdict() -> None:
    from pglab.config import SuccessWhen
    from pglab.evaluation import evaluate

    env = DialogueLMVectorEnv(num_envs=2, seeds=[1, 2])
    result = evaluate(lambda o: torch.full((o.shape[0],), END_ID), env, 4, [1, 2], SuccessWhen.reported, samples=2)
    assert result.returns.tolist() == [0.0] * 4 and result.stats["reply_length"].tolist() == [0.0] * 4
    text = result.samples[0]["text"].splitlines()
    assert text[0].startswith("user: ") and text[0].endswith(" .")
    assert text[1] == "system: <end>"
    assert text[2] == "judge: 0.00 of 3 (correct 0/3, wrong 0, repeats 0, over budget 0)"
