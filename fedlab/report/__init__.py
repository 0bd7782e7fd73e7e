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
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# As in fedlab.tracking.mlflow: MLflow's INFO lines would bury the table.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

import matplotlib  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from fedlab import paper  # noqa: E402
from fedlab.config import affects_numbers  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PROG = "fedlab.report"
ACCURACY = "eval/accuracy"
TOTAL_MB = "comm/total_mb"
ROUNDS_TO_TARGET = "rounds_to_target"
ARTIFACT_PATH = "report"
FIGURE, TABLE_MD, TABLE_CSV = "test_accuracy.png", "summary.md", "summary.csv"
BAND = "min–max over seeds"

# What names a configuration when nothing varies.
DESCRIBE = ("model.name", "partition.name", "C", "E", "B")
MAX_LEFT_OUT_LINES = 10


class ReportError(RuntimeError):
    """Nothing to report, or no way to read it; the message is one line."""


@dataclass
class RunSeries:
    """What the report needs from one run."""

    run_id: str
    name: str
    params: dict[str, str]
    accuracy: dict[int, float]  # test accuracy by round
    total_mb: dict[int, float]  # cumulative MB communicated by round
    rounds_to_target: int | None

    @property
    def seed(self) -> str:
        return self.params.get("seed", "?")

    @property
    def final_round(self) -> int:
        return max(self.accuracy)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[self.final_round]

    @property
    def mb_total(self) -> float | None:
        return self.total_mb[max(self.total_mb)] if self.total_mb else None

    @property
    def mb_to_target(self) -> float | None:
        if self.rounds_to_target is None:
            return None
        if self.rounds_to_target == 0:
            return 0.0  # the initial model already reached it: nothing was communicated
        return self.total_mb.get(self.rounds_to_target)


@dataclass
class Stat:
    """Mean and sample standard deviation (None for fewer than 2 values) of some values."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def text(self, digits: int, thousands: bool = False) -> str:
        if not self.values:
            return "—"
        spec = f"{',' if thousands else ''}.{digits}f"
        if self.std is None:
            return format(self.mean, spec)
        return f"{format(self.mean, spec)} ± {format(self.std, spec)}"


@dataclass
class Configuration:
    """Runs that differ only in seed (and bookkeeping)."""

    items: list[tuple[str, str]]  # (display key, value) pairs that name it
    runs: list[RunSeries]
    paper: list[paper.PaperValue] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.items)

    @property
    def params(self) -> dict[str, str]:
        return self.runs[0].params

    @property
    def target(self) -> float:
        return float(self.params.get("target_accuracy", "nan"))

    @property
    def seeds(self) -> list[str]:
        return sorted((r.seed for r in self.runs), key=lambda s: (len(s), s))  # 2 before 10

    @property
    def reached(self) -> list[RunSeries]:
        return [r for r in self.runs if r.rounds_to_target is not None]

    @property
    def rounds(self) -> str:
        finals = sorted({r.final_round for r in self.runs})
        return str(finals[0]) if len(finals) == 1 else f"{finals[0]}–{finals[-1]}"

    def final_accuracy(self) -> Stat:
        return Stat([r.final_accuracy for r in self.runs])

    def rounds_to_target(self) -> Stat:
        return Stat([float(r.rounds_to_target) for r in self.reached])

    def mb_to_target(self) -> Stat:
        return Stat([r.mb_to_target for r in self.reached if r.mb_to_target is not None])

    def mb_total(self) -> Stat:
        return Stat([r.mb_total for r in self.runs if r.mb_total is not None])

    def curve(self) -> tuple[list[int], list[float], list[float], list[float]]:
        """Rounds, and the mean, min and max test accuracy over the seeds evaluated there."""
        rounds = sorted({step for r in self.runs for step in r.accuracy})
        mean, low, high = [], [], []
        for step in rounds:
            values = [r.accuracy[step] for r in self.runs if step in r.accuracy]
            mean.append(statistics.fmean(values))
            low.append(min(values))
            high.append(max(values))
        return rounds, mean, low, high


@dataclass
class Report:
    source: str  # what was compared, in words
    configurations: list[Configuration]
    left_out: list[str]  # runs not in the comparison, and why

    @property
    def runs(self) -> int:
        return sum(len(c.runs) for c in self.configurations)


# ---------------------------------------------------------------------------------------------
# From MLflow runs to configurations


def load_series(client: MlflowClient, runs: Iterable[Any]) -> tuple[list[RunSeries], list[str]]:
    """The finished runs with test accuracy, and a line for each run left out."""
    series, left_out = [], []
    for run in runs:
        name = run.info.run_name or run.info.run_id
        status = run.info.status
        if status != "FINISHED":
            why = run.data.tags.get("fedlab.failure", "")
            why = why.strip().splitlines()[0][:200] if why.strip() else ""
            left_out.append(f"{name} ({run.info.run_id}): {status}{': ' + why if why else ''}")
            continue
        accuracy = _history(client, run.info.run_id, ACCURACY)
        if not accuracy:
            left_out.append(f"{name} ({run.info.run_id}): no test accuracy logged")
            continue
        reached = run.data.metrics.get(ROUNDS_TO_TARGET)
        series.append(
            RunSeries(
                run_id=run.info.run_id,
                name=name,
                params=dict(run.data.params),
                accuracy=accuracy,
                total_mb=_history(client, run.info.run_id, TOTAL_MB),
                rounds_to_target=None if reached is None else int(reached),
            )
        )
    return series, left_out


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """A metric by step (the latest value where a step was logged twice)."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    return {int(m.step): float(m.value) for m in points}


