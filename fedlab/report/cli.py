"""``python -m fedlab.report``: find the runs to compare (an experiment's, a sweep's jobs, or
those a filter matches), group them, write the report, and log it on the sweep's parent run.
Errors are one line on stderr, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlflow.exceptions import MlflowException

from fedlab.report.grouping import Report, group
from fedlab.report.reading import (
    ReportError,
    _find_sweep,
    _first_line,
    _open_store,
    _search,
    load_series,
)
from fedlab.report.writing import PROG, _print, log_to_run, write


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare fedlab runs recorded in MLflow: test accuracy against rounds "
        "(one line per configuration, seeds aggregated) and rounds to the target.",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default: sqlite:///<here>/mlflow.db, as fedlab)"
    )
    parser.add_argument("--experiment", default="fedlab", help="experiment name (default fedlab)")
    parser.add_argument(
        "--sweep",
        metavar="SWEEP_ID",
        help="a sweep's id (its directory, multirun/DATE/TIME) or "
        "'latest'; compares its jobs and logs the report on its parent run",
    )
    parser.add_argument(
        "--filter",
        dest="filter_string",
        metavar="FILTER",
        help="an MLflow search filter, e.g. \"params.model.name = '2nn'\"",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    parser.add_argument("--no-log", action="store_true", help="do not log on the sweep's run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _report(args)
    except ReportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _report(args: argparse.Namespace) -> Report:
    from fedlab.tracking import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri(Path.cwd())
    client = _open_store(uri)
    try:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            known = [e.name for e in client.search_experiments(max_results=20)]
            raise ReportError(
                f"unknown experiment '{args.experiment}' at {uri}; "
                f"known: {', '.join(known) or 'none'}"
            )
        exp_id = experiment.experiment_id
        parent = _find_sweep(client, exp_id, args.sweep) if args.sweep else None
        clauses = [f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"] if parent else []
        if args.filter_string:
            clauses.append(args.filter_string)
        runs = _search(client, exp_id, " and ".join(clauses), args.filter_string)
        runs = [r for r in runs if r.data.tags.get("fedlab.role") != "sweep"]
        if not runs:
            what = (
                f"sweep {parent.data.tags.get('fedlab.sweep_id')}"
                if parent
                else (f"experiment '{args.experiment}'")
            )
            where = f" with --filter {args.filter_string!r}" if args.filter_string else ""
            raise ReportError(f"no runs match in {what}{where} at {uri}")
        series, left_out = load_series(client, runs)
        swept = []
        if parent is not None:
            swept = [k for k in parent.data.tags.get("fedlab.swept_keys", "").split(",") if k]
            source = f"Sweep {parent.data.tags.get('fedlab.sweep_id')}"
        else:
            source = f"Experiment '{args.experiment}'"
        if args.filter_string:
            source += f", runs where {args.filter_string}"
        report = Report(source, group(series, swept), left_out)
        files = write(report, args.out)
        logged_to = None
        if parent is not None and not args.no_log:
            logged_to = parent.info.run_id
            log_to_run(client, logged_to, files)
    except MlflowException as err:
        raise ReportError(f"MLflow: {_first_line(err.message)}") from None
    _print(report, args.out, files, logged_to)
    return report
