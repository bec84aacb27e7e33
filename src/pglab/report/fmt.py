"""Numbers and text as the tables print them (markdown and LaTeX); plain Python."""

from __future__ import annotations

from collections.abc import Iterable

from pglab.numbers import digits, fmt, score, steps

__all__ = ["MEAN_STD", "MEAN_STD_TEX", "digits", "fmt", "markdown_head", "markdown_row", "score", "steps", "tex"]

# the spread column's name in every table (see pglab.report.stats.mean_std)
MEAN_STD = "mean ± sample std"
MEAN_STD_TEX = "mean $\\pm$ sample std"


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX.get(ch, ch) for ch in text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_head(header: list[str]) -> list[str]:
    """A markdown table's header line and its separator line."""
    return [markdown_row(header), "|" + "---|" * len(header)]
