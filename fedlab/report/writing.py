"""Where a report leaves the process: the figure and the tables written to a directory, the
same files logged on a sweep's parent run under ``report/``, and the table printed.

``report_sweep`` does all three at the end of a multirun (``fedlab.sweep`` calls it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from fedlab.report.byzantine import BYZANTINE_FIGURE, has_attacks, plot_byzantine
from fedlab.report.clients import CLIENTS_FIGURE, has_clients, plot_clients
from fedlab.report.grouping import Report, group
from fedlab.report.plotting import FIGURE, plot
from fedlab.report.privacy import PRIVACY_FIGURE, plot_privacy
from fedlab.report.reading import load_series
from fedlab.report.tables import TABLE_CSV, TABLE_MD, markdown, write_csv

PROG = "fedlab.report"
ARTIFACT_PATH = "report"


def write(report: Report, out_dir: Path) -> list[Path]:
    """Write the figure (when there is a curve) and the tables into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = (FIGURE, PRIVACY_FIGURE, CLIENTS_FIGURE, BYZANTINE_FIGURE, TABLE_MD, TABLE_CSV)
    for name in stale:  # no stale files
        (out_dir / name).unlink(missing_ok=True)
    written = []
    if report.configurations:
        written.append(plot(report.configurations, out_dir / FIGURE))
    if any(r.epsilon for c in report.configurations for r in c.runs):
        written.append(plot_privacy(report.configurations, out_dir / PRIVACY_FIGURE))
    if has_clients(report.configurations):
        written.append(plot_clients(report.configurations, out_dir / CLIENTS_FIGURE))
    runs = [r for c in report.configurations for r in c.runs]
    if has_attacks(runs):
        written.append(plot_byzantine(runs, out_dir / BYZANTINE_FIGURE))
    (out_dir / TABLE_MD).write_text(markdown(report))
    written.append(out_dir / TABLE_MD)
    write_csv(report.configurations, out_dir / TABLE_CSV)
    written.append(out_dir / TABLE_CSV)
    return written


def log_to_run(client: MlflowClient, run_id: str, files: Iterable[Path]) -> None:
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_PATH)


def _print(report: Report, out_dir: Path, files: Sequence[Path], logged_to: str | None) -> None:
    print(markdown(report).split("\n\n![", 1)[0].rstrip())
    where = f"; logged on run {logged_to} under {ARTIFACT_PATH}/" if logged_to else ""
    names = ", ".join(Path(f).name for f in files)
    print(f"\n{PROG}: wrote {out_dir}/{{{names}}}{where}")


def report_sweep(tracker: Any, out_dir: Path) -> Report:
    """The comparison of a sweep's jobs, written to ``out_dir`` and logged on its parent run.

    ``tracker`` is the sweep's ``MlflowTracker`` (its ``client``, parent ``run_id`` and
    ``child_runs()``). A sweep whose jobs all failed, or logged no test accuracy, still gets a
    ``summary.md`` saying so.
    """
    client, parent_id = tracker.client, tracker.run_id
    tags = client.get_run(parent_id).data.tags
    series, left_out = load_series(client, tracker.child_runs())
    swept = [k for k in tags.get("fedlab.swept_keys", "").split(",") if k]
    report = Report(
        f"Sweep {tags.get('fedlab.sweep_id', parent_id)}", group(series, swept), left_out
    )
    out_dir = Path(out_dir)
    files = write(report, out_dir)
    log_to_run(client, parent_id, files)
    _print(report, out_dir, files, parent_id)
    return report
