"""The text booking task's judge on hand-written replies, and its requests."""

from __future__ import annotations

import pytest
import torch

from pglab.envs.booking_text import (
    BookingRequest,
    default_word_budget,
    judge_text,
    make_request,
    words,
)
from pglab.envs.dialogue_lm import TOKEN, encode, judge

ITALIAN_NORTH_CHEAP = BookingRequest(("italian", "north", "cheap"), "Please book a table: Italian food, ...")


@pytest.mark.parametrize(
    ("reply", "finished", "counts", "score"),
    [
        ("Sure, I booked a cheap Italian restaurant in the north.", True, (3, 0, 0, 0), 3.0),
        ("ITALIAN food, in the North, cheap price!", True, (3, 0, 0, 0), 3.0),
        ("I booked Chinese food in the north, cheap.", True, (2, 1, 0, 0), 1.0),  # a wrong cuisine
        ("Booked: Italian, north, cheap, for 4 people.", True, (3, 1, 0, 0), 2.0),  # a slot never asked for
        ("Italian food in the north, cheap, Italian food.", True, (3, 0, 2, 0), 2.0),  # italian, food again
        ("Sure, I booked a cheap Italian restaurant in the north", False, (3, 0, 0, 0), 2.0),  # cut off
        (
            "I'm sorry for your loss, but as a chatbot, I don't have the ability to book restaurants.",
            True,
            (0, 0, 0, 0),
            0.0,
        ),
        ("", False, (0, 0, 0, 0), -1.0),
    ],
)
def test_the_judge_scores_hand_written_replies(
    reply: str, finished: bool, counts: tuple[int, int, int, int], score: float
) -> None:
    verdict = judge_text(reply, ITALIAN_NORTH_CHEAP, finished)
    assert (verdict.correct, verdict.wrong, verdict.repeats, verdict.overlong) == counts
    assert verdict.score == score
    assert verdict.success == (score == 3.0)
    assert verdict.unfinished == (not finished)


def test_words_beyond_the_budget_cost_a_quarter_each() -> None:
    budget = default_word_budget(3)
    assert budget == 17  # "sure i booked a table" + "italian food" "in the north" "cheap price" + 5
    reply = "Sure, I booked a table: Italian food, in the north, cheap price."  # 12 words
    fits = judge_text(reply + " Enjoy your meal, friends.", ITALIAN_NORTH_CHEAP, True)
    assert fits.length == 16 and fits.overlong == 0 and fits.success
    long = judge_text(reply + " Enjoy your meal, have a nice evening.", ITALIAN_NORTH_CHEAP, True)
    assert long.length == 19 and long.overlong == 2 and long.score == 3.0 - 0.5 and not long.success
    assert judge_text(reply, ITALIAN_NORTH_CHEAP, True, budget=5).overlong == 7


def test_words_keep_times_ratings_and_contractions_whole() -> None:
    assert words("At 19:30, rated Four-Star; I\u2019m in!") == ["at", "19:30", "rated", "four-star", "i'm", "in"]
    request = BookingRequest(("thai", "east", "luxury", "two", "friday", "19:30", "bar", "four-star"), "")
    reply = "Booked: Thai food in the east, luxury, for 2 people on Friday at 19:30, bar seating, rated four-star."
    verdict = judge_text(reply, request, True)
    assert (verdict.correct, verdict.wrong, verdict.repeats, verdict.success) == (8, 0, 0, True)
    assert judge_text("rated four", request, True).correct == 0  # "four" is a number of people, not a rating


def test_the_text_judge_counts_as_the_token_judge_on_the_same_reply() -> None:
    """The token-level task's judge and this one agree on what a reply states, gets wrong
    and repeats (their length budgets differ: tokens there, words here)."""
    goal_words = ("italian", "north", "cheap")
    goal = torch.tensor([[TOKEN[w] for w in goal_words]])
    replies = [
        "booked italian food in the north cheap price .",
        "sure , i booked chinese food in the north cheap price , yes , chinese food .",
        "okay , booked italian food for four people on monday .",
    ]
    for text in replies:
        ids = encode(text + " <end>")
        tokens = judge(torch.tensor([ids]), goal, length_budget=100)
        verdict = judge_text(text, BookingRequest(goal_words, ""), finished=True, budget=100)
        got = (verdict.correct, verdict.wrong, verdict.repeats)
        assert got == tuple(int(tokens[k]) for k in ("correct", "wrong", "repeats")), text


def test_a_request_states_its_values_and_the_same_seed_gives_the_same_request() -> None:
    seen = set()
    for seed in range(40):
        num_slots = 1 + seed % 8
        request = make_request(seed, num_slots)
        assert request == make_request(seed, num_slots) and len(request.values) == num_slots
        verdict = judge_text(request.message, request, True, budget=100)
        assert (verdict.correct, verdict.wrong) == (num_slots, 0), request.message
        seen.add(request.message)
    assert len(seen) == 40
    with pytest.raises(ValueError, match=r"^num_slots=9: must be in \[1, 8\]$"):
        make_request(0, 9)
