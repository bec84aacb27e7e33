"""Numbers and text as the tables print them (markdown and LaTeX); plain Python."""

from __future__ import annotations

import math
from collections.abc import Iterable

# the spread column's name in every table (see pglab.report.stats.mean_std)
MEAN_STD = "mean ± sample std"
MEAN_STD_TEX = "mean $\\pm$ sample std"


def fmt(x: float | None, digits: int = 1) -> str:
    """``x`` with thousands separators and ``digits`` decimals; "—" for a missing one."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def digits(values: Iterable[float | None]) -> int:
    """Decimals for a table of these values: 1 for returns in the tens and hundreds, 3 for
    scores of a few units (success rates, judge rewards), where one decimal hides the differences."""
    finite = [abs(v) for v in values if v is not None and not math.isnan(v)]
    return 3 if finite and max(finite) < 10 else 1


def steps(x: float | None) -> str:
    """Env steps, short: ``850``, ``52k``, ``1.20M``; "—" for a missing one."""
    if x is None or math.isnan(x):
        return "—"
    if x < 1000:
        return f"{x:.0f}"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX.get(ch, ch) for ch in text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_head(header: list[str]) -> list[str]:
    """A markdown table's header line and its separator line."""
    return [markdown_row(header), "|" + "---|" * len(header)]
