"""The dialogue env: acts and rewards, the error model, the expert and its return, batched == single."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import pglab.envs  # noqa: F401 - registers pglab/Dialogue-v0
from pglab.config import SuccessWhen
from pglab.envs.dialogue import BOOK as BOOK_KIND
from pglab.envs.dialogue import (
    SLOTS,
    DialogueEnv,
    DialogueVectorEnv,
    action_names,
    expert_action,
    expert_return,
    solve_expert,
)
from pglab.evaluation import evaluate

# K = 3: actions 0-2 request(cuisine|area|price), 3-5 confirm(...), 6 book, 7 bye
REQUEST, CONFIRM, BOOK, BYE = 0, 3, 6, 7


def test_action_names() -> None:
    assert action_names(2) == ["request(cuisine)", "request(area)", "confirm(cuisine)", "confirm(area)", "book", "bye"]


def test_with_no_errors_requesting_every_slot_then_booking_succeeds() -> None:
    env = DialogueVectorEnv(num_envs=2, error_rate=0.0, seeds=[1, 2])
    obs, _ = env.reset()
    assert obs.tolist() == [[0.0] * 7, [0.0] * 7]
    for k in range(3):
        obs, reward, terminated, _, _ = env.step(torch.tensor([REQUEST + k, REQUEST + k]))
        assert reward.tolist() == [-1.0, -1.0] and not terminated.any()
    assert obs[:, :3].eq(1).all() and obs[:, 3:6].ge(0.4).all()  # filled, heard right
    assert obs[:, 6].tolist() == pytest.approx([0.3, 0.3])  # turn 3 of 10
    assert torch.equal(env.belief, env.goal)
    _, reward, terminated, truncated, info = env.step(torch.tensor([BOOK, BOOK]))
    assert reward.tolist() == [19.0, 19.0] and terminated.all() and not truncated.any()
    assert info["success"].all() and info["episode_return"].tolist() == [16.0, 16.0]
    assert info["episode_stats"]["expert_fraction"].tolist() == pytest.approx([1.0, 1.0])  # e=0: expert gets 16


def test_failures_book_wrong_bye_and_running_out_of_turns() -> None:
    env = DialogueVectorEnv(num_envs=3, error_rate=0.0, max_turns=7, seeds=[1, 2, 3])
    env.reset()
    # env 0 books with nothing known, env 1 says bye, env 2 confirms an unfilled slot (a wasted turn)
    _, reward, terminated, _, info = env.step(torch.tensor([BOOK, BYE, CONFIRM]))
    assert reward.tolist() == [-11.0, -11.0, -1.0]
    assert terminated.tolist() == [True, True, False]
    assert not info["success"].any()
    assert env.belief[2].tolist() == [-1, -1, -1]  # env 2's state; envs 0 and 1 restarted
    for _ in range(5):
        _, reward, terminated, _, _ = env.step(torch.tensor([REQUEST, REQUEST, REQUEST]))
    assert terminated.tolist() == [False, False, False]
    _, reward, terminated, truncated, info = env.step(torch.tensor([REQUEST, REQUEST, REQUEST]))
    assert terminated.tolist() == [False, False, True]  # turn 7 of 7: out of turns, a terminal failure
    assert reward[2].item() == -11.0 and not info["success"][2]
    # the time limit is reached in the same step: flagged as gymnasium's TimeLimit flags it,
    # and terminated (no bootstrap) is what the algorithms act on
    assert truncated.tolist() == [False, False, True]


def test_mishearing_follows_the_error_model_and_confirm_fixes_it() -> None:
    n, e = 20000, 0.3
    env = DialogueVectorEnv(num_envs=n, error_rate=e, seeds=list(range(n)))
    env.reset()
    env.step(torch.zeros(n, dtype=torch.long))  # request(cuisine) everywhere
    wrong = env.belief[:, 0] != env.goal[:, 0]
    conf = env.confidence[:, 0]
    assert abs(wrong.float().mean().item() - e) < 4 * math.sqrt(e * (1 - e) / n)
    assert conf[wrong].max() < 0.6 and conf[~wrong].min() >= 0.4
    assert abs(conf[wrong].mean().item() - 0.3) < 0.01 and abs(conf[~wrong].mean().item() - 0.7) < 0.01
    assert (env.belief[:, 0] >= 0).all() and (env.belief[:, 0] < len(SLOTS[0][1])).all()
    env.step(torch.full((n,), CONFIRM, dtype=torch.long))  # confirm(cuisine)
    assert torch.equal(env.belief[:, 0], env.goal[:, 0]) and (env.confidence[:, 0] == 1.0).all()
    # goals are uniform over each slot's values
    counts = torch.bincount(env.goal[:, 1], minlength=5).float() / n
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.015)


def closed_form_return(k: int, e: float, stake: float = 30.0, success: float = 20.0) -> float:
    """The expected return of "request all, confirm the surely wrong slots, confirm all or none
    of the m ambiguous ones (whichever is worth more), book", summed over the multinomial
    counts of the four hearing outcomes: independent of the backward induction."""
    probs = ((1 - e) * 2 / 3, (1 - e) / 3, e / 3, e * 2 / 3)  # right-sure, right-ambig., wrong-ambig., wrong-sure
    total = 0.0
    for a in range(k + 1):
        for b in range(k + 1 - a):
            for c in range(k + 1 - a - b):
                w = k - a - b - c
                coef = math.factorial(k) / math.prod(math.factorial(x) for x in (a, b, c, w))
                p = coef * probs[0] ** a * probs[1] ** b * probs[2] ** c * probs[3] ** w
                m = b + c
                confirm_all = -m + stake > stake * (1 - e) ** m
                j, p_success = (m, 1.0) if confirm_all else (0, 1.0 if c == 0 else 0.0)
                total += p * (-(k + w + j + 1) + p_success * success - (1 - p_success) * (stake - success))
    return total


@pytest.mark.parametrize(("k", "e"), [(1, 0.5), (3, 0.0), (3, 0.02), (3, 0.2), (5, 0.1), (8, 0.3)])
def test_the_induction_agrees_with_a_closed_form_where_that_rule_is_optimal(k: int, e: float) -> None:
    assert expert_return(k, e, max_turns=2 * k + 4) == pytest.approx(closed_form_return(k, e), abs=1e-9)


def test_with_a_small_stake_the_expert_gives_up_at_once() -> None:
    # success pays 1 and failure costs nothing: four turns of work are not worth it
    _, act = solve_expert(3, 0.2, 10, success_reward=1.0, failure_penalty=0.0)
    assert act[10, 3, 0, 0] == BOOK_KIND
    assert expert_return(3, 0.2, 10, success_reward=1.0, failure_penalty=0.0) == -1.0
    # the smallest turn limit allowed (2K+1: request and confirm every slot, book) never binds
    assert expert_return(4, 0.3, 9) == pytest.approx(expert_return(4, 0.3, 30), abs=1e-12)


def run_policy(env: DialogueVectorEnv, policy, episodes: int) -> np.ndarray:
    """Returns of ``episodes`` episodes under pglab's evaluation protocol (fixed per-env quotas:
    counting whatever finishes first would over-count short dialogues)."""
    result = evaluate(policy, env, episodes, list(range(env.num_envs)), SuccessWhen.reported)
    return result.returns


@pytest.mark.parametrize(("num_slots", "error_rate"), [(3, 0.0), (3, 0.2), (2, 0.5), (4, 0.03)])
def test_the_expert_attains_its_exact_expected_return(num_slots: int, error_rate: float) -> None:
    n = 4096
    env = DialogueVectorEnv(
        num_envs=n, num_slots=num_slots, error_rate=error_rate, max_turns=2 * num_slots + 1, seeds=list(range(n))
    )
    returns = run_policy(env, env.expert_action, 30000)
    exact = expert_return(num_slots, error_rate, max_turns=2 * num_slots + 1)
    se = returns.std() / math.sqrt(len(returns))
    assert abs(returns.mean() - exact) < 4 * se + 1e-9, (returns.mean(), exact, se)
    if error_rate == 0.0:
        assert exact == pytest.approx(20.0 - (num_slots + 1))


def test_the_expert_beats_other_confirmation_rules() -> None:
    """Alternative rules (never confirm, always confirm, confirm only sure-wrong slots)
    have a lower expected return than the expert, at an error rate where it matters."""
    n, k, e = 4096, 3, 0.1
    env = DialogueVectorEnv(num_envs=n, num_slots=k, error_rate=e, seeds=list(range(n)))
    expert = run_policy(env, env.expert_action, 30000).mean()
    assert expert == pytest.approx(expert_return(k, e, max_turns=10), abs=0.15)

    def rule(threshold: float):
        def policy(obs: torch.Tensor) -> torch.Tensor:
            filled, conf = obs[:, :k] > 0.5, obs[:, k : 2 * k]
            ids = torch.arange(k)
            first_unfilled = torch.where(~filled, ids, k + 1).min(1).values
            first_low = torch.where(filled & (conf < threshold), ids, k + 1).min(1).values
            act = torch.where(first_low <= k, k + first_low, 2 * k)
            return torch.where(first_unfilled <= k, first_unfilled, act)

        return policy

    for threshold in (0.0, 0.4, 1.01):  # never, sure-wrong only, always
        other = run_policy(
            DialogueVectorEnv(num_envs=n, num_slots=k, error_rate=e, seeds=list(range(n))), rule(threshold), 30000
        )
        assert other.mean() < expert - 0.2, (threshold, other.mean(), expert)


def test_the_expert_acts_on_observations_by_hand() -> None:
    _, acts = solve_expert(3, 0.2, 10, 20.0, 10.0)
    obs = torch.tensor(
        [
            [1, 0, 0, 0.9, 0.0, 0.0, 0.1],  # area unfilled -> request(area)
            [1, 1, 1, 0.9, 0.3, 0.5, 0.3],  # price... area sure-wrong -> confirm(area)
            [1, 1, 1, 0.9, 0.7, 0.5, 0.3],  # price ambiguous, e=0.2 -> confirm(price)
            [1, 1, 1, 0.9, 0.7, 1.0, 0.4],  # all sure -> book
        ]
    )
    assert expert_action(obs, 3, 10, torch.as_tensor(acts)).tolist() == [1, 4, 5, 6]


def test_transcripts_read_turn_by_turn() -> None:
    env = DialogueEnv(error_rate=0.0, render_mode="ansi")
    env.reset(seed=4)
    for a in (REQUEST + 1, REQUEST, CONFIRM + 1, REQUEST + 2, BOOK):
        env.step(a)
    text = env.render()
    lines = text.splitlines()
    assert lines[0].startswith("USER GOAL: cuisine=")
    goal = dict(item.split("=") for item in lines[0].removeprefix("USER GOAL: ").split(", "))
    assert lines[1] == "SYSTEM: request(area)"
    assert lines[2].startswith(f"USER: inform(area={goal['area']})  [confidence ")
    assert lines[5] == "SYSTEM: confirm(area)" and lines[6] == f"USER: area={goal['area']}, yes."
    assert lines[9] == f"SYSTEM: book(cuisine={goal['cuisine']}, area={goal['area']}, price={goal['price']})"
    assert lines[10] == "USER: Thank you, that is what I wanted."
    assert lines[11] == "-- success after 5 turns, return 15.0"


def test_batched_and_single_envs_give_identical_trajectories() -> None:
    seeds = [0, 1, 12345, 2**40 + 3]
    n_steps, kwargs = 800, {"num_slots": 4, "error_rate": 0.3, "max_turns": 12}
    actions = torch.randint(0, 10, (n_steps, len(seeds)), generator=torch.Generator().manual_seed(0))
    batched = DialogueVectorEnv(num_envs=len(seeds), seeds=seeds, **kwargs)
    obs, _ = batched.reset()
    steps = []
    for t in range(n_steps):
        nxt, reward, terminated, truncated, info = batched.step(actions[t])
        steps.append((info["final_obs"], nxt, reward, terminated, truncated))
    episodes = 0
    for i, seed in enumerate(seeds):
        single = gym.make("pglab/Dialogue-v0", **kwargs)
        obs_i, _ = single.reset(seed=seed)
        np.testing.assert_array_equal(obs_i, obs[i].numpy())
        for t, (final, nxt, reward, terminated, truncated) in enumerate(steps):
            obs_i, r, te, tr, _ = single.step(int(actions[t, i]))
            np.testing.assert_array_equal(obs_i, final[i].numpy())
            assert (r, te, tr) == (float(reward[i]), bool(terminated[i]), bool(truncated[i]))
            if te or tr:
                episodes += 1
                obs_i, _ = single.reset()
                np.testing.assert_array_equal(obs_i, nxt[i].numpy())
    assert episodes >= 100


def test_the_single_env_passes_gymnasiums_checker() -> None:
    check_env(gym.make("pglab/Dialogue-v0").unwrapped)
    check_env(gym.make("pglab/Dialogue-v0", num_slots=8, max_turns=17, error_rate=1.0).unwrapped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_slots": 0}, "num_slots=0: must be an integer from 1 to 8"),
        ({"error_rate": 1.5}, r"error_rate=1.5: must be a probability in \[0, 1\]"),
        ({"num_slots": 4, "max_turns": 8}, r"max_turns=8: must be >= 2\*num_slots\+1 = 9"),
    ],
)
def test_bad_parameters_are_refused_with_the_parameter_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DialogueVectorEnv(num_envs=1, **kwargs)


def test_a_confirm_of_a_misheard_slot_reads_as_a_correction() -> None:
    env = DialogueEnv(error_rate=1.0, render_mode="ansi")  # every hearing is wrong
    env.reset(seed=0)
    env.step(REQUEST)
    env.step(CONFIRM)
    lines = env.render().splitlines()
    goal = dict(item.split("=") for item in lines[0].removeprefix("USER GOAL: ").split(", "))
    assert "[misheard as cuisine=" in lines[2]
    assert lines[3:5] == ["SYSTEM: confirm(cuisine)", f"USER: No, cuisine={goal['cuisine']}."]