def _is_bookkeeping(key: str) -> bool:
    """Params that do not change a run's numbers, up to round-off (``fedlab.config``): runs that
    differ only in these, and in ``seed``, are one configuration. A sweep over one of them still
    separates them."""
    return not affects_numbers(key, exact=False)


def _param_key(swept: str, params: dict[str, str]) -> str | None:
    """The param a swept key sets: ``E`` → ``E``, the group ``partition`` → ``partition.name``."""
    swept = swept.lstrip("+~")
    if swept in params:
        return swept
    if f"{swept}.name" in params:
        return f"{swept}.name"
    return None


def _display(key: str, value: str) -> tuple[str, str]:
    name = key.removesuffix(".name")
    if key == "B" and value in ("null", "None"):
        value = "∞"  # the paper's B=∞: the full local dataset
    return name, value


def group(series: Sequence[RunSeries], swept_keys: Sequence[str] = ()) -> list[Configuration]:
    """Runs into configurations, in the order their first runs appear, each named by the params
    the compared configurations differ in (a sweep's swept keys, without ``seed``, first)."""
    all_keys = sorted({k for s in series for k in s.params})
    swept = []
    for key in swept_keys:
        found = _param_key(key.strip(), {k: "" for k in all_keys})
        if found and found != "seed" and found not in swept:
            swept.append(found)

    def identity(s: RunSeries) -> tuple[tuple[str, str], ...]:
        return tuple(
            (k, s.params.get(k, ""))
            for k in all_keys
            if k != "seed" and (k in swept or not _is_bookkeeping(k))
        )

    groups: dict[tuple, list[RunSeries]] = {}
    for s in series:
        groups.setdefault(identity(s), []).append(s)
    firsts = [runs[0].params for runs in groups.values()]
    varying = [
        k
        for k in all_keys
        if k != "seed"
        and (k in swept or not _is_bookkeeping(k))
        and len({p.get(k, "") for p in firsts}) > 1
    ]
    names = [k for k in swept if k in varying]
    if len({tuple(p.get(k, "") for k in names) for p in firsts}) < len(firsts):
        names += [k for k in _ordered(varying) if k not in names]  # swept keys do not tell apart
    if not names:
        names = [k for k in DESCRIBE if k in all_keys]
    configurations = []
    for runs in groups.values():
        items = [_display(k, runs[0].params.get(k, "")) for k in names]
        configurations.append(Configuration(items, runs, paper.lookup(runs[0].params)))
    return configurations


def _ordered(keys: Sequence[str]) -> list[str]:
    """The paper's knobs first, then the rest alphabetically."""
    first = [k for k in DESCRIBE if k in keys]
    return first + sorted(k for k in keys if k not in first)


# ---------------------------------------------------------------------------------------------
# Outputs


