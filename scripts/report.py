"""Tables and plots from pglab run or sweep folders: ``python scripts/report.py SWEEP_DIR ...``.

A thin wrapper over :mod:`pglab.report` (also ``python -m pglab.report``).
"""

import sys

from pglab.report import main

if __name__ == "__main__":
    sys.exit(main())
