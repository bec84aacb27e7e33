"""Docs that cannot go stale: every figure the docs quote is made from committed files.

``docs/results/<name>/`` holds one result set: the runs of a sweep condensed by
:func:`~pglab.docgen.export.export_sweep` (``runs/<job>/summary.json`` and the metrics
lines the tables read) or a ``scripts/bench.py`` result, with its ``provenance.json``
(command, date, machine, torch build). The pages mark generated blocks
(:mod:`pglab.docgen.pages`); :data:`BLOCKS` maps each block to the function that makes
it; :func:`write_reports` writes each sweep set's report (tables and plots) next to its
runs, where the pages' pictures come from. ``python scripts/docs.py`` regenerates all of
it; ``--check`` (and ``tests/test_docs.py``) fails when a page differs from what the
committed files give.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pglab.docgen import bench_blocks, blocks, lm_blocks
from pglab.docgen.pages import Blocks, stale, write_pages

BLOCKS: Blocks = {
    "default_sweep": blocks.default_sweep,
    "zoo_table": blocks.zoo_table,
    "zoo_aggregate": blocks.zoo_aggregate,
    "zoo_seeds": blocks.zoo_seeds,
    "maze_dialogue": blocks.maze_dialogue,
    "ppo_table": blocks.ppo_table,
    "reinforce_mountaincar": blocks.reinforce_mountaincar,
    "reinforce_tuning": blocks.reinforce_tuning,
    "lm_table": blocks.lm_table,
    "lm_kl": blocks.lm_kl,
    "lm_pretrained": lm_blocks.lm_pretrained,
    "lm_pretrained_replies": lm_blocks.lm_pretrained_replies,
    "commands": blocks.commands,
    "bench_throughput": bench_blocks.bench_throughput,
    "bench_solve": bench_blocks.bench_solve,
    "bench_memory": bench_blocks.bench_memory,
    "bench_lm": bench_blocks.bench_lm,
    "bench_pretrained": bench_blocks.bench_pretrained,
    "bench_envs": bench_blocks.bench_envs,
    "bench_anchors": bench_blocks.bench_anchors,
    "bench_seeds": bench_blocks.bench_seeds,
    "bench_profile": bench_blocks.bench_profile,
}

# the sweep result sets whose report (tables, plots) is written next to their runs
REPORTS = (
    "default",
    "zoo_table",
    "reinforce_mc",
    "maze_dialogue",
    "ppo_table",
    "lm_table",
    "lm_ppo",
    "lm_kl",
    "lm_pretrained",
)


REPORT_TEXTS = ("*.md", "*.csv", "*.tex")  # what the check compares (plots depend on matplotlib's version)


def write_reports(root: Path, out: Path | None = None) -> list[Path]:
    """Each sweep set's report into ``<out>/<name>/`` (default: ``docs/results/<name>/report/``,
    next to its runs); returns the folders. Paths in the reports are relative to ``root``."""
    from pglab.report import write_report

    written = []
    with _inside(root):
        for name in REPORTS:
            folder = blocks.RESULTS / name
            dest = folder / "report" if out is None else out / name
            write_report([folder / "runs"], dest, quiet=True)
            written.append(root / dest)
    return written


def stale_reports(root: Path, scratch: Path) -> list[str]:
    """The committed report files (tables, ``report.md``) that differ from a report made
    now from the committed runs (into ``scratch``)."""
    out = []
    for fresh_dir in write_reports(root, scratch):
        committed = root / blocks.RESULTS / fresh_dir.name / "report"
        for pattern in REPORT_TEXTS:
            for fresh in sorted(fresh_dir.glob(pattern)):
                old = committed / fresh.name
                if not old.exists() or old.read_text() != fresh.read_text():
                    out.append(str(old.relative_to(root)))
    return out


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Work in ``folder`` (so that paths written into reports are relative), then return."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def check(root: Path) -> list[str]:
    """The stale blocks (``page: block``) of the pages under ``root``; empty when all are fresh."""
    return stale(root, BLOCKS)


def regenerate(root: Path, reports: bool = True) -> list[Path]:
    """Every report (unless ``reports`` is false) and every page's blocks; returns the changed pages."""
    if reports:
        write_reports(root)
    return write_pages(root, BLOCKS)
