"""The compact end-of-sweep table (``sweep_table.md``) that :mod:`pglab.callbacks` prints.

One row per algo × env (× the jobs' other varying overrides, when there are any): the
final eval return, mean ± sample std over completed seeds (as in the report, see
:func:`pglab.report.stats.mean_std`), seeds, failed jobs. A single seed has no sample std
and shows "—" in its place (``-200.0 ± —``), so every cell still splits at " ± ". Decimals
follow :func:`pglab.report.fmt.digits`, the rule :func:`pglab.report.fmt.score` gives
progress lines too. The runs come from :func:`pglab.report.runs.collect_runs`, the reader
the report uses too, so each run counts once; under the table, one line per damaged run
folder and one for the duplicate folders left out (:func:`pglab.report.runs.footer_lines`).
Loads no pandas, scipy or matplotlib.
"""

from __future__ import annotations

from collections import defaultdict

from pglab.report.fmt import MEAN_STD, digits, markdown_row
from pglab.report.runs import DAMAGED, RunRecord, collect_runs, footer_lines
from pglab.report.stats import mean_std

__all__ = ["RunRecord", "collect_runs", "format_sweep_table"]


def _value(done: list[float]) -> str:
    """The mean ± sample std of a row's completed finals."""
    if not done:
        return "— (no completed run)"
    places = digits(done)  # 3 decimals for returns of a few units (judge scores)
    mean, std = mean_std(done)
    spread = f"{std:.{places}f}" if len(done) > 1 else "—"  # one seed has no sample std; 0.0 would claim one
    return f"{mean:.{places}f} ± {spread}"


def format_sweep_table(runs: list[RunRecord]) -> str:
    """Markdown: algo × env (× the jobs' other varying overrides, when there are any), final
    eval return mean ± sample std over completed seeds, seeds, failed; then the damaged
    run folders and the duplicates left out, one line each."""
    cells: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in (r for r in runs if r.status != DAMAGED):  # no algo or env to put them under
        cells[(str(r.algo or "?"), str(r.env or "?"), r.variant)].append(r)
    variants = any(r.variant for r in runs)
    head = ["algo", "env", *(["overrides"] if variants else []), f"final eval return ({MEAN_STD})", "seeds", "failed"]
    lines = [markdown_row(head), "|" + "---|" * len(head)]
    for (algo, env, variant), rs in sorted(cells.items()):
        done = [r.final_return for r in rs if r.final_return is not None]
        failed = len(rs) - len(done)
        keys = [algo, env, *([variant] if variants else [])]
        lines.append(markdown_row([*keys, _value(done), str(len(done)), str(failed) if failed else ""]))
    if not cells:
        lines.append("| — | — | no runs found | 0 | |")
    footer = footer_lines(runs)
    return "\n".join([*lines, *(["", *footer] if footer else [])])
