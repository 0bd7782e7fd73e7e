"""``python -m fedlab.report``: the command line of ``fedlab.report``."""

import sys

from fedlab.report import main

sys.exit(main())