def write(report: Report, out_dir: Path) -> list[Path]:
    """Write the figure (when there is a curve) and the tables into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (FIGURE, TABLE_MD, TABLE_CSV):  # a previous report's files must not linger
        (out_dir / name).unlink(missing_ok=True)
    written = []
    if report.configurations:
        written.append(plot(report.configurations, out_dir / FIGURE))
    (out_dir / TABLE_MD).write_text(markdown(report))
    written.append(out_dir / TABLE_MD)
    write_csv(report.configurations, out_dir / TABLE_CSV)
    written.append(out_dir / TABLE_CSV)
    return written


def plot(configurations: Sequence[Configuration], path: Path) -> Path:
    """Figure 2 of McMahan et al. 2017: test accuracy against rounds, one line per configuration
    (mean over seeds, min–max band), the target dashed, the y axis zoomed near the top. With
    several partitions, one panel each (IID beside non-IID, as in the paper)."""
    partitions = list(dict.fromkeys(c.params.get("partition.name", "") for c in configurations))
    panels = partitions if len(partitions) > 1 else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=120, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels, strict=True):
        # Each panel zoomed on its own curves: non-IID ones sit far below IID ones.
        finals, highs, targets = [], [], set()
        for index, config in enumerate(configurations):
            if panel is not None and config.params.get("partition.name", "") != panel:
                continue
            rounds, mean, low, high = config.curve()
            items = [(k, v) for k, v in config.items if panel is None or k != "partition"]
            label = ", ".join(f"{k}={v}" for k, v in items) or config.label
            label += f" (n={len(config.runs)})"
            color = colors[index % len(colors)]
            marker = "." if len(rounds) < 50 else None
            ax.plot(rounds, mean, color=color, marker=marker, linewidth=1.5, label=label)
            if len(config.runs) > 1:
                ax.fill_between(rounds, low, high, color=color, alpha=0.2, linewidth=0)
            finals.append(min(mean[len(mean) // 2 :]))  # the second half of the curve
            highs.append(max(high))
            if not math.isnan(config.target):
                targets.add(config.target)
        for target in sorted(targets):
            ax.axhline(
                target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}"
            )
        ax.set_ylim(*_zoom(finals, highs, sorted(targets)))
        ax.set_ylabel("test accuracy")
        ax.set_xlabel("communication rounds")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel is not None:
            ax.set_title(f"partition={panel}")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"Test accuracy: mean over seeds, band = {BAND}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _zoom(
    finals: Sequence[float], highs: Sequence[float], targets: Sequence[float]
) -> tuple[float, float]:
    """y limits zoomed near the top, as in the paper: from a little below the lowest curve's
    late points (or the target, if lower) to just above the highest point and the target. The
    early rounds of a curve that ends high fall below the axis, as in Figure 2."""
    low = min([*finals, *targets], default=0.0)
    bottom = max(0.0, low - max(0.01, 0.1 * (1.0 - low)))
    top = min(1.0, max([*highs, *targets], default=1.0) + 0.01)
    return (bottom, top) if top - bottom >= 0.02 else (max(0.0, top - 0.02), top)


HEADER = (
    "configuration",
    "seeds",
    "rounds",
    "final accuracy",
    "rounds to target",
    "reached",
    "MB to target",
    "MB total",
    "paper (rounds to target)",
)


def rows(configurations: Sequence[Configuration]) -> list[tuple[str, ...]]:
    """The table's rows, as text."""
    out = []
    for c in configurations:
        reached = c.rounds_to_target()
        out.append(
            (
                c.label,
                ", ".join(c.seeds),
                c.rounds,
                c.final_accuracy().text(4),
                reached.text(1) if reached.n else "not reached",
                f"{reached.n}/{len(c.runs)}",
                c.mb_to_target().text(1, thousands=True),
                c.mb_total().text(1, thousands=True),
                "; ".join(str(v) for v in c.paper) or "n/a",
            )
        )
    return out


def markdown_table(configurations: Sequence[Configuration]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in rows(configurations)
    ]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    targets = sorted({c.target for c in report.configurations if not math.isnan(c.target)})
    parts = [
        f"# {report.source}",
        "",
        f"{_count(report.runs, 'run')} in {_count(len(report.configurations), 'configuration')}"
        + (f"; target test accuracy {', '.join(f'{t:g}' for t in targets)}." if targets else "."),
    ]
    if report.configurations:
        parts += [
            "",
            markdown_table(report.configurations),
            "",
            "Mean ± sample standard deviation over seeds. *Rounds to target* and *MB to target* "
            "average only the seeds that reached the target (*reached*: how many did); a seed "
            "that never reached it is counted there, not averaged in. *MB*: model broadcast and "
            "uploads, cumulative (comm/total_mb). *Paper*: McMahan et al. 2017, where the "
            "configuration is one of its settings (n/a: it is not).",
            "",
            f"![test accuracy against rounds]({FIGURE})",
        ]
    else:
        parts += ["", "No finished run with test accuracy (eval/accuracy) to compare."]
    if report.left_out:
        shown = report.left_out[:MAX_LEFT_OUT_LINES]
        more = len(report.left_out) - len(shown)
        parts += ["", f"Left out ({len(report.left_out)} runs):", ""]
        parts += [f"- {line}" for line in shown]
        if more:
            parts.append(f"- … and {more} more")
    return "\n".join(parts) + "\n"


