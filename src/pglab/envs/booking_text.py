"""The booking task in natural language: a user's request as a chat message, the judge on text.

The text counterpart of :mod:`pglab.envs.dialogue_lm`, for policies that read and write
text through a tokenizer of their own (a pretrained language model): the user's request is
a sentence in ordinary English, and the **judge** scores the decoded reply by the same
rules and weights (:class:`~pglab.envs.dialogue_lm.JudgeRules`) as the token-level task's
judge, over the reply's *words*, so it works with any tokenizer::

    user:  Hi! Could you book a table at an Italian restaurant in the north, cheap please?
    reply: Sure, I booked a cheap Italian restaurant in the north.      -> 3.0, a success

**Words.** The reply is lower-cased and split into words: runs of letters, digits, ``:``,
``'`` and ``-`` (``four-star``, ``19:30`` and ``i'm`` are one word each, ``Italian,`` is
``italian``).

**The rules**, over those words:

* ``+correct_reward`` for each of the user's slot values the reply states (a value is
  stated when its word, or one of its :data:`ALIASES`, is among the reply's words; the
  number of people also as a digit: ``4 people``);
* ``-wrong_penalty`` for each *distinct* slot value the reply states that the user did not
  ask for (a wrong cuisine, or any value of a slot the user never named);
* ``-repeat_penalty`` for each repeated content word (every occurrence after its first,
  apart from the :data:`FUNCTION_WORDS`);
* ``-length_penalty`` for each word beyond the length budget
  (:func:`default_word_budget`: ``sure i booked a table`` + each slot's phrase + 5);
* ``-unfinished_penalty`` when the reply did not finish (the policy's end-of-sequence
  token never came before the length limit).

The maximum is ``num_slots · correct_reward``; a reply that reaches it is a **success**.
Hand-written replies and their verdicts are in ``tests/test_booking_text.py``.

Limits of judging by words: a slot value used as an ordinary word counts as stated (``two``
in "the two of you" states two people), and a value said in other words than its own and
its aliases (``7:30 pm`` for ``19:30``) does not.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pglab.envs.dialogue import MAX_SLOTS, SLOTS
from pglab.envs.dialogue_lm import JudgeRules

WORD = re.compile(r"[a-z0-9:'\-]+")
# The number of people also as a digit; every other value only as itself.
ALIASES: dict[str, str] = {str(n): word for n, word in enumerate(SLOTS[3][1], start=2)}  # "4" -> "four"
# Words the judge does not count as repetitions when they recur.
FUNCTION_WORDS = frozenset(
    (
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "from", "by",
        "is", "are", "was", "be", "been", "it", "its", "this", "that", "your", "you", "i", "we", "me", "my",
        "our", "us", "they", "them", "have", "has", "had", "will", "would", "can", "could", "please",
    )
)  # fmt: skip
# How the user says each slot's value, and how the system states it (the value in braces).
USER_PHRASES = (
    "{} food",
    "in the {}",
    "in the {} price range",
    "for {} people",
    "on {}",
    "at {}",
    "with {} seating",
    "rated {}",
)
CAPITALISED = (0, 4)  # cuisines and days, as English writes them
SYSTEM_PHRASES = ("{} food", "in the {}", "{} price", "for {} people", "on {}", "at {}", "{} seating", "rated {}")
GREETINGS = ("", "Hi! ", "Hello! ", "Good evening. ")
REQUESTS = (  # what the user asks, and the mark that ends it
    ("I would like to book a table", "."),
    ("Could you book me a table", "?"),
    ("Please book a table", "."),
    ("Can you find me a restaurant", "?"),
    ("We need a table", "."),
    ("I'm looking for a restaurant", "."),
)
THANKS = ("", " Thanks!", " Thank you.")


@dataclass(frozen=True)
class BookingRequest:
    """One episode's request.

    Attributes:
        values: the user's slot values, one per slot ``0..num_slots-1`` (the dialogue's
            :data:`~pglab.envs.dialogue.SLOTS` order).
        message: the request as the user writes it (the chat's user message).
    """

    values: tuple[str, ...]
    message: str


def make_request(seed: int, num_slots: int) -> BookingRequest:
    """The request of a seed: each slot's value uniformly drawn, said in one of the
    phrasings above in a random order (the same seed, the same request)."""
    if not 1 <= num_slots <= MAX_SLOTS:
        raise ValueError(f"num_slots={num_slots}: must be in [1, {MAX_SLOTS}]")
    draw = random.Random(seed)
    values = tuple(draw.choice(SLOTS[k][1]) for k in range(num_slots))
    phrases = [USER_PHRASES[k].format(v.capitalize() if k in CAPITALISED else v) for k, v in enumerate(values)]
    draw.shuffle(phrases)
    said = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    request, mark = draw.choice(REQUESTS)
    message = f"{draw.choice(GREETINGS)}{request}: {said}{mark}{draw.choice(THANKS)}"
    return BookingRequest(values, message)


def words(text: str) -> list[str]:
    """The judge's words of ``text`` (see the module docstring)."""
    return WORD.findall(text.lower().replace("\u2019", "'"))


def default_word_budget(num_slots: int) -> int:
    """Words a reply may have before each further one costs: ``sure i booked a table``, each
    slot's phrase as :data:`SYSTEM_PHRASES` says it, and 5 more."""
    phrases = sum(len(words(SYSTEM_PHRASES[k].format(SLOTS[k][1][0]))) for k in range(num_slots))
    return 5 + phrases + 5


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one reply: the score and each rule's count."""

    score: float
    correct: int
    wrong: int
    repeats: int
    overlong: int
    unfinished: bool
    length: int  # words
    success: bool  # every requested value stated and no rule broken: the maximum score


DEFAULT_RULES = JudgeRules()
SLOT_VALUES = frozenset(v for _, values in SLOTS for v in values)


def _value_of(word: str) -> str | None:
    """The slot value ``word`` states, if any."""
    word = ALIASES.get(word, word)
    return word if word in SLOT_VALUES else None


def judge_text(
    reply: str, request: BookingRequest, finished: bool, budget: int | None = None, rules: JudgeRules = DEFAULT_RULES
) -> Verdict:
    """Score a decoded reply by the judge's rules (the module docstring).

    Args:
        reply: the reply's text, without the end-of-sequence token.
        request: what the user asked for.
        finished: the reply ended with the policy's end-of-sequence token (not cut off at
            the length limit).
        budget: words before each further one costs (default :func:`default_word_budget`).
        rules: the weights.
    """
    said = words(reply)
    budget = default_word_budget(len(request.values)) if budget is None else budget
    stated = {v for v in map(_value_of, said) if v is not None}
    correct = sum(v in stated for v in request.values)
    wrong = len(stated - set(request.values))
    counts: dict[str, int] = {}
    for w in said:
        counts[w] = counts.get(w, 0) + 1
    repeats = sum(c - 1 for w, c in counts.items() if w not in FUNCTION_WORDS)
    overlong = max(0, len(said) - budget)
    score = rules.score(float(correct), float(wrong), float(repeats), float(overlong), float(not finished))
    success = correct == len(request.values) and wrong == repeats == overlong == 0 and finished
    return Verdict(score, correct, wrong, repeats, overlong, not finished, len(said), success)
