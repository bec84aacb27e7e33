"""Numbers for people to read: one precision rule for returns, short env-step counts.

A leaf module (plain Python) that the run side (progress lines, the end-of-run line) and
the report's tables share, so a value prints alike everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def fmt(x: float | None, digits: int = 1) -> str:
    """``x`` with thousands separators and ``digits`` decimals; "—" for a missing one."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def digits(values: Iterable[float | None]) -> int:
    """Decimals for a table of these values: 1 for returns in the tens and hundreds, 3 for
    scores of a few units (success rates, judge rewards), where one decimal hides the differences.

    The one precision rule for returns: tables apply it to a column, :func:`score` to one value.
    """
    finite = [abs(v) for v in values if v is not None and not math.isnan(v)]
    return 3 if finite and max(finite) < 10 else 1


def score(x: float | None) -> str:
    """One return (or success rate, judge reward) for a person to read, with the decimals
    :func:`digits` gives it alone, as a table would: ``0.760``, ``-0.250``, ``13.8``,
    ``-104.3``, ``1,496.9``; "—" for a missing or NaN one. Progress lines, the end-of-run
    line and the sweep table then show a value alike (one decimal would print 0.76 as 0.8)."""
    return fmt(x, digits([x]))


def steps(x: float | None) -> str:
    """Env steps, short: ``850``, ``52k``, ``1.20M``; "—" for a missing one."""
    if x is None or math.isnan(x):
        return "—"
    if x < 1000:
        return f"{x:.0f}"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"