def write_csv(configurations: Sequence[Configuration], path: Path) -> Path:
    names = list(dict.fromkeys(k for c in configurations for k, _ in c.items))
    fields = [
        "configuration",
        *names,
        "runs",
        "seeds",
        "rounds",
        "target_accuracy",
        "final_accuracy_mean",
        "final_accuracy_std",
        "rounds_to_target_mean",
        "rounds_to_target_std",
        "reached",
        "mb_to_target_mean",
        "mb_to_target_std",
        "mb_total_mean",
        "mb_total_std",
        "paper_rounds_to_target",
        "paper_source",
        "run_ids",
    ]

    def num(value: float | None) -> str:
        return "" if value is None else repr(float(value))

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c in configurations:
            final, rtt, mb_t, mb = (
                c.final_accuracy(),
                c.rounds_to_target(),
                c.mb_to_target(),
                c.mb_total(),
            )
            writer.writerow(
                {
                    "configuration": c.label,
                    **dict(c.items),
                    "runs": len(c.runs),
                    "seeds": " ".join(c.seeds),
                    "rounds": c.rounds,
                    "target_accuracy": num(c.target),
                    "final_accuracy_mean": num(final.mean),
                    "final_accuracy_std": num(final.std),
                    "rounds_to_target_mean": num(rtt.mean),
                    "rounds_to_target_std": num(rtt.std),
                    "reached": rtt.n,
                    "mb_to_target_mean": num(mb_t.mean),
                    "mb_to_target_std": num(mb_t.std),
                    "mb_total_mean": num(mb.mean),
                    "mb_total_std": num(mb.std),
                    "paper_rounds_to_target": " ".join(
                        "not reached" if v.rounds is None else str(v.rounds) for v in c.paper
                    ),
                    "paper_source": " ".join(v.source.replace(" ", "_") for v in c.paper),
                    "run_ids": " ".join(r.run_id for r in c.runs),
                }
            )
    return path


def log_to_run(client: MlflowClient, run_id: str, files: Iterable[Path]) -> None:
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_PATH)


def _print(report: Report, out_dir: Path, logged_to: str | None) -> None:
    print(markdown(report).split("\n\n![", 1)[0].rstrip())
    where = f"; logged on run {logged_to} under {ARTIFACT_PATH}/" if logged_to else ""
    print(f"\n{PROG}: wrote {out_dir}/{{{FIGURE}, {TABLE_MD}, {TABLE_CSV}}}{where}")


# ---------------------------------------------------------------------------------------------
# Entry points


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
    _print(report, out_dir, parent_id)
    return report


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
    _print(report, args.out, logged_to)
    return report


def _open_store(uri: str) -> MlflowClient:
    """A client for ``uri`` if a store is there; MLflow would create an empty one."""
    from fedlab.errors import UserError
    from fedlab.tracking.mlflow import _check_reachable

    hint = "run where the runs' mlflow.db is, or pass --tracking-uri"
    if uri.startswith("sqlite:///"):
        if not Path(uri[len("sqlite:///") :]).is_file():
            raise ReportError(f"no MLflow store at {uri} (no such file); {hint}")
    elif uri.startswith(("http://", "https://")):
        try:
            _check_reachable(uri)
        except UserError:
            raise ReportError(f"the MLflow server at {uri} is unreachable; {hint}") from None
    elif "://" not in uri or uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise ReportError(f"no MLflow store at {uri} (no such directory); {hint}")
    try:
        return MlflowClient(tracking_uri=uri)
    except MlflowException as err:
        raise ReportError(
            f"cannot open the MLflow store at {uri}: {_first_line(err.message)}"
        ) from None


def _find_sweep(client: MlflowClient, exp_id: str, sweep: str) -> Any:
    parents = _search(client, exp_id, "tags.`fedlab.role` = 'sweep'", None)
    parents.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    if not parents:
        raise ReportError(f"no sweeps in experiment {exp_id}; run one with python -m fedlab -m ...")
    if sweep == "latest":
        return parents[0]
    wanted = sweep.rstrip("/")
    for run in parents:
        known = run.data.tags.get("fedlab.sweep_id", "")
        if known == wanted or Path(known).resolve() == Path(wanted).resolve():
            return run
    recent = ", ".join(r.data.tags.get("fedlab.sweep_id", "?") for r in parents[:3])
    raise ReportError(f"unknown sweep '{sweep}'; the latest are: {recent} (or --sweep latest)")


def _search(client: MlflowClient, exp_id: str, filter_string: str, user_filter: str | None) -> list:
    """Every run matching ``filter_string``, oldest first."""
    runs, token = [], None
    try:
        while True:
            page = client.search_runs(
                [exp_id],
                filter_string=filter_string,
                max_results=1000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs
    except MlflowException as err:
        if user_filter:
            raise ReportError(f"--filter {user_filter!r}: {_first_line(err.message)}") from None
        raise


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0].strip() if text else "unknown error"


if __name__ == "__main__":
    sys.exit(main())
