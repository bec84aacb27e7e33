"""Regenerate the docs' tables and plots from the committed result files, or check them.

    python scripts/docs.py                 # reports of docs/results/*/ and every generated block
    python scripts/docs.py --check         # exit 1 and name the stale blocks and report files (as the tests)
    python scripts/docs.py --export outputs/sweeps/zoo_table zoo_table --command "python run.py -m sweep=zoo_table"

``--export SWEEP_DIR... NAME`` condenses finished sweeps into ``docs/results/NAME/``
(summaries, evaluation lines, provenance) before regenerating.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pglab.docgen import check, regenerate, stale_reports
from pglab.docgen.export import export_sweep, export_trials

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a block is stale")
    parser.add_argument("--export", nargs="+", metavar="SWEEP_DIR... NAME", help="condense sweeps into a result set")
    parser.add_argument("--command", help="with --export: the command that ran the sweeps")
    parser.add_argument("--notes", default="", help="with --export: what a reader needs to compare the numbers")
    parser.add_argument("--trials", action="store_true", help="with --export: a tuning study's trials.csv, no runs")
    parser.add_argument("--no-reports", action="store_true", help="regenerate the pages' blocks, not the plots")
    args = parser.parse_args(argv)
    if args.check and (args.export or args.no_reports):
        parser.error("--check only checks: it takes neither --export nor --no-reports")
    if not args.export and (args.command or args.notes or args.trials):
        parser.error("--command, --notes and --trials describe an --export")
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            stale = check(ROOT) + stale_reports(ROOT, Path(scratch))
        for line in stale:
            print(f"stale: {line} (run python scripts/docs.py)", file=sys.stderr)
        return 1 if stale else 0
    if args.export:
        if len(args.export) < 2 or not args.command:
            parser.error("--export takes SWEEP_DIR... NAME and needs --command")
        *dirs, name = args.export
        dest = ROOT / "docs" / "results" / name
        if args.trials and len(dirs) != 1:
            parser.error("--export --trials takes one SWEEP_DIR and a NAME")
        try:
            if args.trials:
                print(f"docs/results/{name}: {export_trials(Path(dirs[0]), dest, args.command, args.notes)} trials")
            else:
                n = export_sweep([Path(d) for d in dirs], dest, args.command, args.notes)
                print(f"docs/results/{name}: {n} runs")
        except (ValueError, FileNotFoundError) as err:
            print(f"docs.py: {err}", file=sys.stderr)
            return 2
    for page in regenerate(ROOT, reports=not args.no_reports):
        print(f"regenerated {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
