"""Compare the runs of a sweep: test accuracy against rounds, and rounds to the target.

The comparison McMahan et al. 2017 make in Figure 2 (test accuracy against communication rounds,
one curve per configuration, the target accuracy drawn) and in Tables 1 and 2 (rounds to reach
the target per configuration), made from runs recorded in MLflow::

    python -m fedlab.report                       # every finished run of experiment 'fedlab'
    python -m fedlab.report --sweep latest        # the last sweep; logged on its parent run
    python -m fedlab.report --filter "params.model.name = '2nn'" --out report-2nn

Runs whose params differ only in ``seed`` and bookkeeping (run name, checkpoints, hardware,
tracking, engine, objective, rounds budget, ...) are one configuration, and its seeds are
aggregated: the curve is the mean over seeds with a min–max band, rounds to the target the mean
± sample standard deviation over the seeds that reached it (and how many did). The paper's
value is shown where the configuration is one of the paper's settings (``fedlab.paper``).

Writes ``test_accuracy.png``, ``summary.md`` and ``summary.csv``; at the end of a multirun
``fedlab.sweep`` calls ``report_sweep``, which also logs them on the sweep's parent run under
``report/``.

One module per step: ``reading`` (runs from MLflow), ``grouping`` (runs into configurations),
``plotting`` (the figure), ``tables`` (markdown and CSV), ``writing`` (files, artifacts on the
sweep's run, ``report_sweep``) and ``cli`` (the command line). Nothing here imports
``fedlab.sweep``, which imports this package.
"""

import os

# As in fedlab.tracking.mlflow: MLflow's INFO lines would bury the table. Set here, before any
# module of the package imports mlflow: importing one of them runs this file first.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from fedlab.report.cli import main  # noqa: E402
from fedlab.report.grouping import DESCRIBE, Configuration, Report, Stat, group  # noqa: E402
from fedlab.report.plotting import BAND, FIGURE, plot  # noqa: E402
from fedlab.report.reading import (  # noqa: E402
    ACCURACY,
    ROUNDS_TO_TARGET,
    TOTAL_MB,
    ReportError,
    RunSeries,
    load_series,
)
from fedlab.report.tables import (  # noqa: E402
    HEADER,
    MAX_LEFT_OUT_LINES,
    TABLE_CSV,
    TABLE_MD,
    markdown,
    markdown_table,
    rows,
    write_csv,
)
from fedlab.report.writing import ARTIFACT_PATH, PROG, log_to_run, report_sweep, write  # noqa: E402

__all__ = [
    "ACCURACY",
    "ARTIFACT_PATH",
    "BAND",
    "DESCRIBE",
    "FIGURE",
    "HEADER",
    "MAX_LEFT_OUT_LINES",
    "PROG",
    "ROUNDS_TO_TARGET",
    "TABLE_CSV",
    "TABLE_MD",
    "TOTAL_MB",
    "Configuration",
    "Report",
    "ReportError",
    "RunSeries",
    "Stat",
    "group",
    "load_series",
    "log_to_run",
    "main",
    "markdown",
    "markdown_table",
    "plot",
    "report_sweep",
    "rows",
    "write",
    "write_csv",
]
