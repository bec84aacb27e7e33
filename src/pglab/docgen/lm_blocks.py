"""The generated blocks of a pretrained model tuned on the text booking task (``lm_pretrained``).

Each run evaluated the model on the same held-out requests before RL (env step 0) and
after it (the final evaluation), one request per evaluation env, and wrote every episode
to ``samples.jsonl``; the blocks pair the two evaluations request by request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pglab.docgen.blocks import RESULTS, footer
from pglab.docgen.export import RUNS
from pglab.report.fmt import markdown_head, markdown_row
from pglab.report.runs import metric_lines
from pglab.report.stats import paired_difference_ci
from pglab.run_dir import SAMPLES

NAME = "lm_pretrained"
SHOWN_REPLIES = 4  # requests of the first seed shown before and after


@dataclass(frozen=True)
class PairedEvaluations:
    """One run's two evaluations, episode i of each answering the same request.

    Attributes:
        seed: the run's seed.
        before, after: ``samples.jsonl`` records at env step 0 and at the final evaluation,
            in evaluation-env order.
        kl: the last logged ``train/kl`` (nats per reply, to the initial model).
        wall_s: the run's wall time.
    """

    seed: int
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]
    kl: float
    wall_s: float

    def returns(self, which: str) -> np.ndarray:
        return np.array([s["return"] for s in getattr(self, which)])

    def success(self, which: str) -> float:
        return float(np.mean([s["success"] for s in getattr(self, which)]))


def read_run(folder: Path) -> PairedEvaluations:
    """A run folder's paired evaluations.

    Raises:
        ValueError: the evaluations do not pair up (other requests, other counts).
    """
    summary = json.loads((folder / "summary.json").read_text())
    samples = [json.loads(line) for line in (folder / SAMPLES).read_text().splitlines()]
    last = max(s["env_steps"] for s in samples)
    before = sorted((s for s in samples if s["env_steps"] == 0), key=lambda s: s["env"])
    after = sorted((s for s in samples if s["env_steps"] == last), key=lambda s: s["env"])
    if [_request(s) for s in before] != [_request(s) for s in after] or not before:
        raise ValueError(f"{folder}: the evaluations before and after RL answer different requests")
    kls = [line["train/kl"] for line in metric_lines(folder) if "train/kl" in line]
    if not kls:
        raise ValueError(f"{folder}: no train/kl line (a pretrained policy's run logs its KL to the initial model)")
    return PairedEvaluations(int(summary["seed"]), before, after, kls[-1], float(summary["wall_s"]))


def _request(sample: dict[str, Any]) -> str:
    return sample["text"].splitlines()[0]


def runs(root: Path) -> list[PairedEvaluations]:
    folders = sorted((root / RESULTS / NAME / RUNS).iterdir())
    return sorted((read_run(f) for f in folders), key=lambda r: r.seed)


def lm_pretrained(root: Path) -> str:
    """Per seed: the judge's mean reward on the held-out requests before and after RL, the
    paired difference with its 95 % bootstrap CI, success rates, the KL, the wall time."""
    head = ["seed", "requests", "reward before", "reward after", "difference [95 % CI]", "success before → after"]
    lines = markdown_head([*head, "KL to the initial model (nats/reply)", "wall min"])
    for r in runs(root):
        before, after = r.returns("before"), r.returns("after")
        diff, lo, hi = paired_difference_ci(before, after)
        cells = [str(r.seed), str(len(before)), f"{before.mean():.2f}", f"{after.mean():.2f}"]
        cells += [f"{diff:+.2f} [{lo:+.2f}, {hi:+.2f}]", f"{r.success('before'):.2f} → {r.success('after'):.2f}"]
        lines.append(markdown_row([*cells, f"{r.kl:.2f}", f"{r.wall_s / 60:.0f}"]))
    return "\n".join(lines) + "\n\n" + footer(root, NAME)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def lm_pretrained_replies(root: Path) -> str:
    """The first seed's replies to its first requests, before and after RL, with the judge's verdicts."""
    first = runs(root)[0]
    lines = markdown_head(["request", "before RL", "after RL"])
    for before, after in zip(first.before[:SHOWN_REPLIES], first.after[:SHOWN_REPLIES], strict=True):
        request = _request(before).removeprefix("user: ")
        cells = [_reply(s) for s in (before, after)]
        lines.append(markdown_row([_cell(request), *cells]))
    return "\n".join(lines) + "\n\n" + footer(root, NAME)


def _reply(sample: dict[str, Any]) -> str:
    """A sample's reply and its score: ``reply`` (score)."""
    system = sample["text"].splitlines()[1].removeprefix("system: ")
    return f"{_cell(system)} (**{sample['return']:g}**{', success' if sample['success'] else ''})"
