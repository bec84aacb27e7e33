"""What a person watching a run reads: progress lines and bar, capped at the budget, one
rate, returns with the decimals their scale needs (:func:`pglab.report.fmt.score`)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from conftest import make_config
from pglab.experiment import run
from pglab.loop import ProgressDisplay
from pglab.report.fmt import score


def infos(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pglab" and r.levelno == logging.INFO]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.76, "0.760"),  # the maze's return: one decimal would print 0.8
        (-0.25, "-0.250"),
        (9.5, "9.500"),
        (13.86, "13.9"),
        (-104.31, "-104.3"),
        (496.94, "496.9"),
        (1496.94, "1,496.9"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_a_return_is_shown_with_the_decimals_a_table_gives_it(value: float | None, shown: str) -> None:
    assert score(value) == shown


def test_plain_lines_never_pass_the_budget_and_say_once_by_how_much_the_last_update_did(
    caplog: pytest.LogCaptureFixture,
) -> None:
    display = ProgressDisplay(total=1000, every_s=0.0, bar=False, desc="reinforce-maze-s0")
    with caplog.at_level(logging.INFO, logger="pglab"):
        display.update(600, 1234.4, 0.76, None, update_steps=600)
        display.update(3200, 1500.0, 13.86, -104.31, update_steps=2600)
        display.update(3300, 1500.0, 13.86, -104.31, update_steps=100)  # said once only
    assert infos(caplog) == [
        "reinforce-maze-s0 | 600/1,000 steps (60%) | 1,234 env steps/s | return 0.760 | eval —",
        "reinforce-maze-s0 | 1,000/1,000 steps (100%) | 1,500 env steps/s | return 13.9 | eval -104.3",
        "reinforce-maze-s0: the last update went past the budget: 3,200 env steps of 1,000"
        " (+2,200; an update is never cut, and that one was 2,600 env steps)",
        "reinforce-maze-s0 | 1,000/1,000 steps (100%) | 1,500 env steps/s | return 13.9 | eval -104.3",
    ]


def test_the_bar_shows_one_rate_and_never_passes_its_total(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    display = ProgressDisplay(total=1000, every_s=10.0, bar=True, desc="a2c-cartpole-s0")
    with caplog.at_level(logging.INFO, logger="pglab"):
        display.update(3200, 1234.4, 0.76, -104.31, update_steps=3200)
        display.close()
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "a2c-cartpole-s0: 100%|" in bar and "| 1.00k/1.00k [" in bar
    assert bar.rstrip().endswith(", 1,234 env steps/s | return 0.760 | eval -104.3]")
    assert "step/s" not in bar and "it/s" not in bar  # tqdm's own rate counts evaluation time too
    assert infos(caplog) == [
        "a2c-cartpole-s0: the last update went past the budget: 3,200 env steps of 1,000"
        " (+2,200; an update is never cut, and that one was 3,200 env steps)"
    ]


def test_a_run_whose_last_update_passes_the_budget_shows_the_budget_and_says_by_how_much(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """REINFORCE updates on whole episodes of all its envs: its last batch passes the budget."""
    cfg = make_config("env=cartpole", "algo=reinforce", "total_steps=1000", "eval.episodes=2", "eval.final_episodes=2")
    with caplog.at_level(logging.INFO, logger="pglab"):
        run(cfg, tmp_path)
    steps = json.loads((tmp_path / "summary.json").read_text())["env_steps"]
    assert steps > 1000  # the premise: whole episodes of cartpole's envs do not add up to 1,000
    lines = infos(caplog)
    progress = [line for line in lines if " steps (" in line]
    assert progress and all("/1,000 steps (" in line for line in progress)
    assert progress[-1].startswith("reinforce-cartpole-s0 | 1,000/1,000 steps (100%) | ")
    [past] = [line for line in lines if "went past the budget" in line]
    over = f"{steps:,} env steps of 1,000 (+{steps - 1000:,}; "
    assert past.startswith(f"reinforce-cartpole-s0: the last update went past the budget: {over}")
    last_update = int(past.split("that one was ")[1].split(" env steps")[0].replace(",", ""))
    assert steps - 1000 < last_update <= steps  # it began below the budget
