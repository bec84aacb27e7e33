"""``python -m pglab.report SWEEP_DIR ...``: see :mod:`pglab.report`."""

import sys

from pglab.report.command import main

sys.exit(main())
