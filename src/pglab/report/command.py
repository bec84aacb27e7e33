"""The command line: ``pglab-report SWEEP_DIR ...`` (also ``python -m pglab.report`` and ``scripts/report.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pglab.report.write import write_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pglab-report", description="Tables and plots from pglab run or sweep folders."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (searched at any depth)")
    parser.add_argument(
        "--by",
        default="auto",
        help="config keys to group by, comma-separated (default: auto = algo plus every key that differs "
        "between runs of the same env and algo, e.g. a swept learning rate)",
    )
    parser.add_argument(
        "--metrics",
        default="return_mean",
        help="final evaluation metrics, one table each, comma-separated (default: return_mean; "
        "e.g. return_mean,success_rate,optimality)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first dir>/report)")
    return parser


def _split(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def main(argv: list[str] | None = None) -> int:
    """Write the report of the folders in ``argv``; 0 on success, 2 (with the reason on
    stderr) for a missing folder, an unknown ``--by`` key or ``--metrics`` name, or no runs."""
    args = _parser().parse_args(argv)
    out = args.out or (args.dirs[0] / "report")
    try:
        write_report(args.dirs, out, by=_split(args.by), metrics=_split(args.metrics) or ["return_mean"])
    except (FileNotFoundError, ValueError) as err:
        print(f"pglab-report: {err}", file=sys.stderr)
        return 2
    return 0
