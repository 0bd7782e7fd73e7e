"""``python -m fedlab.report``: the command line is in ``fedlab.report.cli``."""

import sys

from fedlab.report.cli import main

sys.exit(main())
